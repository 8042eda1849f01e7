"""An ASGI app served by uvicorn in a background thread on a loopback socket, for tests.

Both the fake upstream and the real proxy run this way: real sockets, real HTTP, one thread each,
started in milliseconds and stopped at once (``_PromptServer``), so a test can run dozens of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = ["ServerStartError", "ThreadedServer"]


# Only a broken server waits this long (one that works is up in milliseconds); 10 s once ran out
# for the fake upstream's own process (tests/support_tests/test_upstream.py) on a loaded machine.
_START_TIMEOUT = 30.0


class ServerStartError(RuntimeError):
    """The server could not bind, or did not become ready in time."""


class _PromptServer(uvicorn.Server):
    """uvicorn polls ``should_exit`` every 100 ms; tests start and stop hundreds of servers, so
    ``stop`` wakes the loop at once instead."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake, self._loop = asyncio.Event(), asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(wake.set)


class ThreadedServer:
    """``ThreadedServer(app).start()`` binds ``host:port`` (0: any free port) and serves ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["on", "off"] = "off",
        name: str = "server",
    ) -> None:
        self._app, self._host, self._requested_port = app, host, port
        self._lifespan, self._name = lifespan, name
        self._server: _PromptServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    def start(self) -> int:
        """Bind, serve in a background thread, wait until ready; returns the bound port."""
        if self._thread is not None:
            raise ServerStartError(f"{self._name} already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A socket made by hand has proto 0, so asyncio leaves Nagle on for what it accepts and every
        # keep-alive response waits ~44 ms for a delayed ACK; accepted sockets inherit this option.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ServerStartError(f"cannot bind {self._host!r}:{self._requested_port!r}") from exc
        self._socket, self.port = sock, sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan=self._lifespan,
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = _PromptServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"{self._name}:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"the {self._name} did not start")
            time.sleep(0.005)
        return self.port

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.wake()
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
