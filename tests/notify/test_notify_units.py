"""Pieces of the notification pipeline in isolation: quiet hours, keys, batch enqueue, hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import func, select

import bot.outbox as outbox_mod
from bot.db import make_engine, make_sessionmaker
from bot.migrate import BOT_MIGRATIONS, upgrade
from bot.models import OutboxMessage
from bot.notify.policies import parse_window, quiet_hours_policy, quiet_until
from bot.notify.producer import dedupe_key
from common.phones import sms_number as normalize_phone
from bot.outbox import OutboxWorker, enqueue_many
from channels.base import Channel, DeliveryError, Reply

SH = ZoneInfo("Asia/Shanghai")


def sh(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH).astimezone(timezone.utc)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (sh(2026, 11, 26, 23, 30), sh(2026, 11, 27, 8)),
        (sh(2026, 11, 27, 7, 59), sh(2026, 11, 27, 8)),
        (sh(2026, 11, 26, 22, 0), sh(2026, 11, 27, 8)),
        (sh(2026, 11, 26, 8, 0), None),
        (sh(2026, 11, 26, 21, 59), None),
        (sh(2026, 11, 26, 12, 0), None),
    ],
)
def test_quiet_until_default_window(local: datetime, expected: datetime | None) -> None:
    assert quiet_until(local, parse_window("22:00-08:00"), SH) == expected  # type: ignore[arg-type]


def test_quiet_window_within_a_day_and_parsing() -> None:
    w = parse_window("12:00-14:00")
    assert quiet_until(sh(2026, 1, 1, 13), w, SH) == sh(2026, 1, 1, 14)  # type: ignore[arg-type]
    assert quiet_until(sh(2026, 1, 1, 14), w, SH) is None  # type: ignore[arg-type]
    assert parse_window("") is None and parse_window(None) is None
    with pytest.raises(ValueError):
        parse_window("night")


def test_quiet_policy_holds_only_non_urgent_notices_on_quiet_channels() -> None:
    policy = quiet_hours_policy("22:00-08:00", "Asia/Shanghai", ["sms"])
    assert policy is not None
    night = sh(2026, 11, 26, 23)

    def row(**kw: object) -> OutboxMessage:
        base = {"channel": "sms", "kind": "notice", "urgent": False}
        base.update(kw)
        return OutboxMessage(**base)

    assert policy(row(), night) == sh(2026, 11, 27, 8)
    assert policy(row(urgent=True), night) is None
    assert policy(row(kind="reply"), night) is None  # answers to the customer's own SMS
    assert policy(row(channel="email"), night) is None
    assert policy(row(), sh(2026, 11, 27, 9)) is None
    assert quiet_hours_policy("", "Asia/Shanghai", ["sms"]) is None


def test_keys_and_phones() -> None:
    assert normalize_phone("138 0013 8000") == "+8613800138000"
    assert normalize_phone("+86-13800138000") == "+8613800138000"
    assert normalize_phone("008613800138000") == "+8613800138000"
    assert normalize_phone("12345") is None and normalize_phone(None) is None
    assert dedupe_key(7, "sms", "+8613800138000") == "evt:7:sms:+8613800138000"
    long = dedupe_key(7, "email", "x" * 250 + "@example.com")
    assert len(long) <= 200 and long.startswith("evt:7:email:h:")
    assert long == dedupe_key(7, "email", "x" * 250 + "@example.com")


# --- outbox additions (batch enqueue, batch claim, dead-letter hooks) on both backends ------
@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    return request.getfixturevalue("postgres_url")


@pytest_asyncio.fixture
async def sessionmaker(db_url) -> AsyncIterator:  # type: ignore[no-untyped-def]
    url = db_url
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    await engine.dispose()


class Recorder(Channel):
    name = "rec"

    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.sent: list[str] = []
        self.refuse = refuse

    def routes(self):  # type: ignore[no-untyped-def]
        return []

    async def send(self, reply: Reply) -> str | None:
        if reply.recipient_id in self.refuse:
            raise DeliveryError("window closed", retryable=False, code="45015")
        self.sent.append(reply.recipient_id)
        return f"id-{reply.recipient_id}"


def notice(recipient: str) -> Reply:
    return Reply(channel="rec", recipient_id=recipient, text="停电通知", kind="notice")


async def test_enqueue_many_skips_duplicates_and_worker_delivers_in_batches(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    items = [{"reply": notice(f"r{i}"), "kind": "notice", "dedupe_key": f"evt:1:rec:r{i}"} for i in range(250)]
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, items, chunk=100)
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, items[:50] + [{"reply": notice("new"), "kind": "notice", "dedupe_key": "evt:2:rec:new"}])
    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 251
    ch = Recorder()
    w = OutboxWorker(sessionmaker, {"rec": ch}, batch_size=100, concurrency=10)
    assert await w.run_once() == 100
    while await w.run_once():
        pass
    assert sorted(ch.sent) == sorted([f"r{i}" for i in range(250)] + ["new"])
    async with sessionmaker() as s:
        rows = (await s.execute(select(OutboxMessage))).scalars().all()
    assert {r.status for r in rows} == {"sent"} and all(r.provider_id == f"id-{r.recipient_id}" for r in rows)


async def test_dead_letter_hook_runs_in_the_same_transaction(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(outbox_mod, "backoff", lambda attempts: timedelta(0))
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, [{"reply": notice("closed"), "kind": "notice", "dedupe_key": "k-closed"}])
    seen: list[tuple[int, str | None]] = []

    async def hook(session, row, error):  # type: ignore[no-untyped-def]
        seen.append((row.id, getattr(error, "code", None)))
        await outbox_mod.enqueue(session, notice("fallback"), kind="notice", dedupe_key="k-fallback")

    ch = Recorder(refuse={"closed"})
    w = OutboxWorker(sessionmaker, {"rec": ch}, max_attempts=2)
    w.dead_letter_hooks.append(hook)
    await w.run_once()
    await w.run_once()
    assert len(seen) == 1 and seen[0][1] == "45015"
    assert ch.sent == ["fallback"]
    async with sessionmaker() as s:
        rows = {r.recipient_id: r.status for r in (await s.execute(select(OutboxMessage))).scalars()}
    assert rows == {"closed": "dead", "fallback": "sent"}


async def test_worker_with_two_claim_loops_sends_each_row_once(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    items = [{"reply": notice(f"p{i}"), "kind": "notice", "dedupe_key": f"evt:3:rec:p{i}"} for i in range(300)]
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, items)
    ch = Recorder()
    w = OutboxWorker(sessionmaker, {"rec": ch}, batch_size=40, concurrency=8, poll_interval=0.05)
    await w.start()
    w.configure(pipelines=3)  # tuned after start, as the notify feature does
    assert len(w._extra) == 2
    for _ in range(400):
        if len(ch.sent) >= 300:
            break
        await asyncio.sleep(0.05)
    await w.stop()
    assert sorted(ch.sent) == sorted(f"p{i}" for i in range(300))
    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent")) == 300


async def test_stop_lets_in_flight_sends_finish_and_hands_back_the_rest(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    class Slow(Recorder):
        async def send(self, reply: Reply) -> str | None:
            await asyncio.sleep(0.3)
            return await super().send(reply)

    items = [{"reply": notice(f"s{i}"), "kind": "notice", "dedupe_key": f"evt:4:rec:s{i}"} for i in range(20)]
    async with sessionmaker() as s, s.begin():
        await enqueue_many(s, items)
    ch = Slow()
    w = OutboxWorker(sessionmaker, {"rec": ch}, batch_size=20, concurrency=4)
    await w.start()
    await asyncio.sleep(0.15)  # four sends in flight, sixteen waiting
    await w.stop()
    async with sessionmaker() as s:
        by_status = dict((await s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all())
    assert len(ch.sent) == 4 and by_status == {"sent": 4, "pending": 16}
