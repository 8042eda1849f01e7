"""A server run as a child process on a loopback port (nginx, moto), started and stopped for a test."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Self

__all__ = ["ChildServer", "ChildServerError", "Started", "free_port", "start_child", "stop_child"]


class ChildServerError(RuntimeError):
    """The child exited or did not listen in time."""


def free_port() -> int:
    """A port free on 127.0.0.1 now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def start_child(
    argv: Sequence[str], port: int, output: IO[bytes] | int, *, timeout: float = 20.0
) -> subprocess.Popen[bytes]:
    """Start ``argv`` and return once it accepts connections on ``port``."""
    process = subprocess.Popen(list(argv), stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not _accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_child(process)
            raise ChildServerError(f"{argv[0]} did not listen on 127.0.0.1:{port}")
        time.sleep(0.01)
    return process


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ten seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Started:
    """A test server whose ``with`` block is ``start()`` then ``stop()`` (child or in-thread)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ChildServer(Started):
    """A child server a test starts with ``start()`` (setting ``_process``) and stops by leaving
    the ``with`` block."""

    _process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self._process is not None:
            stop_child(self._process)
        self._process = None
