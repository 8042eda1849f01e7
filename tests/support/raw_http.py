"""A socket server on 127.0.0.1 that answers every request with the same raw bytes, then hangs up.

For the faults below HTTP that no ASGI server can be made to send: garbage in the status line or
headers, a Content-Length the body never reaches, a chunked body that breaks off.
``with RawAnswers(b"HTTP/1.1 200 OK\\r\\n...") as up: up.url``.
"""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["RawAnswers"]


class RawAnswers:
    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self._listener.accept()
                self.requests += 1
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(5)
                    head = b""
                    while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                        head += data
                    conn.sendall(self._answer)

    def __enter__(self) -> RawAnswers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
