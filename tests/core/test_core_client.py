"""backend_client against a real core on loopback (SQLite and PostgreSQL), plus transport rules:
timeouts, retries only for idempotent calls, circuit breaker, typed errors, concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiohttp import web
from sqlalchemy import func, select

from backend_client import (
    Account,
    Conflict,
    CoreClient,
    CoreError,
    CoreUnavailable,
    NotFound,
    Payment,
    ValidationFailed,
    WorkOrder,
)
from bot.db import make_engine, make_sessionmaker
from core.pricing import CN_TZ
from core import models as m
from core.app import create_core_app
from core.seed import migrate_and_seed
from loopback import serve_on_loopback


async def _count(url: str, stmt) -> int:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s:
            return int(await s.scalar(stmt))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def seeded_sqlite(sqlite_url) -> str:
    await migrate_and_seed(sqlite_url, n_accounts=30)
    return sqlite_url


@pytest.fixture
async def core_url(seeded_sqlite) -> AsyncIterator[str]:
    async with serve_on_loopback(create_core_app(seeded_sqlite)) as url:
        yield url


@pytest.fixture
async def client(core_url) -> AsyncIterator[CoreClient]:
    async with CoreClient(core_url, timeout=5) as c:
        yield c


# --- happy paths -------------------------------------------------------------------------
async def test_client_accounts_bills_payments(client: CoreClient):
    assert (await client.health()).status == "ok"
    acc = await client.get_account("3100000001")
    assert isinstance(acc, Account) and acc.holder_name == "张伟" and acc.bindings[0].channel == "wechat"
    assert [a.account_number for a in await client.find_accounts_by_phone("13800138000")] == ["3100000001", "3100000003"]
    assert (await client.find_account_by_binding("wechat", "nobody")) is None
    bound = await client.bind_account("3100000002", "wechat", "oTEST_1")
    assert any(b.identity == "oTEST_1" for b in bound.bindings)
    assert (await client.find_account_by_binding("wechat", "oTEST_1")).account_number == "3100000002"  # type: ignore[union-attr]
    unbound = await client.unbind_account("3100000002", "wechat", "oTEST_1")
    assert all(b.identity != "oTEST_1" for b in unbound.bindings)
    assert (await client.find_account_by_binding("wechat", "oTEST_1")) is None

    bills = await client.list_bills("3100000001")
    assert len(bills) == 12 and isinstance(bills[0].amount, Decimal)
    unpaid = await client.list_bills("3100000001", status="unpaid")
    # the last bill is due on the 20th of this month: overdue only once that day has passed
    today = datetime.now(CN_TZ).date()
    assert len(unpaid) == 2 and all(b.overdue == (b.due_date < today) for b in unpaid)
    assert unpaid[0].overdue or unpaid[1].overdue  # two months unpaid: the older one always is
    assert len(await client.list_bills("3100000001", month=bills[0].month)) == 1
    arrears = await client.get_arrears("3100000001")
    assert arrears.has_arrears and arrears.amount_owed == sum(b.balance for b in unpaid)
    assert not (await client.get_arrears("3100000002")).has_arrears

    p = await client.create_payment("CLI0000001", "3100000001", arrears.amount_owed, "alipay")
    assert isinstance(p, Payment) and p.status == "pending" and p.amount == arrears.amount_owed
    assert (await client.create_payment("CLI0000001", "3100000001", arrears.amount_owed, "alipay")) == p
    with pytest.raises(Conflict):
        await client.create_payment("CLI0000001", "3100000001", Decimal("1.00"), "alipay")
    paid = await client.confirm_payment("CLI0000001", "ALI2025001", arrears.amount_owed)
    assert paid.status == "paid" and paid.trade_no == "ALI2025001"
    assert (await client.confirm_payment("CLI0000001", "ALI2025001", arrears.amount_owed)).paid_at == paid.paid_at
    assert (await client.get_payment("CLI0000001")).status == "paid"
    assert [x.out_trade_no for x in await client.list_payments("3100000001")] == ["CLI0000001"]
    assert (await client.get_arrears("3100000001")).amount_owed == 0
    new_month = f"{datetime.now(CN_TZ).year + 1}-01"  # later than every month the demo seed billed
    bill = await client.issue_bill("3100000001", new_month, 300, peak_kwh=200, valley_kwh=100)
    assert bill.amount == Decimal("157.60") and bill.status == "unpaid"


async def test_client_outages_work_orders_halls_tariffs_subscriptions_events(client: CoreClient):
    start = (await client.read_events(after="latest")).next_cursor
    now = datetime.now(timezone.utc)
    active = await client.list_outages(address="浦东新区碧波路88弄", active_at=now)
    assert len(active) == 1 and active[0].kind == "unplanned"
    planned = await client.list_outages(kind="planned", starts_after=now, starts_before=now + timedelta(days=8))
    assert planned and all(o.start_at > now for o in planned)
    o = await client.create_outage("planned", "静安区", "静安区彭江路沿线", now + timedelta(days=1),
                                   estimated_end_at=now + timedelta(days=1, hours=4), cause="检修", streets=["彭江路"],
                                   idempotency_key="cli-out-1")
    assert o.status == "scheduled" and o.streets == ("彭江路",)
    assert (await client.create_outage("planned", "静安区", "静安区彭江路沿线", now + timedelta(days=1),
                                       idempotency_key="cli-out-1")).id == o.id
    o2 = await client.update_outage(o.id, status="cancelled", cause="工程取消")
    assert o2.status == "cancelled" and (await client.get_outage(o.id)).cause == "工程取消"

    wo = await client.create_work_order("repair", "电表箱冒烟", account_number="3100000001", priority="emergency",
                                        channel="wechat", contact_phone="13800138000", details={"hazard": "smoke"},
                                        idempotency_key="cli-wo-1")
    assert isinstance(wo, WorkOrder) and wo.id.startswith("WO") and len(wo.id) == 14
    assert wo.sla_due_at is not None and wo.sla_due_at - wo.created_at == timedelta(minutes=45)
    again = await client.create_work_order("repair", "电表箱冒烟", account_number="3100000001", priority="emergency",
                                           channel="wechat", contact_phone="13800138000", details={"hazard": "smoke"},
                                           idempotency_key="cli-wo-1")
    assert again.id == wo.id
    moved = await client.transition_work_order(wo.id, "dispatched", note="抢修班组已出发")
    assert moved.status == "dispatched" and moved.dispatched_at is not None
    assert (await client.transition_work_order(wo.id, "dispatched")).status == "dispatched"  # no-op replay
    with pytest.raises(Conflict):
        await client.transition_work_order(wo.id, "closed")
    assert (await client.get_work_order(wo.id)).history[-1]["note"] == "抢修班组已出发"
    assert wo.id in [w.id for w in await client.list_work_orders("3100000001")]
    assert all(w.status == "dispatched" for w in await client.list_work_orders(status="dispatched"))

    halls = await client.list_halls("徐汇区")
    assert len(halls) == 1
    slots = await client.list_slots(halls[0].id, only_available=True)
    assert slots and all(s.available > 0 for s in slots)
    day_slots = await client.list_slots(halls[0].id, date=slots[0].date)
    assert {s.period for s in day_slots} == {"morning", "afternoon"}
    appt = await client.book_appointment(slots[0].id, "3100000002", "李娜", "13900139000", "更名过户", idempotency_key="cli-ap-1")
    assert appt.status == "booked" and appt.hall_id == halls[0].id and appt.date == slots[0].date
    assert (await client.book_appointment(slots[0].id, "3100000002", "李娜", "13900139000", "更名过户",
                                          idempotency_key="cli-ap-1")).id == appt.id
    assert (await client.get_appointment(appt.id)).purpose == "更名过户"
    assert (await client.cancel_appointment(appt.id)).status == "cancelled"

    t = await client.get_tariff("residential")
    assert t.peak_price == Decimal("0.617") and t.tiers[0].to_kwh == Decimal(230)
    q = await client.quote("residential", 300)
    assert q.amount == Decimal("161.99") and len(q.lines) == 2
    assert (await client.quote("residential", peak_kwh=200, valley_kwh=100)).amount == Decimal("157.60")

    sub = await client.create_subscription("3100000001", "outage", "wechat", "oDEMO_zhangwei")
    assert (await client.create_subscription("3100000001", "outage", "wechat", "oDEMO_zhangwei")).id == sub.id
    assert [s.id for s in await client.list_subscriptions("3100000001")] == [sub.id]
    assert await client.delete_subscription("3100000001", topic="outage") == 1
    assert await client.list_subscriptions("3100000001") == []

    page = await client.read_events(after=start)
    types = [e.type for e in page.events]
    assert types == ["outage.created", "outage.updated", "work_order.status_changed", "work_order.status_changed"]
    assert page.events[1].payload["status"] == "cancelled"
    assert (await client.read_events(after=page.next_cursor)).events == ()
    only_wo = await client.read_events(after=start, types=["work_order.status_changed"])
    assert [e.payload["status"] for e in only_wo.events] == ["created", "dispatched"]


async def test_client_typed_errors(client: CoreClient):
    with pytest.raises(NotFound) as nf:
        await client.get_account("3199999999")
    assert nf.value.status == 404 and nf.value.code == "account_not_found"
    with pytest.raises(ValidationFailed) as bad:
        await client.get_account("12ab")
    assert bad.value.status == 400
    with pytest.raises(ValidationFailed) as neg:
        await client.create_payment("CLINEG0001", "3100000001", Decimal("-3"), "alipay")
    assert neg.value.errors and neg.value.errors[0]["loc"] == ["amount"]
    with pytest.raises(ValidationFailed) as too_much:
        await client.create_payment("CLIMAX0001", "3100000001", Decimal("100000"), "alipay")
    assert too_much.value.code == "amount_exceeds_owed" and "owed" in too_much.value.detail
    with pytest.raises(ValidationFailed):
        await client.create_work_order("teleport", "x", idempotency_key="k")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await client.get_work_order("WO000000000000")
    with pytest.raises(NotFound):
        await client.confirm_payment("CLINONE001", "T", Decimal("1"))
    with pytest.raises(NotFound):
        await client.get_tariff("industrial")
    assert issubclass(CoreUnavailable, CoreError) and issubclass(Conflict, CoreError)
    assert client.breaker.state == "closed"  # 4xx are answers, not outages


# --- transport behaviour against stub servers ---------------------------------------------
def _stub(status: int = 503, delay: float = 0.0) -> tuple[web.Application, dict[str, int]]:
    hits = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        hits["n"] += 1
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"title": "down", "status": status, "detail": "maintenance"}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app, hits


async def test_retries_only_idempotent_calls():
    app, hits = _stub(503)
    async with serve_on_loopback(app) as url, CoreClient(url, retries=2, backoff=0.01, breaker_threshold=100) as c:
        with pytest.raises(CoreUnavailable):
            await c.get_account("3100000001")
        assert hits["n"] == 3  # GET: 1 + 2 retries
        hits["n"] = 0
        with pytest.raises(CoreUnavailable):
            await c.create_work_order("repair", "x", idempotency_key="k1")
        assert hits["n"] == 3  # keyed POST is retried
        hits["n"] = 0
        with pytest.raises(CoreUnavailable):
            await c.create_outage("planned", "静安区", "x", datetime.now(timezone.utc))  # no key → not retried
        assert hits["n"] == 1


async def test_timeout_is_core_unavailable():
    app, hits = _stub(200, delay=1.0)
    async with serve_on_loopback(app) as url, CoreClient(url, timeout=0.2, retries=0) as c:
        started = time.monotonic()
        with pytest.raises(CoreUnavailable):
            await c.get_account("3100000001")
        assert time.monotonic() - started < 0.9 and hits["n"] == 1


async def test_connection_refused_and_circuit_breaker():
    app, hits = _stub(503)
    async with serve_on_loopback(app) as url:
        pass  # server gone: the port now refuses connections
    async with CoreClient(url, retries=0, breaker_threshold=3, breaker_cooldown=0.3) as c:
        for _ in range(3):
            with pytest.raises(CoreUnavailable, match="unreachable"):
                await c.get_account("3100000001")
        assert c.breaker.state == "open"
        started = time.monotonic()
        with pytest.raises(CoreUnavailable, match="circuit open"):
            await c.get_account("3100000001")
        assert time.monotonic() - started < 0.05  # fail fast, no connection attempt


async def test_circuit_breaker_half_open_recovers():
    app, hits = _stub(503)
    async with serve_on_loopback(app) as url, CoreClient(url, retries=0, breaker_threshold=2, breaker_cooldown=0.2) as c:
        for _ in range(2):
            with pytest.raises(CoreUnavailable):
                await c.get_account("3100000001")
        assert hits["n"] == 2 and c.breaker.state == "open"
        for _ in range(5):
            with pytest.raises(CoreUnavailable, match="circuit open"):
                await c.get_account("3100000001")
        assert hits["n"] == 2  # nothing reached the server while open
        await asyncio.sleep(0.25)
        with pytest.raises(CoreUnavailable):
            await c.get_account("3100000001")  # half-open trial fails → open again
        assert hits["n"] == 3 and c.breaker.state == "open"


async def test_breaker_closes_after_core_comes_back(seeded_sqlite):
    async with serve_on_loopback(create_core_app(seeded_sqlite)) as url:
        pass
    c = CoreClient(url, retries=0, breaker_threshold=1, breaker_cooldown=0.1)
    try:
        with pytest.raises(CoreUnavailable):
            await c.health()
        assert c.breaker.state == "open"
    finally:
        await c.close()
    # same client settings, core up on a fresh port: half-open trial succeeds and closes it
    async with serve_on_loopback(create_core_app(seeded_sqlite)) as url2:
        c2 = CoreClient(url2, retries=0, breaker_threshold=1, breaker_cooldown=0.1)
        c2.breaker.failure()
        assert c2.breaker.state == "open"
        await asyncio.sleep(0.15)
        assert (await c2.get_account("3100000002")).account_number == "3100000002"
        assert c2.breaker.state == "closed"
        await c2.close()


async def test_caller_owned_session_is_not_closed(core_url):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with CoreClient(core_url + "/api/v1", session=session) as c:
            assert (await c.get_account("3100000001")).account_number == "3100000001"
        assert not session.closed


# --- concurrency: duplicates with the same key → exactly one row (SQLite and PostgreSQL) -----
@pytest.fixture
async def live_core(store_url) -> AsyncIterator[tuple[str, str]]:
    await migrate_and_seed(store_url, n_accounts=20)
    async with serve_on_loopback(create_core_app(store_url)) as url:
        yield url, store_url


async def test_concurrent_duplicate_work_orders(live_core):
    url, db = live_core
    async with CoreClient(url, timeout=20) as c:
        results = await asyncio.gather(*[
            c.create_work_order("outage", "整栋楼停电", account_number="3100000002", contact_phone="13900139000",
                                idempotency_key="dup-wo-1")
            for _ in range(10)
        ])
    assert len({r.id for r in results}) == 1
    assert await _count(db, select(func.count()).select_from(m.WorkOrder).where(m.WorkOrder.idempotency_key == "dup-wo-1")) == 1
    assert await _count(db, select(func.count()).select_from(m.Event).where(m.Event.type == "work_order.status_changed")) == 1


async def test_concurrent_duplicate_payments_and_confirms(live_core):
    url, db = live_core
    async with CoreClient(url, timeout=20) as c:
        owed = (await c.get_arrears("3100000001")).amount_owed
        created = await asyncio.gather(*[c.create_payment("DUPPAY0001", "3100000001", owed, "alipay") for _ in range(10)])
        assert len({p.out_trade_no for p in created}) == 1
        confirmed = await asyncio.gather(*[c.confirm_payment("DUPPAY0001", "ALIDUP1", owed) for _ in range(10)])
        assert {p.status for p in confirmed} == {"paid"} and len({p.paid_at for p in confirmed}) == 1
        assert (await c.get_arrears("3100000001")).amount_owed == 0
        bills = await c.list_bills("3100000001")
        assert all(b.paid_amount == b.amount for b in bills)  # settled exactly once, never twice
    assert await _count(db, select(func.count()).select_from(m.Payment).where(m.Payment.out_trade_no == "DUPPAY0001")) == 1
    assert await _count(db, select(func.count()).select_from(m.Event).where(m.Event.type == "payment.confirmed")) == 1


async def test_concurrent_bookings_respect_capacity(live_core):
    url, db = live_core
    async with CoreClient(url, timeout=20) as c:
        hall = (await c.list_halls())[0]
        slot = (await c.list_slots(hall.id, only_available=True))[3]
        tries = slot.available + 5
        results = await asyncio.gather(
            *[c.book_appointment(slot.id, None, f"客户{i}", "13900139000", "咨询", idempotency_key=f"cap-{i}") for i in range(tries)],
            *[c.book_appointment(slot.id, None, "客户0", "13900139000", "咨询", idempotency_key="cap-0") for _ in range(3)],
            return_exceptions=True,
        )
        ok = {r.id for r in results if not isinstance(r, BaseException)}
        full = [r for r in results if isinstance(r, Conflict)]
        others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, Conflict)]
        assert not others, others
        assert len(ok) == slot.available and len(full) >= 5
        after = [s for s in await c.list_slots(hall.id, date=slot.date) if s.id == slot.id][0]
        assert after.available == 0 and after.booked == after.capacity
    assert await _count(db, select(func.count()).select_from(m.Appointment).where(m.Appointment.slot_id == slot.id)) == slot.available


async def test_event_feed_has_no_gaps_under_concurrent_writers(live_core):
    url, _db = live_core
    async with CoreClient(url, timeout=20) as c:
        cursor = (await c.read_events(after="latest")).next_cursor
        seen: list[int] = []

        async def reader() -> None:
            nonlocal cursor
            for _ in range(40):
                page = await c.read_events(after=cursor)
                seen.extend(e.id for e in page.events)
                cursor = page.next_cursor
                await asyncio.sleep(0.005)

        writers = [c.create_work_order("feedback", f"建议{i}", idempotency_key=f"gap-{i}") for i in range(20)]
        await asyncio.gather(reader(), *writers)
        page = await c.read_events(after=cursor)
        seen.extend(e.id for e in page.events)
        assert len(seen) == len(set(seen)) == 20
        assert seen == sorted(seen)


async def test_slot_dates_are_dates(client: CoreClient):
    slots = await client.list_slots((await client.list_halls())[0].id)
    assert isinstance(slots[0].date, date) and slots[0].date >= date.today() - timedelta(days=1)
