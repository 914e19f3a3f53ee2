"""What the pipeline's parts share: small helpers for group writers and waits, the local view of
rows and conversations, and the retry rule.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


from channels.base import Receipt, Reply, SideWrite
from common.observe import bind_request_id

log = logging.getLogger("powerbot.pipeline")


INSERT_CHUNK = 500


async def _let_others_join() -> None:
    """Before a group commit takes its batch: two turns of the event loop, so the requests and
    turns that are ready in them (already read, already answered) join this transaction
    instead of the next one: fewer commits and fewer pages written per message (about a
    third fewer of each in the WeChat benchmark), for two loop iterations of wait."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _settled(fut: asyncio.Future[Any], timeout: float | None = None) -> bool:
    """Wait until ``fut`` is done (True) or ``timeout`` seconds pass (False), never cancelling
    it: what ``wait_for(shield(fut), timeout)`` does, with one future and one timer instead of
    three futures, a timer and their callbacks — paid two or three times per message."""
    if fut.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: Any = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    fut.add_done_callback(wake)
    timer = loop.call_later(timeout, wake) if timeout is not None else None
    try:
        await waiter
    finally:
        fut.remove_done_callback(wake)
        if timer is not None:
            timer.cancel()
    return fut.done()


TurnPrefetch = Callable[[Any, str, str], Any]


# prefetched reads by inbound row id: (loop time, the conversation's last finished row, value)
_Fetched = dict[int, tuple[float, int, Any]]


class ConversationLocks:
    """One lock per conversation inside this process (cross-process locks wrap this)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def __call__(self, conversation_id: str) -> asyncio.Lock:
        return self._locks[conversation_id]

    def busy(self, conversation_id: str) -> bool:
        lock = self._locks.get(conversation_id)
        return lock is not None and lock.locked()

    def discard(self, conversation_id: str) -> None:
        lock = self._locks.get(conversation_id)
        if lock is not None and not lock.locked() and not getattr(lock, "_waiters", None):
            del self._locks[conversation_id]


@dataclass(slots=True)
class _Inbound:
    """A queued inbound row."""

    values: dict[str, Any]
    inserted: asyncio.Future[int | None]  # its id (None: a duplicate)
    fut: asyncio.Future[Any] | None  # its replies (None: nobody waits)
    also: Sequence[SideWrite]  # the channel's side writes
    deadline: float  # when its caller stops waiting (``bot.pipeline.slots``)


@dataclass
class _Row:
    """An inbound row as this process inserted it (same attributes as ``InboundMessage``)."""

    id: int
    channel: str
    dedupe_key: str
    sender_id: str
    conversation_id: str
    kind: str
    text: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    received_at: datetime


@dataclass
class _ConvState:
    """What this process knows about one conversation's waiting rows (single-process mode).

    ``clean``: no row of the conversation is waiting except those in ``pending`` (rows this
    process inserted); learnt when a select found nothing, lost on any postponement.
    ``inflight``: inserts started but not yet registered — while > 0 the order is not known
    locally and the drain selects from the store.
    """

    pending: list[int] = field(default_factory=list)
    rows: dict[int, _Row] = field(default_factory=dict)
    inflight: int = 0
    clean: bool = False
    last_done: int = 0

    @property
    def idle(self) -> bool:
        return not self.pending and self.inflight == 0


def _retry_may_help(exc: BaseException) -> bool:
    """Whether running a failed turn again may succeed. The store, the network or a race
    (any error of those kinds) may be gone next time; a bug or data the turn cannot handle
    (a TypeError on a malformed payload, a date that does not exist) fails the same way every
    time, so it is answered at once instead of blocking the conversation through retries."""
    return not isinstance(exc, _PERMANENT)


_PERMANENT = (TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RecursionError,
              AssertionError, NotImplementedError)


def _answer(queued: list[tuple[int, Reply]], held: Sequence[Reply] = (), held_id: int | None = None) -> Receipt:
    """What a waiting channel gets: the held replies (the turn's, ``held_id`` is their row),
    then those queued in the outbox."""
    return Receipt(duplicate=False, replies=[*held, *(r for _, r in queued)], outbox_ids=[i for i, _ in queued],
                   held=held_id)


def _task_of_no_request(coro: Any) -> asyncio.Task[Any]:
    """A task for work shared by many requests (group writers, drains): started from one
    request's handler, it must not log with that request's id."""
    ctx = contextvars.copy_context()
    ctx.run(_forget_request_id)
    return asyncio.get_running_loop().create_task(coro, context=ctx)


def _forget_request_id() -> None:
    bind_request_id(None)


def _request_id_of(row: Any) -> str | None:
    payload = row.payload
    return payload.get("request_id") if isinstance(payload, dict) else None


_ROW_FIELDS = ("channel", "dedupe_key", "sender_id", "conversation_id", "kind", "text", "payload", "attempts",
               "next_attempt_at", "received_at")


def _default_max_active(bind: Any) -> int:
    """Conversations running the dialogue at once: the pool minus room for the other writers
    (inbound inserts, inline marks, outbox, console). On SQLite a turn holds no connection
    while it runs (its write joins the next grouped one), so the bound is about batching: a
    turn keeps its slot until its group write commits, and the slots bound how many turns
    one commit carries. WeChat benchmark, c=200, interleaved (with group writes compiling a
    few statement sizes, ``bot.precompiled``): 48 slots 0.78-0.79 ms CPU a message, 96 slots
    0.76, 160 slots 0.76-0.77; 16 slots (before) 0.86-0.90 ms with every batch size compiled."""
    if bind is None:
        return 16
    if bind.dialect.name == "sqlite":
        return 96
    pool = bind.pool
    try:
        size = pool.size() + max(0, getattr(pool, "_max_overflow", 0))
    except Exception:  # noqa: BLE001
        return 16
    return max(2, size - 4)
