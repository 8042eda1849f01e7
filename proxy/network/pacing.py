"""The cut-offs of a file download: no byte for too long, or too slow for a download nobody reads.

A download a client reads goes on as long as bytes keep coming (``idle``): the client is there and
has its own patience. One nobody reads any more goes on only while it brings at least ``min_rate``
bytes per second, averaged over each ``idle``-long window: a fast one warms the cache for the next
client (a client that hung up at 90 % of a 2 GB wheel usually asks again), a dripping one would hold
an upstream connection and a temp file for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["Pace", "Stalled", "paced"]


@dataclass(frozen=True, slots=True)
class Pace:
    idle: float = 30.0  # seconds without a byte before a download is cut off
    min_rate: int = 65536  # bytes/s a download nobody reads must keep up to go on


class Stalled(Exception):
    """The download was cut off; ``str()`` is a one-line reason."""


async def paced(
    source: AsyncIterator[bytes],
    pace: Pace,
    unread: Callable[[], bool],
    size: int,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[bytes]:
    """``source`` in pieces of ``size`` bytes (the last one shorter), raising ``Stalled`` at a cut-off.

    ``unread()`` says whether nobody reads the download right now. The rate of an unread download is
    checked as bytes arrive; one that brings none is cut off by ``idle`` anyway.
    """
    now = clock or asyncio.get_running_loop().time
    pending: list[bytes] = []
    have = 0
    window_start: float | None = None  # while unread: when the current window began
    window_bytes = 0
    iterator = aiter(source)
    while True:
        try:
            async with asyncio.timeout(pace.idle):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise Stalled(f"no byte for {pace.idle:g} s") from None
        if unread():
            if window_start is None:
                window_start, window_bytes = now(), 0
            window_bytes += len(chunk)
            elapsed = now() - window_start
            if elapsed >= pace.idle:
                if window_bytes < pace.min_rate * elapsed:
                    rate = window_bytes / elapsed
                    raise Stalled(f"nobody reads it and it comes at {rate:.0f} bytes/s")
                window_start, window_bytes = now(), 0
        else:
            window_start = None
        pending.append(chunk)
        have += len(chunk)
        if have >= size:
            yield b"".join(pending) if len(pending) > 1 else pending[0]
            pending, have = [], 0
    if pending:
        yield b"".join(pending)
