"""``background.PriorityGate``: slots go to the lowest turn waiting, and a waiter cancelled before
its turn takes none."""

from __future__ import annotations

import asyncio

from proxy.service.background import PriorityGate


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
