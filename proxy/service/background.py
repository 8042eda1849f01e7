"""Upstream slots for work nobody waits on yet (running ahead), so client traffic always goes first.

Running ahead sets a ``Budget`` in its tasks' context; every metadata fetch made inside (a meld's
siblings included: tasks copy the context) waits for one of the budget's few slots, kept well below
the route's own gates, so a client's fetches always find most of them free. A budget is promoted
once a client asks for what it is computing: from then on it fetches as fast as a client would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Budget", "background_slot", "running_ahead", "spend"]


@dataclass(slots=True)
class Budget:
    gate: asyncio.Semaphore  # shared by every job of one run-ahead service
    promoted: bool = False  # a client now waits for this work


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
    async with budget.gate:
        yield
