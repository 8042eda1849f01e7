"""One task per key for work that several requests may wait on at once (a page look-up, a meld).

The first request starts it, the others join it and get its answer or its error as soon as it is
known. Shielded: a requester that hangs up never cancels the work the others wait on.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Flights"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flights(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[V]] = {}

    async def join(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """The answer of ``key``'s flight under way, or of one started now with ``start()``."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(start())
            self._flights[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        return await asyncio.shield(flight)

    def _landed(self, key: K, flight: asyncio.Task[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every requester may have hung up
