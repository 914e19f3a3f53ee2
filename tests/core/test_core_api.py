"""Core HTTP API: happy paths and invalid inputs, on a migrated + seeded SQLite store."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from bot.db import make_engine, make_sessionmaker
from core import models as m
from core.app import create_core_app
from core.pricing import CN_TZ
from core.seed import FIXED_ACCOUNTS, migrate_and_seed

SMALL = 40
API = "/api/v1"


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("core_tpl") / "core.db"
    asyncio.run(migrate_and_seed(f"sqlite+aiosqlite:///{path}", n_accounts=SMALL))
    return path


@pytest.fixture
def core_db_url(seeded_template: Path, tmp_path: Path) -> str:
    dst = tmp_path / "core.db"
    shutil.copy(seeded_template, dst)
    return f"sqlite+aiosqlite:///{dst}"


@pytest.fixture
async def api(aiohttp_client, core_db_url):
    return await aiohttp_client(create_core_app(core_db_url))


async def _events(api, after=None, types=None):
    params = {"limit": "1000"}
    if after:
        params["after"] = after
    if types:
        params["type"] = types
    r = await api.get(API + "/events", params=params)
    assert r.status == 200
    return await r.json()


def _unbilled_month(month: int) -> str:
    """``month`` of next year: later than every month the demo seed billed (the 12 before today)."""
    return f"{datetime.now(CN_TZ).year + 1}-{month:02d}"


def _is_problem(r, status: int) -> None:
    assert r.status == status, r.status
    assert r.content_type == "application/problem+json"


# --- ops -----------------------------------------------------------------------------------
async def test_healthz_and_openapi(api):
    r = await api.get("/healthz")
    assert r.status == 200 and (await r.json()) == {"status": "ok", "database": "ok"}
    r = await api.get(API + "/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    for path in ("/api/v1/payments", "/api/v1/work-orders/{work_order_id}/transitions", "/api/v1/events", "/api/v1/outages"):
        assert path in doc["paths"]
    # every $ref resolves inside the document
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', await r.text()))
    assert refs and refs <= set(doc["components"]["schemas"])
    assert "Idempotency-Key" in [p["name"] for p in doc["paths"]["/api/v1/work-orders"]["post"]["parameters"]]


async def test_unknown_route_and_method_are_problems(api):
    _is_problem(await api.get(API + "/nope"), 404)
    _is_problem(await api.patch(API + "/payments"), 405)


# --- accounts ------------------------------------------------------------------------------
async def test_get_account_and_invalid_numbers(api):
    r = await api.get(API + "/accounts/3100000001")
    a = await r.json()
    assert r.status == 200
    assert (a["holder_name"], a["phone"], a["district"]) == ("张伟", "13800138000", "浦东新区")
    assert {"channel": "wechat", "identity": "oDEMO_zhangwei"}.items() <= a["bindings"][0].items()
    r = await api.get(API + "/accounts/31abc")
    _is_problem(r, 400)
    body = await r.json()
    assert body["status"] == 400 and "10–13 digits" in body["detail"] and body["type"].startswith("urn:")
    _is_problem(await api.get(API + "/accounts/123456789"), 400)  # 9 digits
    r = await api.get(API + "/accounts/3199999999")
    _is_problem(r, 404)
    assert (await r.json())["code"] == "account_not_found"


async def test_find_accounts_by_phone_and_binding(api):
    r = await api.get(API + "/accounts", params={"phone": "13800138000"})
    numbers = [a["account_number"] for a in (await r.json())["accounts"]]
    assert numbers == ["3100000001", "3100000003"]
    r = await api.get(API + "/accounts", params={"binding_channel": "alipay", "binding_identity": "2088000000000002"})
    assert [a["account_number"] for a in (await r.json())["accounts"]] == ["3100000002"]
    r = await api.get(API + "/accounts", params={"phone": "13000000000"})
    assert (await r.json())["accounts"] == []
    _is_problem(await api.get(API + "/accounts"), 400)
    _is_problem(await api.get(API + "/accounts", params={"phone": "abc"}), 400)


async def test_bind_and_unbind_are_idempotent(api):
    body = {"channel": "sms", "identity": "13900139000"}
    for _ in range(2):
        r = await api.put(API + "/accounts/3100000002/bindings", json=body)
        assert r.status == 200
    assert [b for b in (await r.json())["bindings"] if b["channel"] == "sms"].__len__() == 1
    r = await api.get(API + "/accounts", params={"binding_channel": "sms", "binding_identity": "13900139000"})
    assert [a["account_number"] for a in (await r.json())["accounts"]] == ["3100000002"]
    for _ in range(2):
        r = await api.delete(API + "/accounts/3100000002/bindings", json=body)
        assert r.status == 200
    assert all(b["channel"] != "sms" for b in (await r.json())["bindings"])
    _is_problem(await api.put(API + "/accounts/3100000002/bindings", json={"channel": "SMS!", "identity": "x"}), 422)
    _is_problem(await api.put(API + "/accounts/3199999999/bindings", json=body), 404)


# --- bills ---------------------------------------------------------------------------------
async def test_bills_and_arrears(api):
    r = await api.get(API + "/accounts/3100000001/bills")
    bills = (await r.json())["bills"]
    assert len(bills) == 12
    assert bills[0]["month"] > bills[-1]["month"]  # newest first
    unpaid = (await (await api.get(API + "/accounts/3100000001/bills", params={"status": "unpaid"})).json())["bills"]
    assert len(unpaid) == 2 and all(b["status"] == "unpaid" and Decimal(b["balance"]) > 0 for b in unpaid)
    one = (await (await api.get(API + "/accounts/3100000001/bills", params={"month": bills[3]["month"]})).json())["bills"]
    assert [b["id"] for b in one] == [bills[3]["id"]]
    arrears = await (await api.get(API + "/accounts/3100000001/arrears")).json()
    assert Decimal(arrears["amount_owed"]) == sum(Decimal(b["amount"]) for b in unpaid) > 0
    assert len(arrears["unpaid_bills"]) == 2
    clean = await (await api.get(API + "/accounts/3100000002/arrears")).json()
    assert clean["amount_owed"] == "0.00" and clean["unpaid_bills"] == []
    _is_problem(await api.get(API + "/accounts/3100000001/bills", params={"month": "2024-13"}), 400)
    _is_problem(await api.get(API + "/accounts/3100000001/bills", params={"status": "lost"}), 400)
    _is_problem(await api.get(API + "/accounts/3199999999/arrears"), 404)


async def test_bill_amounts_follow_the_tariff(api):
    bills = (await (await api.get(API + "/accounts/3100000002/bills")).json())["bills"]
    for b in bills[:3]:
        q = await (await api.get(API + "/tariffs/residential/quote", params={"peak_kwh": b["peak_kwh"], "valley_kwh": b["valley_kwh"]})).json()
        assert q["amount"] == b["amount"]


async def test_issue_bill_is_idempotent_and_emits_event(api):
    cursor = (await _events(api))["next_cursor"]
    body = {"month": _unbilled_month(1), "peak_kwh": "200", "valley_kwh": "100"}
    r = await api.post(API + "/accounts/3100000002/bills", json=body)
    assert r.status == 201
    bill = await r.json()
    assert bill["amount"] == "157.60"  # 200*0.617 + 100*0.307 + 70*0.05
    r = await api.post(API + "/accounts/3100000002/bills", json=body)
    assert r.status == 200 and (await r.json())["id"] == bill["id"]
    _is_problem(await api.post(API + "/accounts/3100000002/bills", json={**body, "peak_kwh": "201"}), 409)
    _is_problem(await api.post(API + "/accounts/3100000002/bills", json={"month": _unbilled_month(2)}), 422)
    ev = (await _events(api, cursor, "bill.issued"))["events"]
    assert [e["payload"]["bill_id"] for e in ev] == [bill["id"]]


# --- payments ------------------------------------------------------------------------------
async def test_payment_lifecycle(api):
    arrears = await (await api.get(API + "/accounts/3100000001/arrears")).json()
    owed = arrears["amount_owed"]
    body = {"out_trade_no": "PB20250001", "account_number": "3100000001", "amount": owed, "channel": "alipay"}
    r = await api.post(API + "/payments", json=body)
    assert r.status == 201
    p = await r.json()
    assert p["status"] == "pending" and p["amount"] == owed
    r = await api.post(API + "/payments", json=body)  # replay
    assert r.status == 200 and (await r.json())["out_trade_no"] == "PB20250001"
    r = await api.post(API + "/payments", json={**body, "amount": "1.00"})
    _is_problem(r, 409)
    assert (await r.json())["code"] == "idempotency_conflict"
    assert (await (await api.get(API + "/payments/PB20250001")).json())["status"] == "pending"

    cursor = (await _events(api))["next_cursor"]
    _is_problem(await api.post(API + "/payments/PB20250001/confirm", json={"trade_no": "2025ALI1", "total_amount": "0.01"}), 409)
    r = await api.post(API + "/payments/PB20250001/confirm", json={"trade_no": "2025ALI1", "total_amount": owed})
    assert r.status == 200
    paid = await r.json()
    assert paid["status"] == "paid" and paid["trade_no"] == "2025ALI1" and paid["paid_at"]
    r = await api.post(API + "/payments/PB20250001/confirm", json={"trade_no": "2025ALI1", "total_amount": owed})
    assert r.status == 200 and (await r.json())["paid_at"] == paid["paid_at"]
    _is_problem(await api.post(API + "/payments/PB20250001/confirm", json={"trade_no": "OTHER", "total_amount": owed}), 409)
    after = await (await api.get(API + "/accounts/3100000001/arrears")).json()
    assert after["amount_owed"] == "0.00"
    bills = (await (await api.get(API + "/accounts/3100000001/bills")).json())["bills"]
    assert all(b["status"] == "paid" for b in bills)
    ev = (await _events(api, cursor))["events"]
    assert [e["type"] for e in ev] == ["payment.confirmed"]
    assert ev[0]["payload"]["out_trade_no"] == "PB20250001"
    payments = (await (await api.get(API + "/accounts/3100000001/payments")).json())["payments"]
    assert [x["out_trade_no"] for x in payments] == ["PB20250001"]


async def test_partial_payment_settles_oldest_bill_first(api):
    unpaid = (await (await api.get(API + "/accounts/3100000001/bills", params={"status": "unpaid"})).json())["bills"]
    oldest = min(unpaid, key=lambda b: b["month"])
    body = {"out_trade_no": "PBPART0001", "account_number": "3100000001", "amount": "10.00", "channel": "wechat", "status": "paid"}
    r = await api.post(API + "/payments", json=body)
    assert r.status == 201 and (await r.json())["status"] == "paid"
    bill = (await (await api.get(API + "/accounts/3100000001/bills", params={"month": oldest["month"]})).json())["bills"][0]
    assert bill["status"] == "partial" and bill["paid_amount"] == "10.00"
    assert Decimal(bill["balance"]) == Decimal(oldest["amount"]) - 10


@pytest.mark.parametrize(
    ("patch", "status", "code"),
    [
        ({"amount": "-5"}, 422, "validation_failed"),
        ({"amount": "0"}, 422, "validation_failed"),
        ({"amount": "1.001"}, 422, "validation_failed"),
        ({"amount": "abc"}, 422, "validation_failed"),
        ({"amount": "99999.00"}, 422, "amount_exceeds_owed"),
        ({"account_number": "12345"}, 422, "validation_failed"),
        ({"account_number": "3199999999"}, 422, "unknown_account"),
        ({"account_number": "3100000002"}, 422, "nothing_owed"),
        ({"out_trade_no": "a b"}, 422, "validation_failed"),
        ({"status": "refunded"}, 422, "validation_failed"),
        ({"extra": 1}, 422, "validation_failed"),
    ],
)
async def test_payment_invalid_inputs(api, patch, status, code):
    body = {"out_trade_no": "PBBAD00001", "account_number": "3100000001", "amount": "1.00", "channel": "alipay", **patch}
    r = await api.post(API + "/payments", json=body)
    _is_problem(r, status)
    problem = await r.json()
    assert problem["code"] == code and problem["detail"]
    _is_problem(await api.get(API + "/payments/PBBAD00001"), 404)


async def test_malformed_bodies(api):
    r = await api.post(API + "/payments", data="{not json", headers={"Content-Type": "application/json"})
    _is_problem(r, 400)
    _is_problem(await api.post(API + "/payments", data="a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    _is_problem(await api.post(API + "/payments", json=[1, 2]), 422)
    _is_problem(await api.post(API + "/payments"), 400)
    _is_problem(await api.post(API + "/payments/NOPE000001/confirm", json={"trade_no": "x", "total_amount": "1"}), 404)


# --- outages -------------------------------------------------------------------------------
async def test_outage_queries(api):
    now = datetime.now(timezone.utc)
    r = await api.get(API + "/outages", params={"address": "浦东新区张江镇碧波路88弄5号", "active_at": now.isoformat()})
    found = (await r.json())["outages"]
    assert len(found) == 1 and found[0]["kind"] == "unplanned" and "碧波路" in found[0]["streets"]
    planned = (await (await api.get(API + "/outages", params={"kind": "planned", "starts_after": now.isoformat(),
                                                               "starts_before": (now + timedelta(days=8)).isoformat()})).json())["outages"]
    assert len(planned) >= 5 and all(o["status"] == "scheduled" for o in planned)
    xuhui = (await (await api.get(API + "/outages", params={"district": "徐汇区"})).json())["outages"]
    assert xuhui and all(o["district"] == "徐汇区" for o in xuhui)
    # an address in another district never matches a street of the same name elsewhere
    assert (await (await api.get(API + "/outages", params={"address": "黄浦区碧波路1号"})).json())["outages"] == []
    # a city prefix or no district at all still matches by street
    for addr in ("上海市浦东新区碧波路88弄", "碧波路88弄5号"):
        r = await api.get(API + "/outages", params={"address": addr, "active_at": now.isoformat()})
        assert [o["id"] for o in (await r.json())["outages"]] == [found[0]["id"]]
    _is_problem(await api.get(API + "/outages", params={"active_at": "tomorrow"}), 400)
    _is_problem(await api.get(API + "/outages", params={"active_at": "2025-01-01T08:00:00"}), 400)
    _is_problem(await api.get(API + "/outages", params={"kind": "sometimes"}), 400)


async def test_outage_create_update_and_events(api):
    cursor = (await _events(api))["next_cursor"]
    start = datetime.now(timezone.utc) + timedelta(days=2)
    body = {"kind": "planned", "district": "闵行区", "scope": "闵行区古美路沿线", "streets": ["古美路"],
            "start_at": start.isoformat(), "estimated_end_at": (start + timedelta(hours=4)).isoformat(), "cause": "线路检修"}
    r = await api.post(API + "/outages", json=body, headers={"Idempotency-Key": "out-1"})
    assert r.status == 201
    o = await r.json()
    assert o["status"] == "scheduled"
    r = await api.post(API + "/outages", json=body, headers={"Idempotency-Key": "out-1"})
    assert r.status == 200 and (await r.json())["id"] == o["id"]
    r = await api.patch(API + f"/outages/{o['id']}", json={"status": "active"})
    assert (await r.json())["status"] == "active"
    r = await api.patch(API + f"/outages/{o['id']}", json={"status": "restored"})
    restored = await r.json()
    assert restored["status"] == "restored" and restored["actual_end_at"]
    r = await api.patch(API + f"/outages/{o['id']}", json={"status": "active"})
    _is_problem(r, 409)
    _is_problem(await api.patch(API + f"/outages/{o['id']}", json={}), 422)
    _is_problem(await api.patch(API + "/outages/999999", json={"status": "active"}), 404)
    _is_problem(await api.patch(API + "/outages/abc", json={"status": "active"}), 400)
    _is_problem(await api.post(API + "/outages", json={**body, "estimated_end_at": body["start_at"]}), 422)
    _is_problem(await api.post(API + "/outages", json={**body, "start_at": "2025-01-01T08:00:00"}), 422)
    ev = (await _events(api, cursor))["events"]
    assert [e["type"] for e in ev] == ["outage.created", "outage.updated", "outage.updated"]
    assert ev[2]["payload"]["status"] == "restored" and "status" in ev[2]["payload"]["changed"]


# --- work orders ---------------------------------------------------------------------------
async def test_work_order_lifecycle(api):
    cursor = (await _events(api))["next_cursor"]
    body = {"type": "repair", "description": "电表箱冒烟", "account_number": "3100000001", "priority": "emergency",
            "channel": "wechat", "contact_phone": "13800138000", "address": "浦东新区碧波路88弄5号", "details": {"hazard": True}}
    r = await api.post(API + "/work-orders", json=body, headers={"Idempotency-Key": "wo-key-1"})
    assert r.status == 201
    wo = await r.json()
    assert re.fullmatch(r"WO\d{12}", wo["id"]) and wo["status"] == "created"
    created = datetime.fromisoformat(wo["created_at"])
    assert datetime.fromisoformat(wo["sla_due_at"]) - created == timedelta(minutes=45)  # city repair commitment
    r = await api.post(API + "/work-orders", json=body, headers={"Idempotency-Key": "wo-key-1"})
    assert r.status == 200 and (await r.json())["id"] == wo["id"]
    r = await api.post(API + "/work-orders", json={**body, "description": "另一件事"}, headers={"Idempotency-Key": "wo-key-1"})
    _is_problem(r, 409)

    _is_problem(await api.post(API + f"/work-orders/{wo['id']}/transitions", json={"status": "resolved"}), 409)
    for st in ("dispatched", "in_progress", "resolved", "closed"):
        r = await api.post(API + f"/work-orders/{wo['id']}/transitions", json={"status": st, "note": f"to {st}"})
        assert r.status == 200, await r.text()
        got = await r.json()
        assert got["status"] == st and got[f"{st}_at"]
    r = await api.post(API + f"/work-orders/{wo['id']}/transitions", json={"status": "closed"})  # no-op
    assert r.status == 200
    _is_problem(await api.post(API + f"/work-orders/{wo['id']}/transitions", json={"status": "dispatched"}), 409)
    final = await (await api.get(API + f"/work-orders/{wo['id']}")).json()
    assert [h["status"] for h in final["history"]] == ["created", "dispatched", "in_progress", "resolved", "closed"]
    assert final["created_at"] <= final["dispatched_at"] <= final["in_progress_at"] <= final["resolved_at"] <= final["closed_at"]
    ev = (await _events(api, cursor, "work_order.status_changed"))["events"]
    assert [(e["payload"]["from_status"], e["payload"]["status"]) for e in ev] == [
        (None, "created"), ("created", "dispatched"), ("dispatched", "in_progress"), ("in_progress", "resolved"), ("resolved", "closed")
    ]
    listed = (await (await api.get(API + "/work-orders", params={"account_number": "3100000001", "status": "closed"})).json())["work_orders"]
    assert wo["id"] in [w["id"] for w in listed]


async def test_work_order_complaint_sla_and_anonymous_violation(api):
    # filed the day before National Day (clock pinned): contact within 1 working day is after the holiday week
    with time_machine.travel(datetime(2026, 9, 30, 10, 0, tzinfo=CN_TZ), tick=False):
        r = await api.post(API + "/work-orders", json={"type": "complaint", "description": "态度差",
                                                       "account_number": "3100000002", "idempotency_key": "wo-complaint-1"})
    wo = await r.json()
    created, due = datetime.fromisoformat(wo["created_at"]), datetime.fromisoformat(wo["sla_due_at"])
    assert created == datetime(2026, 9, 30, 10, 0, tzinfo=CN_TZ)
    assert due == datetime(2026, 10, 8, 10, 0, tzinfo=CN_TZ)
    r = await api.post(API + "/work-orders", json={"type": "violation", "description": "有人私拉电线", "address": "宝山区友谊路1号"},
                       headers={"Idempotency-Key": "wo-anon-1"})
    assert r.status == 201 and (await r.json())["account_number"] is None


@pytest.mark.parametrize(
    "patch",
    [{"type": "teleport"}, {"priority": "urgent"}, {"description": ""}, {"account_number": "12"}, {"contact_phone": "12345"},
     {"details": "x"}],
)
async def test_work_order_invalid_inputs(api, patch):
    body = {"type": "repair", "description": "x", **patch}
    _is_problem(await api.post(API + "/work-orders", json=body, headers={"Idempotency-Key": "k"}), 422)


async def test_work_order_unknown_ids(api):
    _is_problem(await api.get(API + "/work-orders/WO000000000000"), 404)
    _is_problem(await api.get(API + "/work-orders/12"), 400)
    r = await api.post(API + "/work-orders", json={"type": "repair", "description": "x", "account_number": "3199999999"},
                       headers={"Idempotency-Key": "k2"})
    _is_problem(r, 422)
    assert (await r.json())["code"] == "unknown_account"
    _is_problem(await api.post(API + "/work-orders/WO000000000000/transitions", json={"status": "dispatched"}), 404)
    _is_problem(await api.post(API + "/work-orders", json={"type": "repair", "description": "x", "idempotency_key": "a"},
                               headers={"Idempotency-Key": "b"}), 422)


# --- halls & appointments ------------------------------------------------------------------
async def test_halls_slots_and_capacity(api):
    halls = (await (await api.get(API + "/halls")).json())["halls"]
    assert 3 <= len(halls) <= 5
    pd = (await (await api.get(API + "/halls", params={"district": "浦东新区"})).json())["halls"]
    assert len(pd) == 1
    slots = (await (await api.get(API + f"/halls/{pd[0]['id']}/slots")).json())["slots"]
    assert len(slots) == 28 and {s["period"] for s in slots} == {"morning", "afternoon"}
    slot = slots[2]
    day = (await (await api.get(API + f"/halls/{pd[0]['id']}/slots", params={"date": slot["date"]})).json())["slots"]
    assert len(day) == 2
    booked = []
    for i in range(slot["available"]):
        r = await api.post(API + "/appointments", headers={"Idempotency-Key": f"appt-{i}"},
                           json={"slot_id": slot["id"], "contact_name": "张伟", "contact_phone": "13800138000", "purpose": "过户"})
        assert r.status == 201, await r.text()
        booked.append(await r.json())
    r = await api.post(API + "/appointments", headers={"Idempotency-Key": "appt-0"},
                       json={"slot_id": slot["id"], "contact_name": "张伟", "contact_phone": "13800138000", "purpose": "过户"})
    assert r.status == 200 and (await r.json())["id"] == booked[0]["id"]
    r = await api.post(API + "/appointments", headers={"Idempotency-Key": "appt-full"},
                       json={"slot_id": slot["id"], "contact_name": "李娜", "contact_phone": "13900139000", "purpose": "开票"})
    _is_problem(r, 409)
    assert (await r.json())["code"] == "slot_full"
    r = await api.delete(API + f"/appointments/{booked[0]['id']}")
    assert (await r.json())["status"] == "cancelled"
    r = await api.delete(API + f"/appointments/{booked[0]['id']}")  # idempotent
    assert r.status == 200
    r = await api.post(API + "/appointments", headers={"Idempotency-Key": "appt-full"},
                       json={"slot_id": slot["id"], "contact_name": "李娜", "contact_phone": "13900139000", "purpose": "开票"})
    assert r.status == 201
    after = (await (await api.get(API + f"/halls/{pd[0]['id']}/slots", params={"date": slot["date"]})).json())["slots"]
    assert [s for s in after if s["id"] == slot["id"]][0]["available"] == 0
    _is_problem(await api.get(API + "/halls/99999/slots"), 404)
    _is_problem(await api.get(API + f"/halls/{pd[0]['id']}/slots", params={"date": "31/12"}), 400)
    _is_problem(await api.post(API + "/appointments", json={"slot_id": 999999, "contact_name": "a", "contact_phone": "13800138000",
                                                            "purpose": "x"}), 422)
    _is_problem(await api.delete(API + "/appointments/999999"), 404)


async def test_appointments_of_an_account_soonest_first(api):
    pd = (await (await api.get(API + "/halls", params={"district": "浦东新区"})).json())["halls"][0]
    slots = (await (await api.get(API + f"/halls/{pd['id']}/slots")).json())["slots"]
    later, sooner = slots[5], slots[1]
    ids = []
    for i, sl in enumerate((later, sooner)):
        r = await api.post(API + "/appointments", headers={"Idempotency-Key": f"mine-{i}"},
                           json={"slot_id": sl["id"], "account_number": "3100000001", "contact_name": "张伟",
                                 "contact_phone": "13800138000", "purpose": "过户"})
        ids.append((await r.json())["id"])
    await api.post(API + "/appointments", headers={"Idempotency-Key": "other"},
                   json={"slot_id": sooner["id"], "account_number": "3100000002", "contact_name": "李娜",
                         "contact_phone": "13900139000", "purpose": "开票"})
    mine = (await (await api.get(API + "/appointments", params={"account_number": "3100000001"})).json())["appointments"]
    assert [a["id"] for a in mine] == [ids[1], ids[0]]  # the sooner visit first, no one else's
    await api.delete(API + f"/appointments/{ids[1]}")
    booked = (await (await api.get(API + "/appointments", params={"account_number": "3100000001",
                                                                  "status": "booked"})).json())["appointments"]
    assert [a["id"] for a in booked] == [ids[0]]
    by_phone = (await (await api.get(API + "/appointments", params={"contact_phone": "13900139000"})).json())["appointments"]
    assert [a["account_number"] for a in by_phone] == ["3100000002"]
    _is_problem(await api.get(API + "/appointments"), 400)  # everyone's appointments are not listed
    _is_problem(await api.get(API + "/appointments", params={"account_number": "12"}), 400)


# --- tariffs -------------------------------------------------------------------------------
async def test_tariffs_and_quotes(api):
    t = await (await api.get(API + "/tariffs/residential")).json()
    assert [(x["to_kwh"], x["price"]) for x in t["tiers"]] == [("230", "0.5283"), ("400", "0.5783"), (None, "0.8283")]
    assert (t["peak_price"], t["valley_price"], t["peak_hours"]) == ("0.6170", "0.3070", "08:00-22:00")
    q = await (await api.get(API + "/tariffs/residential/quote", params={"kwh": "300"})).json()
    assert q["amount"] == "161.99"  # 230*0.5283 + 70*0.5783
    q = await (await api.get(API + "/tariffs/residential/quote", params={"kwh": "500"})).json()
    assert q["amount"] == "302.65"  # + 100*0.8283
    q = await (await api.get(API + "/tariffs/commercial/quote", params={"kwh": "1000"})).json()
    assert q["amount"] == "792.10"
    assert len((await (await api.get(API + "/tariffs")).json())["tariffs"]) == 2
    _is_problem(await api.get(API + "/tariffs/industrial"), 404)
    _is_problem(await api.get(API + "/tariffs/residential/quote", params={"kwh": "-1"}), 400)
    _is_problem(await api.get(API + "/tariffs/residential/quote", params={"kwh": "many"}), 400)
    _is_problem(await api.get(API + "/tariffs/residential/quote"), 400)
    _is_problem(await api.get(API + "/tariffs/residential/quote", params={"kwh": "10", "peak_kwh": "4", "valley_kwh": "5"}), 400)


# --- subscriptions & events ----------------------------------------------------------------
async def test_subscriptions(api):
    body = {"account_number": "3100000001", "topic": "outage", "channel": "wechat", "identity": "oDEMO_zhangwei"}
    r = await api.post(API + "/subscriptions", json=body)
    assert r.status == 201
    r = await api.post(API + "/subscriptions", json=body)
    assert r.status == 200
    await api.post(API + "/subscriptions", json={**body, "topic": "bill"})
    subs = (await (await api.get(API + "/subscriptions", params={"account_number": "3100000001"})).json())["subscriptions"]
    assert sorted(s["topic"] for s in subs) == ["bill", "outage"]
    by_district = (await (await api.get(API + "/subscriptions", params={"district": "浦东新区", "topic": "outage"})).json())["subscriptions"]
    assert [s["account_number"] for s in by_district] == ["3100000001"]
    page1 = (await (await api.get(API + "/subscriptions", params={"limit": "1"})).json())["subscriptions"]
    page2 = (await (await api.get(API + "/subscriptions", params={"limit": "1", "after_id": str(page1[0]["id"])})).json())["subscriptions"]
    assert [x["id"] for x in page1 + page2] == sorted(x["id"] for x in subs)
    # filters are lenient: a channel that cannot hold subscriptions matches nothing
    r = await api.delete(API + "/subscriptions", params={"account_number": "3100000001", "channel": "rest"})
    assert (await r.json()) == {"deleted": 0}
    r = await api.delete(API + "/subscriptions", params={"account_number": "3100000001", "topic": "outage"})
    assert (await r.json()) == {"deleted": 1}
    r = await api.delete(API + "/subscriptions", params={"account_number": "3100000001"})
    assert (await r.json()) == {"deleted": 1}
    _is_problem(await api.post(API + "/subscriptions", json={**body, "topic": "weather"}), 422)
    _is_problem(await api.post(API + "/subscriptions", json={**body, "account_number": "3199999999"}), 422)
    _is_problem(await api.delete(API + "/subscriptions"), 400)


async def test_event_cursor_paging(api):
    first = await _events(api)
    assert first["events"] and {e["type"] for e in first["events"]} == {"outage.created"}
    page = await (await api.get(API + "/events", params={"limit": "3"})).json()
    assert len(page["events"]) == 3 and page["next_cursor"] == str(page["events"][-1]["id"])
    rest = await (await api.get(API + "/events", params={"after": page["next_cursor"]})).json()
    assert [e["id"] for e in page["events"] + rest["events"]] == [e["id"] for e in first["events"]]
    latest = await (await api.get(API + "/events", params={"after": "latest"})).json()
    assert latest["events"] == [] and latest["next_cursor"] == first["next_cursor"]
    empty = await (await api.get(API + "/events", params={"after": latest["next_cursor"]})).json()
    assert empty == {"events": [], "next_cursor": latest["next_cursor"]}
    _is_problem(await api.get(API + "/events", params={"after": "xyz"}), 400)
    _is_problem(await api.get(API + "/events", params={"limit": "0"}), 400)


# --- seed ----------------------------------------------------------------------------------
def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=timezone.utc)


# 2026-11-30 18:00 UTC is already 2026-12-01 02:00 in Shanghai: the seed's "today" is Shanghai's
SEED_NOW = datetime(2026, 11, 30, 18, 0, tzinfo=timezone.utc)


@time_machine.travel(SEED_NOW, tick=False)
async def test_full_default_seed(sqlite_url):
    summary = await migrate_and_seed(sqlite_url)
    assert "1000 accounts" in summary[0]
    again = await migrate_and_seed(sqlite_url)
    assert "skipped" in again[0]
    engine = make_engine(sqlite_url)
    try:
        async with make_sessionmaker(engine)() as s:
            assert await s.scalar(select(func.count()).select_from(m.Account)) == 1000
            assert await s.scalar(select(func.count()).select_from(m.Bill)) == 12000
            in_arrears = await s.scalar(select(func.count(func.distinct(m.Bill.account_number))).where(m.Bill.status == "unpaid"))
            assert 50 <= in_arrears <= 120  # ~8%
            districts = set((await s.scalars(select(m.Account.district).distinct())).all())
            assert {"浦东新区", "黄浦区", "徐汇区", "静安区", "闵行区", "宝山区"} <= districts
            phones = (await s.scalars(select(m.Account.phone))).all()
            assert all(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
            numbers = (await s.scalars(select(m.Account.account_number))).all()
            assert all(re.fullmatch(r"31\d{8}", n) for n in numbers) and len(set(numbers)) == 1000
            for no, name, phone, *_ in FIXED_ACCOUNTS:
                acc = await s.get(m.Account, no)
                assert (acc.holder_name, acc.phone) == (name, phone)
            months = (await s.scalars(select(m.Bill.month).where(m.Bill.account_number == "3100000001").order_by(m.Bill.month))).all()
            # the 12 months before Shanghai's December (UTC is still in November)
            assert months == ["2025-12"] + [f"2026-{mo:02d}" for mo in range(1, 12)]
            unpaid = (await s.scalars(select(m.Bill).where(m.Bill.account_number == "3100000001", m.Bill.status == "unpaid")
                                      .order_by(m.Bill.month))).all()
            assert [(b.month, b.due_date) for b in unpaid] == [("2026-10", date(2026, 11, 20)), ("2026-11", date(2026, 12, 20))]
            assert await s.scalar(select(func.count()).select_from(m.Outage).where(m.Outage.status == "active")) >= 1
            assert await s.scalar(select(func.count()).select_from(m.WorkOrder)) >= 10
            slot_days = sorted(set((await s.scalars(select(m.Slot.date))).all()))
            assert slot_days == [date(2026, 12, 1) + timedelta(days=d) for d in range(14)]
            planned = (await s.scalars(select(m.Outage.start_at).where(m.Outage.kind == "planned"))).all()
            assert planned and all(SEED_NOW < _aware(t) < SEED_NOW + timedelta(days=8) for t in planned)
            # nothing seeded happened after the moment of seeding (November's bill is issued on
            # 1 December 09:00 Shanghai time, which is seven hours later still)
            stamps = [*(await s.execute(select(m.Bill.issued_at, m.Bill.paid_at))).all(),
                      *(await s.execute(select(m.WorkOrder.created_at, m.WorkOrder.dispatched_at, m.WorkOrder.in_progress_at,
                                               m.WorkOrder.resolved_at, m.WorkOrder.closed_at, m.WorkOrder.updated_at))).all(),
                      *(await s.execute(select(m.Outage.created_at, m.Outage.actual_end_at))).all()]
            assert all(_aware(t) <= SEED_NOW for row in stamps for t in row if t is not None)
    finally:
        await engine.dispose()


async def test_seed_is_deterministic(tmp_path):
    """The same reference date gives the same data, times included: "now" is 10:00 Shanghai
    time on that date, not the wall clock (two seeds a moment apart, or a day apart, agree)."""
    urls = [f"sqlite+aiosqlite:///{tmp_path / f'{i}.db'}" for i in range(2)]
    ref = date(2025, 6, 15)
    rows = []
    for url in urls:
        await migrate_and_seed(url, n_accounts=30, reference_date=ref)
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as s:
            rows.append([
                (a.account_number, a.holder_name, a.phone, a.address)
                for a in (await s.scalars(select(m.Account).order_by(m.Account.account_number))).all()
            ] + [(b.account_number, b.month, str(b.amount), _aware(b.paid_at))
                 for b in (await s.scalars(select(m.Bill).order_by(m.Bill.id))).all()]
              + [(w.id, _aware(w.created_at), _aware(w.sla_due_at), w.status)
                 for w in (await s.scalars(select(m.WorkOrder).order_by(m.WorkOrder.id))).all()]
              + [(o.kind, o.district, _aware(o.start_at)) for o in (await s.scalars(select(m.Outage).order_by(m.Outage.id))).all()])
            active = (await s.scalars(select(m.Outage).where(m.Outage.status == "active"))).all()
            at = datetime(2025, 6, 15, 10, 0, tzinfo=CN_TZ)
            assert active and all(_aware(o.start_at) < at < _aware(o.estimated_end_at) for o in active)
        await engine.dispose()
    assert rows[0] == rows[1]


async def test_overdue_follows_the_due_date_on_the_20th(aiohttp_client, sqlite_url):
    """Seeded and queried on pinned days: before the 20th only the older unpaid bill is
    overdue; from the 21st both are."""
    seeded_at = datetime(2026, 12, 7, 10, 0, tzinfo=CN_TZ)
    await migrate_and_seed(sqlite_url, n_accounts=10, now=seeded_at)
    api = await aiohttp_client(create_core_app(sqlite_url))
    with time_machine.travel(seeded_at, tick=False) as clock:
        arrears = await (await api.get(API + "/accounts/3100000001/arrears")).json()
        bills = {b["month"]: b for b in arrears["unpaid_bills"]}
        assert sorted(bills) == ["2026-10", "2026-11"]
        assert (bills["2026-10"]["overdue"], bills["2026-11"]["overdue"]) == (True, False)
        assert Decimal(arrears["overdue_amount"]) == Decimal(bills["2026-10"]["balance"]) < Decimal(arrears["amount_owed"])
        clock.move_to(datetime(2026, 12, 20, 23, 59, tzinfo=CN_TZ))  # due today: not yet overdue
        arrears = await (await api.get(API + "/accounts/3100000001/arrears")).json()
        assert Decimal(arrears["overdue_amount"]) == Decimal(bills["2026-10"]["balance"])
        clock.move_to(datetime(2026, 12, 21, 0, 1, tzinfo=CN_TZ))
        arrears = await (await api.get(API + "/accounts/3100000001/arrears")).json()
        assert Decimal(arrears["overdue_amount"]) == Decimal(arrears["amount_owed"]) > 0
        assert all(b["overdue"] for b in arrears["unpaid_bills"])
