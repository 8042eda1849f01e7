"""``background.PriorityGate``: slots go to the lowest turn waiting, a waiter cancelled before its
turn takes none, and a promoted budget's waiters go through at once without taking any."""

from __future__ import annotations

import asyncio

from proxy.service.background import Budget, PriorityGate, background_slot, spend


def test_the_lowest_turn_enters_first_and_a_cancelled_waiter_takes_no_slot() -> None:
    async def run() -> list[tuple[int, int]]:
        gate = PriorityGate(1)
        entered: list[tuple[int, int]] = []
        release, held = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with gate.slot((0, 0)):
                held.set()
                await release.wait()

        async def waiter(turn: tuple[int, int]) -> None:
            async with gate.slot(turn):
                entered.append(turn)

        first = asyncio.create_task(holder())
        await held.wait()
        tasks = [asyncio.create_task(waiter(t)) for t in ((5, 1), (3, 2), (3, 1), (4, 0))]
        await asyncio.sleep(0)  # one turn of the loop: every waiter queues (none can enter)
        tasks[3].cancel()  # (4, 0): given up before its turn
        release.set()
        await asyncio.gather(first, *tasks, return_exceptions=True)
        async with gate.slot((9, 9)):  # the slot is free again: nothing leaked
            entered.append((9, 9))
        return entered

    assert asyncio.run(run()) == [(3, 1), (3, 2), (5, 1), (9, 9)]


def test_a_promoted_budget_lets_its_queued_fetches_through_without_slots() -> None:
    async def run() -> tuple[int, int, int]:
        gate = PriorityGate(1)
        release, held = asyncio.Event(), asyncio.Event()
        inside = 0

        async def holder() -> None:
            async with gate.slot((0,)):
                held.set()
                await release.wait()

        budget = Budget(gate, (1,))

        async def fetch(done: asyncio.Event) -> None:
            nonlocal inside
            spend(budget)
            async with background_slot():
                inside += 1
                await done.wait()

        first = asyncio.create_task(holder())
        await held.wait()
        done = asyncio.Event()
        fetches = [asyncio.create_task(fetch(done)) for _ in range(3)]
        for _ in range(3):
            await asyncio.sleep(0)  # every fetch queues behind the holder
        queued_before = inside
        budget.promote()
        for _ in range(3):
            await asyncio.sleep(0)
        through = inside
        done.set()
        release.set()
        await asyncio.gather(first, *fetches)
        return queued_before, through, await _slots_free(gate)

    # None entered while queued, all three once promoted, and the gate's one slot is back: neither
    # taken by them nor given back twice.
    assert asyncio.run(run()) == (0, 3, 1)


async def _slots_free(gate: PriorityGate) -> int:
    """How many slots ``gate`` hands out at once now (it leaves them all taken again)."""
    entered, stop = 0, asyncio.Event()

    async def take() -> None:
        nonlocal entered
        async with gate.slot((0,)):
            entered += 1
            await stop.wait()

    takers = [asyncio.create_task(take()) for _ in range(4)]
    for _ in range(3):
        await asyncio.sleep(0)  # loop turns, not time: every free slot is handed out by now
    at_once = entered
    stop.set()
    await asyncio.gather(*takers)
    return at_once
