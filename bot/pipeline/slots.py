"""Turn slots handed out earliest deadline first.

A burst queues for the process's turn slots. Served first come first served, every waiting
message is as late as the queue is long, and under a burst every WeChat message misses the
passive-reply window together (its answer then costs a customer-service API call, an outbox
row and a window-ledger write on top). The channels say how long their caller waits (WeChat
~4 s, REST 2 s, SMS/Alipay not at all), so a slot goes to the turn whose caller gives up
first. A turn whose caller has already given up gains nothing by going first: it yields once,
by ``LATE_YIELD_SECONDS``, to turns that can still make their deadline, and is never starved.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

# A message nobody waits for (its answer goes out through the outbox): its deadline, seconds
# after it arrived. The customer still reads it soon, so it is not pushed behind for long.
UNWAITED_DEADLINE_SECONDS = 8.0

# How far a turn whose caller already gave up falls behind turns that can still make it.
LATE_YIELD_SECONDS = 8.0


class TurnSlots:
    """At most ``size`` turns at once; ``acquire(deadline)`` waits for a slot, earliest
    deadline (event-loop time) first, ties in arrival order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._waiting: list[tuple[float, int, bool, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def free(self) -> int:
        return self._free

    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    async def acquire(self, deadline: float) -> None:
        if self._free > 0:  # a free slot means nobody live is waiting (``release`` hands over)
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (deadline, next(self._order), False, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot in the same loop turn as the cancellation
            raise

    @contextlib.asynccontextmanager
    async def held(self, deadline: float) -> AsyncIterator[None]:
        await self.acquire(deadline)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        """Hand the slot to the most urgent waiter, or keep it free."""
        now = asyncio.get_running_loop().time()
        while self._waiting:
            deadline, order, yielded, fut = heapq.heappop(self._waiting)
            if fut.done():  # cancelled while waiting
                continue
            if deadline < now and not yielded:
                heapq.heappush(self._waiting, (deadline + LATE_YIELD_SECONDS, order, True, fut))
                continue
            fut.set_result(None)
            return
        self._free += 1


def deadline_after(wait: float | None) -> float:
    """The deadline (event-loop time) of a message arriving now whose caller waits ``wait``
    seconds (0 or None: nobody waits)."""
    return asyncio.get_running_loop().time() + (wait if wait else UNWAITED_DEADLINE_SECONDS)
