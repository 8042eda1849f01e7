"""``python -m proxy serve`` with measured fixes patched in: what a fix would buy, beside the real thing.

Not a product path.  ``WHEELMELD_BENCH_PATCH`` names the patches (comma-separated):

* ``nodelay``: with ``--workers N > 1`` uvicorn binds a plain ``socket.socket(family)`` (proto 0),
  so asyncio never sets TCP_NODELAY on accepted connections and every keep-alive response
  (headers, then body: two writes) waits ~40 ms for the client's delayed ACK.  The patch sets
  TCP_NODELAY on the listener; Linux copies it to accepted sockets.
* ``dnscache``: httpcore resolves the host of every *new* upstream connection itself (a burst of
  up to 64 concurrent ``getaddrinfo`` calls on a cold meld or a cold ``uv lock``); resolvers that
  drop part of such a burst make glibc retry after its 5 s timeout.  The patch shares one answer
  per (host, port) for 60 s across the process, as ``_CachingResolver`` already does for the
  fetch policy.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any

import uvicorn.config

from proxy.cli import main

__all__: list[str] = []

_bind = uvicorn.config.Config.bind_socket
_getaddrinfo = socket.getaddrinfo
_answers: dict[tuple[Any, ...], tuple[float, Any]] = {}
_locks: dict[tuple[Any, ...], threading.Lock] = {}
_guard = threading.Lock()


def _bind_nodelay(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _cached_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
    key = (*args, *sorted(kwargs.items()))
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # one lookup per key at a time: the burst becomes one query
        hit = _answers.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        answer = _getaddrinfo(*args, **kwargs)
        _answers[key] = (time.monotonic() + 60.0, answer)
        return answer


def _apply(patches: set[str]) -> None:
    if "nodelay" in patches:
        uvicorn.config.Config.bind_socket = _bind_nodelay  # type: ignore[method-assign]
    if "dnscache" in patches:
        socket.getaddrinfo = _cached_getaddrinfo


# Workers are spawned processes that re-import this file as ``__mp_main__``: patch them too.
_apply({p.strip() for p in os.environ.get("WHEELMELD_BENCH_PATCH", "").split(",") if p.strip()})

if __name__ == "__main__":
    sys.exit(main())
