"""Upstream slots for work nobody waits on yet (running ahead), so client traffic always goes first.

Running ahead sets a ``Budget`` in its tasks' context; every metadata fetch made inside (a meld's
siblings included: tasks copy the context) waits for one of the budget's few slots, kept well below
the route's own gates, so a client's fetches always find most of them free. A budget is promoted
once a client asks for what it is computing: from then on it fetches as fast as a client would,
its fetches already queued for a slot included (a meld queues all its siblings' reads at once).
Jobs wait for their turn at a ``PriorityGate``: the one nearest the client's frontier goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Budget", "PriorityGate", "Turn", "background_slot", "running_ahead", "spend"]

# A place in the queue at a PriorityGate, compared as a tuple: the lowest goes first.
Turn = tuple[int, ...]


@dataclass(slots=True)
class Budget:
    gate: PriorityGate  # shared by every job of one run-ahead service
    order: Turn  # its job's turn at the gate, the lowest first
    promoted: bool = False  # a client now waits for this work
    queued: set[asyncio.Future[bool]] = field(default_factory=set)  # its fetches waiting at the gate

    def promote(self) -> None:
        """A client now waits for this work: its fetches go at once, the queued ones too."""
        self.promoted = True
        for turn in self.queued:
            if not turn.done():
                turn.set_result(False)  # let through without a slot


_BUDGET: ContextVar[Budget | None] = ContextVar("wheelmeld_background_budget", default=None)


def spend(budget: Budget) -> None:
    """Make the current task (and the tasks it starts) fetch within ``budget``."""
    _BUDGET.set(budget)


def running_ahead() -> bool:
    """Whether the current task works for a budget (runs ahead) rather than for a client."""
    return _BUDGET.get() is not None


@contextlib.asynccontextmanager
async def background_slot() -> AsyncIterator[None]:
    """Around one upstream fetch: a slot of the current budget, or nothing for a client's request."""
    budget = _BUDGET.get()
    if budget is None or budget.promoted:
        yield
        return
    async with budget.gate.slot(budget.order, queued=budget.queued):
        yield


class PriorityGate:
    """At most ``size`` holders at once; a waiter with a lower ``order`` enters first, not the one
    that came first as at a semaphore (of equal orders, the first)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[tuple[Turn, int, asyncio.Future[bool]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(
        self, order: Turn, *, queued: set[asyncio.Future[bool]] | None = None
    ) -> AsyncIterator[None]:
        """Hold a slot while inside. ``queued``: where the wait is kept while it lasts, so that its
        owner can let it through without a slot (``Budget.promote``)."""
        # Handed out on the loop's next turn, not at once: jobs scheduled together (one release's
        # requirements) all queue before the first free slot goes to the lowest of them.
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (order, next(self._arrivals), turn))
        asyncio.get_running_loop().call_soon(self._hand_out)
        if queued is not None:
            queued.add(turn)
        try:
            held = await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():  # handed a slot, not taken
                self._free += 1
                self._hand_out()
            raise
        finally:
            if queued is not None:
                queued.discard(turn)
        try:
            yield
        finally:
            if held:
                self._free += 1
                self._hand_out()

    def _hand_out(self) -> None:
        while self._free > 0 and self._waiting:
            *_order, turn = heapq.heappop(self._waiting)
            if not turn.done():  # a cancelled or let-through waiter's turn is done already
                self._free -= 1
                turn.set_result(True)
