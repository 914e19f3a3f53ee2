"""Inbound pipeline and outbox on both stores: persisted first, deduped, ordered, retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from bot import outbox as outbox_mod
from bot.db import make_engine, make_sessionmaker
from bot.migrate import BOT_MIGRATIONS, downgrade, upgrade
from bot.models import InboundMessage, OutboxMessage
from bot.outbox import OutboxWorker
from bot.pipeline import Pipeline, TransientError
from channels.base import Channel, DeliveryError, Message, Reply

# what a customer is told while the bot cannot answer (utter_busy in domain.yml, default brand)
BUSY_TEXT = {"zh": "系统繁忙，您的消息已收到并排队处理，恢复后我们会第一时间回复您。如遇停电、电线断落等紧急情况，请远离危险并拨打95598。"}

class EchoHandler:
    """A dialogue stand-in that records call order; slow on demand to provoke races."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.fail_times = 0

    async def handle(self, message: Message) -> list[Reply]:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TransientError("core down")
        if message.text.startswith("slow"):
            await asyncio.sleep(0.2)
        self.seen.append(message.text)
        return [Reply(channel=message.channel, recipient_id=message.sender_id, text=f"echo:{message.text}")]


def msg(text: str, mid: str, sender: str = "u1") -> Message:
    return Message(channel="rest", sender_id=sender, text=text, message_id=mid)


async def persisted_order(sm) -> list[str]:  # type: ignore[no-untyped-def]
    async with sm() as s:
        return list((await s.execute(select(InboundMessage.text).order_by(InboundMessage.id))).scalars())


async def count(sm, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with sm() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_migrations_up_and_down(store_url: str) -> None:
    await upgrade(store_url, BOT_MIGRATIONS)
    await downgrade(store_url, BOT_MIGRATIONS, "base")
    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(__import__("sqlalchemy").inspect(c).get_table_names()))
    await engine.dispose()
    assert {"inbound_messages", "outbox", "cache_entries"} <= tables


