"""Socket servers on 127.0.0.1 for the faults below HTTP, which no ASGI server can be made to send.

``DrippingHeaders``: a status line and headers sent one byte per ``interval`` seconds, never finished
(each byte comes well within any per-read timeout). ``RawAnswers(answer)``: every request answered
with the same raw bytes, then the connection closed (garbage in the status line or headers, a
Content-Length the body never reaches, a chunked body that breaks off).
``with RawAnswers(b"HTTP/1.1 200 OK\\r\\n...") as up: up.url``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

__all__ = ["DrippingHeaders", "RawAnswers"]


class _SocketServer:
    """Accepts connections until closed; each is served by ``_serve`` in a thread of its own."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self._listener.accept()
                self.requests += 1
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                thread.start()
                self._threads.append(thread)

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()


class DrippingHeaders(_SocketServer):
    def __init__(self, interval: float = 0.1) -> None:
        super().__init__()
        self._interval = interval

    def _serve(self, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"x-padding: " + b"a" * 100_000
        with conn, contextlib.suppress(OSError):
            for byte in head:
                if self._stop.wait(self._interval):
                    return
                conn.sendall(bytes([byte]))


class RawAnswers(_SocketServer):
    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self._answer = answer

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                head += data
            conn.sendall(self._answer)
