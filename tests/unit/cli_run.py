"""Running the real ``wheelmeld`` command in a subprocess, with an environment that steers nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
WHEELMELD = Path(sys.executable).parent / "wheelmeld"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment minus anything that would steer wheelmeld or pip; caches under tmp_path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WHEELMELD_", "UV_", "PIP_")) and k not in ("HTTP_PROXY", "HTTPS_PROXY")
    }
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


def run(
    args: Sequence[str], tmp_path: Path, *, env: Mapping[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python -m proxy ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        env=dict(env) if env is not None else clean_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Served:
    """A ``wheelmeld serve`` that answered ``/healthz`` on ``port``; ``stderr`` is filled when it ends."""

    port: int
    stderr: str = ""


@contextmanager
def serving(
    args: Sequence[str], env: Mapping[str, str], port: int, *, wrapper: Sequence[str] = ()
) -> Iterator[Served]:
    """``wheelmeld serve ARGS`` (run by ``wrapper``, if given) until the block ends; fails unless it
    answers on 127.0.0.1:``port``."""
    process = subprocess.Popen(
        [*wrapper, str(WHEELMELD), "serve", *args],
        cwd=REPO,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    output = process.communicate()[1]
                    raise AssertionError(f"wheelmeld did not answer on :{port}: {output}") from None
                time.sleep(0.05)
        yield served
    finally:
        process.terminate()
        try:
            served.stderr = process.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            process.kill()
            served.stderr = process.communicate()[1]
