"""A thread-safe log of the requests a test server answered, for asserting how a client used it.

The server thread writes, the test thread reads.  Body bytes are counted *before* each chunk is
handed to the transport, so once a client has read a response the log already accounts for it —
a test never races the server's bookkeeping.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["RequestLog", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered request, as seen by the server."""

    method: str
    path: str
    query: str
    range: str | None
    status: int
    bytes_sent: int
    headers: Mapping[str, str]


class _Entry:
    """The mutable, in-flight form of a record; only ``RequestLog`` touches it."""

    __slots__ = ("bytes_sent", "headers", "method", "path", "query", "status")

    def __init__(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.status = 0
        self.bytes_sent = 0

    def freeze(self) -> RequestRecord:
        return RequestRecord(
            method=self.method,
            path=self.path,
            query=self.query,
            range=self.headers.get("range"),
            status=self.status,
            bytes_sent=self.bytes_sent,
            headers=self.headers,
        )


class RequestLog:
    """Every request in arrival order, with helpers for the common assertions."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._entries: list[_Entry] = []
        self._in_flight = 0
        self._most_in_flight = 0

    def open(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> _Entry:
        """Start recording a request (server side)."""
        entry = _Entry(method, path, query, MappingProxyType(dict(headers)))
        with self._lock:
            self._entries.append(entry)
            self._in_flight += 1
            self._most_in_flight = max(self._most_in_flight, self._in_flight)
            self._lock.notify_all()
        return entry

    def wait_for(self, path_suffix: str, timeout: float) -> bool:
        """Block until a request whose path ends with ``path_suffix`` has arrived (True), or
        ``timeout`` seconds have passed without one (False)."""
        with self._lock:
            return self._lock.wait_for(
                lambda: any(e.path.endswith(path_suffix) for e in self._entries), timeout
            )

    def close(self, entry: _Entry) -> None:
        """The answer to ``entry`` is sent, or given up (server side)."""
        with self._lock:
            self._in_flight -= 1

    def most_in_flight(self) -> int:
        """The most requests under way at once since the start (or the last ``reset``)."""
        with self._lock:
            return self._most_in_flight

    def set_status(self, entry: _Entry, status: int) -> None:
        """Record the status line just before it is sent (server side)."""
        with self._lock:
            entry.status = status

    def add_bytes(self, entry: _Entry, count: int) -> None:
        """Account for body bytes just before they are sent (server side)."""
        with self._lock:
            entry.bytes_sent += count

    def records(self) -> tuple[RequestRecord, ...]:
        """A snapshot of every request so far."""
        with self._lock:
            return tuple(entry.freeze() for entry in self._entries)

    def requests_for(self, path_suffix: str = "") -> tuple[RequestRecord, ...]:
        """Requests whose (decoded) path ends with ``path_suffix``."""
        return tuple(r for r in self.records() if r.path.endswith(path_suffix))

    def bytes_sent_total(self, path_suffix: str = "") -> int:
        """Body bytes sent, over all requests or those whose path ends with ``path_suffix``."""
        return sum(r.bytes_sent for r in self.requests_for(path_suffix))

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._entries.clear()
            self._most_in_flight = self._in_flight

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
