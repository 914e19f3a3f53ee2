"""A gateway dies in the middle of a notice batch; a new one on the same store finishes it.

The local SMS provider accepts the first notices, then holds the next requests open without
accepting them (they are in flight when the gateway goes down). The SMS channel delivers through
the provider's batch endpoint, several batch requests in flight at once. The gateway is stopped with
those sends in flight; a second gateway on the same database picks up the orphaned rows after
the sending lease and every subscriber ends up with exactly one notice. Run on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from backend_client import CoreClient
from bot.models import OutboxMessage
from stack import run_gateway, wait_until
from notify_support import accounts_by_district, e164, gateway_settings, run_relay, run_sms_provider

pytestmark = pytest.mark.asyncio(loop_scope="module")

N = 40
ACCEPT_BEFORE_CRASH = 12


async def statuses(gw) -> Counter:  # type: ignore[no-untyped-def]
    from bot.app import SESSIONMAKER

    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
    return Counter({k: v for k, v in rows})


async def crash_and_restart(core, bot_db: str, district: str, interpreter) -> None:  # type: ignore[no-untyped-def]
    subs = accounts_by_district(core.db_url)[district][:N]
    assert len(subs) == N
    async with CoreClient(core.url) as cc:
        for acc, phone in subs:
            await cc.create_subscription(acc, "outage", "sms", phone)
        async with run_sms_provider() as prov, run_relay() as (_relay, rport):
            prov.hang_after = ACCEPT_BEFORE_CRASH
            settings = gateway_settings(
                prov, rport, outbox_batch_size=10, outbox_concurrency=4, outbox_sending_lease_seconds=1.0,
                outbox_pipelines=2,  # two claim loops: several batch requests in flight at the crash
            )
            async with run_gateway(bot_db, core.url, interpreter, **settings) as gw:
                start = datetime.now(timezone.utc) + timedelta(days=2)
                await cc.create_outage("planned", district, f"{district}全域", start,
                                       estimated_end_at=start + timedelta(hours=6), cause="主变检修")
                await wait_until(lambda: prov.hanging >= 1, timeout=20)
                await asyncio.sleep(0.3)  # whatever else was claimed is in flight too
            # The gateway is gone with sends in flight.
            crashed = await _statuses_after(bot_db)
            accepted = len([m for m in prov.messages if m["part"] == 1])
            # batch requests are accepted whole or hang whole: up to ACCEPT_BEFORE_CRASH went out
            assert 1 <= accepted <= ACCEPT_BEFORE_CRASH and prov.batch_calls >= 2, (accepted, prov.batch_calls)
            assert crashed["sent"] == accepted, crashed
            assert crashed["sending"] >= 1 and sum(crashed.values()) == N, crashed
            prov.release()

            async with run_gateway(bot_db, core.url, interpreter, **settings) as gw2:
                await wait_until(lambda: len([m for m in prov.messages if m["part"] == 1]) >= N, timeout=30)
                await asyncio.sleep(1.5)  # a second lease period: nothing may be sent twice
                final = await statuses(gw2)
            per_phone = Counter(m["to"] for m in prov.messages if m["part"] == 1)
            assert sorted(per_phone) == sorted(e164(p) for _, p in subs)
            assert set(per_phone.values()) == {1}
            parts = Counter((m["to"], m["part"]) for m in prov.messages)
            assert set(parts.values()) == {1}  # no segment of any notice went out twice
            assert final == Counter({"sent": N}), final


async def _statuses_after(bot_db: str) -> Counter:
    from bot.db import make_engine, make_sessionmaker

    engine = make_engine(bot_db)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = (await s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all()
        return Counter({k: v for k, v in rows})
    finally:
        await engine.dispose()


async def test_crash_mid_batch_then_restart_sends_each_notice_once_sqlite(core, sqlite_url, interpreter):  # type: ignore[no-untyped-def]
    await crash_and_restart(core, sqlite_url, "浦东新区", interpreter)


async def test_crash_mid_batch_then_restart_sends_each_notice_once_postgres(core, postgres_url, interpreter):  # type: ignore[no-untyped-def]
    await crash_and_restart(core, postgres_url, "徐汇区", interpreter)


async def test_two_producers_on_postgres_share_the_feed_without_duplicates(core, postgres_url):  # type: ignore[no-untyped-def]
    """Two gateway processes' producers read the same feed: each notice is queued once."""
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade
    from bot.notify.producer import Producer
    from bot.settings import Settings

    await upgrade(postgres_url, BOT_MIGRATIONS)
    subs = accounts_by_district(core.db_url)["闵行区"][:25]
    engine = make_engine(postgres_url)
    sm = make_sessionmaker(engine)
    settings = Settings(database_url=postgres_url, core_url=core.url)
    try:
        async with CoreClient(core.url) as cc:
            for acc, phone in subs:
                await cc.create_subscription(acc, "outage", "sms", phone)
            p1, p2 = (Producer(sm, cc, settings, ["sms"]) for _ in range(2))
            await asyncio.gather(p1.init_cursor(), p2.init_cursor())
            start = datetime.now(timezone.utc) + timedelta(days=2)
            for cause in ("主变检修", "线路改造", "设备更换"):
                await cc.create_outage("planned", "闵行区", "闵行区部分区域", start, estimated_end_at=start + timedelta(hours=2), cause=cause)
            await asyncio.gather(p1.drain(), p2.drain())
            async with sm() as s:
                n = await s.scalar(select(func.count()).select_from(OutboxMessage))
            assert n == 3 * len(subs)
            assert p1.enqueued_total + p2.enqueued_total == n  # no pass was done twice
    finally:
        await engine.dispose()
