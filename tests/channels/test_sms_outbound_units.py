"""The SMS send path's in-process parts, on both stores: the opt-out cache, the group-committed
segment records and the bounded per-number rate limiter."""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import datetime, timezone

import pytest
import pytest_asyncio
import time_machine
from sqlalchemy import delete, func, select

from bot.db import make_engine, make_sessionmaker
from bot.migrate import BOT_MIGRATIONS, upgrade
from channels.sms import OptOutCache, PartWriter
from common.ratelimit import Limiter
from channels.sms_store import SmsOptOut, SmsPart


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:  # type: ignore[no-untyped-def]
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest_asyncio.fixture
async def sm(db_url: str):  # type: ignore[no-untyped-def]
    url = db_url
    await upgrade(url, BOT_MIGRATIONS)
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _add_opt_out(sm, phone: str) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        s.add(SmsOptOut(phone=phone, keyword="TD", message_id=None))


async def test_opt_out_cache_serves_from_one_snapshot_and_sees_other_replicas_after_ttl(sm) -> None:  # type: ignore[no-untyped-def]
    await _add_opt_out(sm, "+8613900000001")
    cache = OptOutCache(ttl=0.3)
    assert await cache.contains(sm, "+8613900000001")
    assert not await cache.contains(sm, "+8613900000002")
    # another replica records a STOP: seen once the snapshot is older than the TTL
    await _add_opt_out(sm, "+8613900000002")
    assert not await cache.contains(sm, "+8613900000002")
    await asyncio.sleep(0.35)
    assert await cache.contains(sm, "+8613900000002")
    # ... and a START elsewhere the same way
    async with sm() as s, s.begin():
        await s.execute(delete(SmsOptOut).where(SmsOptOut.phone == "+8613900000001"))
    await asyncio.sleep(0.35)
    assert not await cache.contains(sm, "+8613900000001")


async def test_opt_out_recorded_here_applies_at_once_and_survives_an_older_snapshot(sm) -> None:  # type: ignore[no-untyped-def]
    cache = OptOutCache(ttl=60)
    phone = "+8613900000003"
    assert not await cache.contains(sm, phone)  # snapshot taken without it
    await _add_opt_out(sm, phone)
    cache.record(phone, True)
    assert await cache.contains(sm, phone)  # long before the TTL
    cache.invalidate()
    assert await cache.contains(sm, phone)  # a fresh snapshot has it too
    async with sm() as s, s.begin():
        await s.execute(delete(SmsOptOut).where(SmsOptOut.phone == phone))
    cache.record(phone, False)
    assert not await cache.contains(sm, phone)


async def test_opt_out_cache_concurrent_callers_share_one_refresh_and_large_tables_go_to_the_db(sm) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        await _add_opt_out(sm, f"+86139000001{i:02d}")
    cache = OptOutCache(ttl=60, max_rows=3)  # table bigger than the cap: no snapshot
    got = await asyncio.gather(*(cache.contains(sm, f"+86139000001{i:02d}") for i in range(10)))
    assert got == [True] * 5 + [False] * 5
    assert cache._snapshot is None and cache._too_big
    cache = OptOutCache(ttl=60)
    loads = 0
    real = cache._load

    async def counted(sm_):  # type: ignore[no-untyped-def]
        nonlocal loads
        loads += 1
        await real(sm_)

    cache._load = counted  # type: ignore[method-assign]
    got = await asyncio.gather(*(cache.contains(sm, f"+86139000001{i:02d}") for i in range(10)))
    assert got == [True] * 5 + [False] * 5 and loads == 1


def _rows(batch: str, n: int) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [{"provider_id": f"{batch}-p{i}", "batch_ref": batch, "part": i, "parts": n, "status": "sent",
             "error": None, "created_at": now, "updated_at": now} for i in range(1, n + 1)]


async def test_segment_records_are_stored_when_add_returns_in_few_transactions(sm) -> None:  # type: ignore[no-untyped-def]
    writer = PartWriter()
    writes = 0
    real = writer._write

    async def counted(rows):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        await real(rows)

    writer._write = counted  # type: ignore[method-assign]

    async def one(i: int) -> int:
        await writer.add(sm, _rows(f"b{i}", 2))
        async with sm() as s:  # committed by the time add() returns
            return await s.scalar(select(func.count()).select_from(SmsPart).where(SmsPart.batch_ref == f"b{i}"))

    counts = await asyncio.gather(*(one(i) for i in range(300)))
    assert counts == [2] * 300
    assert writes <= 3, writes
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(SmsPart)) == 600


async def test_a_report_for_a_segment_being_written_waits_for_it(sm) -> None:  # type: ignore[no-untyped-def]
    writer = PartWriter()
    send = asyncio.ensure_future(writer.add(sm, _rows("race", 1)))
    await asyncio.sleep(0)
    assert await writer.wait_for("race-p1")
    async with sm() as s:
        assert (await s.get(SmsPart, "race-p1")) is not None
    assert not await writer.wait_for("race-p1")  # stored: nothing to wait for any more
    assert not await writer.wait_for("never-sent")
    await send


async def test_a_reused_provider_id_does_not_lose_the_other_segments(sm) -> None:  # type: ignore[no-untyped-def]
    writer = PartWriter()
    await writer.add(sm, _rows("dup", 1))
    rows = _rows("dup", 1) + _rows("fresh", 2)
    await writer.add(sm, rows)
    async with sm() as s:
        assert await s.scalar(select(func.count()).select_from(SmsPart)) == 3


async def test_rate_limiter_is_per_number_and_forgets_after_the_window() -> None:
    """The SMS per-number limits are the gateway's one limiter (common.ratelimit, on ``limits``)."""
    start = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.timezone.utc)
    with time_machine.travel(start, tick=False) as clock:
        w = Limiter()
        assert [await w.hit("x", 2) for _ in range(3)] == [True, True, False]
        assert await w.hit("y", 2)  # another number
        clock.shift(121)  # quiet for two minutes: allowed again
        assert await w.hit("x", 2)


async def test_rate_limiter_unlimited() -> None:
    w = Limiter()
    assert all([await w.hit("n", 0) for _ in range(100)])
