"""Turn slots go to the turn whose caller gives up first; a late one yields once, is not lost."""

from __future__ import annotations

import asyncio

from bot.pipeline.slots import LATE_YIELD_SECONDS, TurnSlots


async def _take(slots: TurnSlots, deadline: float, name: str, order: list[str]) -> None:
    await slots.acquire(deadline)
    order.append(name)


async def test_slots_go_earliest_deadline_first_and_ties_in_arrival_order() -> None:
    slots = TurnSlots(1)
    now = asyncio.get_running_loop().time()
    await slots.acquire(now)  # the one slot is busy
    order: list[str] = []
    tasks = [asyncio.create_task(_take(slots, now + d, name, order))
             for name, d in [("rest-late", 30), ("wechat", 4), ("sms", 8), ("wechat-2", 4)]]
    await asyncio.sleep(0)
    assert slots.waiting() == 4
    for _ in range(4):
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["wechat", "wechat-2", "sms", "rest-late"]
    assert slots.free() == 0
    slots.release()
    assert slots.free() == 1


async def test_a_turn_whose_caller_gave_up_yields_once_then_runs() -> None:
    slots = TurnSlots(1)
    now = asyncio.get_running_loop().time()
    await slots.acquire(now)
    order: list[str] = []
    late = asyncio.create_task(_take(slots, now - 1, "late", order))  # its caller gave up already
    soon = asyncio.create_task(_take(slots, now + 3, "soon", order))
    later = asyncio.create_task(_take(slots, now + LATE_YIELD_SECONDS + 5, "later", order))
    await asyncio.sleep(0)
    for _ in range(3):
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(late, soon, later)
    # behind the turn that can still make it, ahead of one due after its yield
    assert order == ["soon", "late", "later"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    slots = TurnSlots(1)
    now = asyncio.get_running_loop().time()
    await slots.acquire(now)
    order: list[str] = []
    gone = asyncio.create_task(_take(slots, now + 1, "gone", order))
    stays = asyncio.create_task(_take(slots, now + 2, "stays", order))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    slots.release()
    await stays
    assert order == ["stays"]
    slots.release()
    assert slots.free() == 1
    await slots.acquire(now)  # a free slot is taken at once even with a cancelled entry left over
    assert slots.free() == 0