async def test_reply_inline_and_duplicate_ignored(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = EchoHandler()
    p = Pipeline(sessionmaker, handler)
    r1 = await p.receive(msg("hello", "m1"), wait=5)
    assert not r1.duplicate and [r.text for r in r1.replies or []] == ["echo:hello"]
    r2 = await p.receive(msg("hello", "m1"), wait=5)
    assert r2.duplicate and r2.replies is None
    assert handler.seen == ["hello"]
    assert await count(sessionmaker, InboundMessage) == 1
    assert await p.mark_delivered_inline(r1)
    assert await count(sessionmaker, OutboxMessage, OutboxMessage.status == "sent") == 1
    await p.stop()


async def test_concurrent_messages_processed_in_arrival_order(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = EchoHandler()
    p = Pipeline(sessionmaker, handler)
    texts = ["slow-1", "2", "slow-3", "4", "5"]
    tasks = []
    for i, t in enumerate(texts):
        tasks.append(asyncio.create_task(p.receive(msg(t, f"o{i}"), wait=10)))
        await asyncio.sleep(0.01)  # arrival order = persist order
    await asyncio.gather(*tasks)
    # Processing order must equal persist (arrival) order, whatever the scheduling.
    assert handler.seen == await persisted_order(sessionmaker)
    assert sorted(handler.seen) == sorted(texts)
    await p.stop()


async def test_core_outage_sends_busy_notice_then_real_answer(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    handler = EchoHandler()
    handler.fail_times = 2
    p = Pipeline(sessionmaker, handler)
    r = await p.receive(msg("查电费", "b1"), wait=5)
    assert r.replies and r.replies[0].text == BUSY_TEXT["zh"]
    assert await count(sessionmaker, InboundMessage, InboundMessage.status == "received") == 1
    # Later messages of the same conversation wait behind the failed one (order kept).
    await p.receive(msg("second", "b2"), wait=0.3)
    assert handler.seen == []
    for _ in range(3):  # recovery passes; make the backoff due immediately
        async with sessionmaker() as s, s.begin():
            await s.execute(update(InboundMessage).values(next_attempt_at=outbox_mod.utcnow() - timedelta(seconds=1)))
        await p.drain("rest:u1")
    assert handler.seen == ["查电费", "second"]
    assert await count(sessionmaker, InboundMessage, InboundMessage.status == "done") == 2
    # exactly one busy notice even though it failed twice
    async with sessionmaker() as s:
        texts = (await s.execute(select(OutboxMessage.payload))).scalars().all()
    assert sum(1 for t in texts if t["text"] == BUSY_TEXT["zh"]) == 1
    await p.stop()


async def test_recovery_picks_up_messages_left_by_a_crash(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    async with sessionmaker() as s, s.begin():
        s.add(
            InboundMessage(
                channel="rest", dedupe_key="crash1", sender_id="u9", conversation_id="rest:u9", kind="text",
                text="left behind", payload={}, status="received", attempts=0,
                next_attempt_at=outbox_mod.utcnow() - timedelta(minutes=1),
                received_at=outbox_mod.utcnow() - timedelta(minutes=1),
            )
        )
    handler = EchoHandler()
    p = Pipeline(sessionmaker, handler)
    assert await p.recover_once() == 1
    await asyncio.sleep(0.3)
    assert handler.seen == ["left behind"]
    assert await count(sessionmaker, OutboxMessage, OutboxMessage.recipient_id == "u9") == 1
    await p.stop()


class FlakyChannel(Channel):
    name = "flaky"

    def __init__(self, fail: int, retryable: bool = True) -> None:
        self.fail, self.retryable, self.sent = fail, retryable, []

    def routes(self):  # type: ignore[no-untyped-def]
        return []

    async def send(self, reply: Reply) -> str | None:
        if self.fail > 0:
            self.fail -= 1
            raise DeliveryError("provider 503", retryable=self.retryable)
        self.sent.append(reply.text)
        return f"p{len(self.sent)}"


async def _enqueue(sm, text: str, key: str | None = None) -> int | None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        return await outbox_mod.enqueue(s, Reply(channel="flaky", recipient_id="r", text=text), dedupe_key=key)


async def test_outbox_retries_then_delivers_and_dedupes(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    ch = FlakyChannel(fail=2)
    w = OutboxWorker(sessionmaker, {"flaky": ch})
    assert await _enqueue(sessionmaker, "a", "k1") is not None
    assert await _enqueue(sessionmaker, "a-again", "k1") is None  # same event → one notice
    for _ in range(5):
        await w.run_once()
    assert ch.sent == ["a"]
    async with sessionmaker() as s:
        row = (await s.execute(select(OutboxMessage))).scalar_one()
    assert row.status == "sent" and row.attempts == 3 and row.provider_id == "p1"


async def test_outbox_dead_letters_after_max_attempts(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    ch = FlakyChannel(fail=100)
    w = OutboxWorker(sessionmaker, {"flaky": ch})
    await _enqueue(sessionmaker, "never")
    for _ in range(outbox_mod.MAX_ATTEMPTS + 2):
        await w.run_once()
    async with sessionmaker() as s:
        row = (await s.execute(select(OutboxMessage))).scalar_one()
    assert row.status == "dead" and row.attempts == outbox_mod.MAX_ATTEMPTS and "503" in (row.last_error or "")


async def test_non_retryable_failure_is_dead_at_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ch = FlakyChannel(fail=1, retryable=False)
    w = OutboxWorker(sessionmaker, {"flaky": ch})
    await _enqueue(sessionmaker, "x")
    await w.run_once()
    await w.run_once()
    assert ch.sent == []
    assert await count(sessionmaker, OutboxMessage, OutboxMessage.status == "dead") == 1


async def test_two_workers_never_send_a_row_twice(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ch = FlakyChannel(fail=0)
    for i in range(60):
        await _enqueue(sessionmaker, f"n{i}", f"d{i}")
    w1 = OutboxWorker(sessionmaker, {"flaky": ch}, batch_size=7)
    w2 = OutboxWorker(sessionmaker, {"flaky": ch}, batch_size=7)
    for _ in range(12):
        await asyncio.gather(w1.run_once(), w2.run_once())
    assert sorted(ch.sent) == sorted(f"n{i}" for i in range(60))
    assert len(ch.sent) == len(set(ch.sent))


async def test_two_processes_share_one_conversation_in_order(postgres_url: str) -> None:
    """Two pipelines (as two gateway processes) on one PostgreSQL: ordered, each answered once."""
    await upgrade(postgres_url, BOT_MIGRATIONS)
    engines = [make_engine(postgres_url), make_engine(postgres_url)]
    handler = EchoHandler()  # shared log = the conversation as the customer sees it
    pipes = [Pipeline(make_sessionmaker(e), handler) for e in engines]
    assert all(p.cross_process for p in pipes)
    texts = [f"slow-{i}" if i % 3 == 0 else str(i) for i in range(9)]
    tasks = []
    for i, t in enumerate(texts):
        tasks.append(asyncio.create_task(pipes[i % 2].receive(msg(t, f"x{i}"), wait=20)))
        await asyncio.sleep(0.02)
    receipts = await asyncio.gather(*tasks)
    assert handler.seen == await persisted_order(make_sessionmaker(engines[0]))
    assert sorted(handler.seen) == sorted(texts)
    assert [[r.text for r in rc.replies or []] for rc in receipts] == [[f"echo:{t}"] for t in texts]
    for p in pipes:
        await p.stop()
    for e in engines:
        await e.dispose()
