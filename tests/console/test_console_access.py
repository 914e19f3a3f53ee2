"""Trust on the agent console: who sees which conversation, masking everywhere, audited
reveals, malformed input answered with RFC 9457 problems, logins that do not tell which names
exist. Through the real gateway, dialogue engine and core, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import CORE, SESSIONMAKER
from bot.console.models import AuditEntry, ConsoleMessage
from bot.dialogue.store import Conversation, Event
from stack import run_core, run_gateway
from console_support import PASSWORD, AgentClient, Customer, make_agent


ACCOUNT, PHONE, NAME = "3100000001", "13800138000", "张伟"
ADDRESS = "北京市朝阳区建国路88号3单元502室"
RAW = (ACCOUNT, PHONE, NAME, "建国路88号", "502室")  # none of these may reach an agent unrevealed
PROBLEM = "application/problem+json"
MAX_FAILURES = 5


@pytest_asyncio.fixture
async def gw(store_url: str, interpreter, tmp_path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, \
            run_gateway(store_url, core.url, interpreter) as g:
        for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")):
            await make_agent(g, name, role=role)
        yield g


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def assert_masked(doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    leaked = [r for r in RAW if r in text]
    assert not leaked, (leaked, text)


async def problem_of(r: aiohttp.ClientResponse, status: int) -> dict:
    body = await r.text()
    assert r.status == status, (r.status, body[:300])
    assert r.content_type == PROBLEM, (r.content_type, body[:300])
    doc = json.loads(body)
    assert {"type", "title", "status", "detail"} <= doc.keys() and doc["status"] == status, doc
    assert all(isinstance(doc[k], str) and doc[k] for k in ("type", "title", "detail")), doc
    return doc


async def escalate_with_pii(gw, http) -> Customer:  # type: ignore[no-untyped-def]
    """A customer whose history holds personal data in every kind of field: its text, the NLU
    entities and slots of a turn, a bot reply, the conversation's slots."""
    c = Customer(http, gw.url, "trust-" + uuid.uuid4().hex[:8])
    await gw.app[CORE].bind_account(ACCOUNT, "rest", c.sender)
    await c.say(f"我的户号是{ACCOUNT}")
    await c.say("转人工")
    slots = {"account_number": ACCOUNT, "contact_phone": PHONE, "address": ADDRESS, "contact_name": NAME,
             "description": f"联系电话{PHONE}，地址{ADDRESS}"}
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        s.add(Event(conversation_id=c.conversation_id, type="user", name="inform",
                    text=f"我叫{NAME}，电话{PHONE}，住{ADDRESS}，户号{ACCOUNT}",
                    data={"parse": {"intent": {"name": "inform", "confidence": 0.93}, "entities": [
                        {"entity": "phone_number", "value": PHONE}, {"entity": "account_number", "value": ACCOUNT},
                        {"entity": "address", "value": ADDRESS}, {"entity": "person", "value": NAME}]},
                          "slots": slots, "handoff": True}))
        s.add(Event(conversation_id=c.conversation_id, type="bot", text=f"已为{NAME}登记，回访电话{PHONE}，户号{ACCOUNT}"))
        conv = await s.get(Conversation, c.conversation_id)
        state = dict(conv.state or {})
        state["slots"] = {**(state.get("slots") or {}), **slots}
        conv.state = state
    return c


async def next_event(ws, type_: str, handoff_id: int, seen: list[dict], timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {type_!r} event within {timeout}s; got {seen}")
        msg = await ws.receive(timeout=left)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        ev = json.loads(msg.data)
        seen.append(ev)
        if ev.get("type") == type_ and ev.get("handoff_id") == handoff_id:
            return ev


async def audit(gw, action: str, conversation_id: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        return list((await s.execute(select(AuditEntry).where(
            AuditEntry.action == action, AuditEntry.conversation_id == conversation_id).order_by(AuditEntry.id))).scalars())


async def ws_connect(client: AgentClient, gw):  # type: ignore[no-untyped-def]
    ws = await client.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    return ws


# ------------------------------------------------------------------ 1. ownership and masking
async def test_ownership_masking_and_audit_on_every_endpoint(gw, http) -> None:
    async with AgentClient(gw.url) as alice, AgentClient(gw.url) as bob, AgentClient(gw.url) as sue:
        for client, name in ((alice, "alice"), (bob, "bob"), (sue, "sue")):
            assert (await client.login(name)).status == 302
        ws_alice, ws_bob, ws_sue = await ws_connect(alice, gw), await ws_connect(bob, gw), await ws_connect(sue, gw)
        c = await escalate_with_pii(gw, http)
        hid = (await alice.handoff_for(c.conversation_id))["handoff_id"]
        path = f"/console/api/handoffs/{hid}"

        # waiting: any agent sees it, masked in every field, unaudited; nobody acts on it untaken
        status, conv = await bob.get(path)
        assert status == 200, conv
        assert_masked(conv)
        customer = [e for e in conv["events"] if e["kind"] == "customer" and e.get("intent") == "inform"][-1]
        assert "138****8000" in customer["text"] and customer["masked"] is True
        assert customer["slots"]["account_number"] == "31******01" and customer["slots"]["contact_name"] == "张*"
        assert {"entity": "phone_number", "value": "138****8000"} in customer["entities"]
        assert any(e["kind"] == "bot" and "138****8000" in e["text"] for e in conv["events"])
        assert conv["slots"]["contact_phone"] == "138****8000" and conv["slots"]["address"].endswith("***")
        assert "contact_name" in conv["masked_slots"]
        assert_masked(await bob.queue())
        assert (await bob.post(path + "/note", {"text": "不该写进去"}))[0] == 409

        # alice takes it: from now on it is hers (and the supervisors')
        assert (await alice.post(path + "/take"))[0] == 200
        status, conv = await alice.get(path)
        assert status == 200 and conv["handoff"]["can_act"] is True
        assert_masked(conv)
        async with bob.http.get(gw.url + path) as r:
            await problem_of(r, 403)
        for action, body in (("reply", {"text": "hi"}), ("note", {"text": "bob 的备注"}), ("close", {}),
                             ("transfer", {"agent": "bob"}), ("reveal", {"field": "phone"}),
                             ("reveal", {"slot": "contact_phone"}), ("reveal", {"message": customer["id"]})):
            async with bob.http.post(gw.url + f"{path}/{action}", json=body, headers={"X-CSRF-Token": bob.csrf}) as r:
                await problem_of(r, 403)
        item = next(q for q in await bob.queue() if q["handoff_id"] == hid)
        assert item["visible"] is False and item["last_message"] == "" and item["agent"] == "alice"
        async with gw.app[SESSIONMAKER]() as s:
            notes = (await s.execute(select(func.count()).select_from(ConsoleMessage).where(
                ConsoleMessage.conversation_id == c.conversation_id, ConsoleMessage.kind == "note"))).scalar_one()
        assert notes == 0

        # the holder's own writing is masked in the history too, and revealed only with an audit
        status, body = await alice.post(path + "/note", {"text": f"客户说备用电话 {PHONE}"})
        assert status == 200
        note_id = f"m{body['id']}"
        status, conv = await alice.get(path)
        assert_masked(conv)
        assert await audit(gw, "reveal", c.conversation_id) == []
        for reveal, expected in (({"message": customer["id"]}, f"电话{PHONE}"), ({"message": note_id}, PHONE),
                                 ({"slot": "contact_name"}, NAME), ({"slot": "address"}, ADDRESS),
                                 ({"field": "account_number", "index": 0}, ACCOUNT)):
            status, body = await alice.post(path + "/reveal", reveal)
            assert status == 200 and expected in body["value"], (reveal, body)
        rows = await audit(gw, "reveal", c.conversation_id)
        assert [r.field for r in rows] == ["message", "message", "slot:contact_name", "slot:address", "account_number"]
        assert all(r.agent_name == "alice" and r.detail["handoff_id"] == hid for r in rows)
        assert await audit(gw, "supervisor_view", c.conversation_id) == []  # the holder's reads are not

        # a supervisor may look, and that look is audited
        status, conv = await sue.get(path)
        assert status == 200
        assert_masked(conv)
        views = await audit(gw, "supervisor_view", c.conversation_id)
        assert [(v.agent_name, v.detail["holder"]) for v in views] == [("sue", "alice")]

        # live events: the customer's new message reaches alice and sue, never bob
        await c.say(f"我的新号码是{PHONE}")
        seen_alice: list[dict] = []
        seen_sue: list[dict] = []
        await next_event(ws_alice, "message", hid, seen_alice)
        await next_event(ws_sue, "message", hid, seen_sue)
        assert (await alice.post(path + "/reply", {"text": "收到"}))[0] == 200
        assert (await alice.post(path + "/close"))[0] == 200
        seen_bob: list[dict] = []
        await next_event(ws_bob, "closed", hid, seen_bob)  # the queue's own events reach everybody
        mine = [e for e in seen_bob if e.get("handoff_id") == hid]
        assert [e["type"] for e in mine] == ["queued", "taken", "closed"], seen_bob
        assert_masked(seen_bob + seen_alice + seen_sue)

        # released: only its last holder and supervisors (audited) see it
        async with bob.http.get(gw.url + path) as r:
            await problem_of(r, 403)
        assert (await alice.get(path))[0] == 200
        assert (await sue.get(path))[0] == 200
        assert len(await audit(gw, "supervisor_view", c.conversation_id)) == 2
        async with alice.http.post(gw.url + path + "/note", json={"text": "x"}, headers={"X-CSRF-Token": alice.csrf}) as r:
            await problem_of(r, 409)
        for ws in (ws_alice, ws_bob, ws_sue):
            await ws.close()


def test_the_rule_and_event_routing() -> None:
    from bot.console.access import decide, event_for  # new modules: imported here so that the
    from bot.console.masking import mask_field  # end-to-end tests above also run on older code

    # waiting: everyone sees, nobody acts; assigned: holder and supervisors; released: read-only
    assert decide("bob", "agent", "waiting", None).view and not decide("bob", "agent", "waiting", None).act
    assert not decide("bob", "agent", "assigned", "alice").view
    assert decide("alice", "agent", "assigned", "alice") == decide("alice", "agent", "assigned", "alice")
    assert decide("alice", "agent", "assigned", "alice").act and not decide("alice", "agent", "assigned", "alice").audit
    sup = decide("sue", "supervisor", "assigned", "alice")
    assert sup.view and sup.act and sup.audit
    assert not decide("sue", "supervisor", "waiting", None).audit
    assert not decide("bob", "agent", "released", "alice").view and decide("alice", "agent", "released", "alice").view
    assert not decide("alice", "agent", "released", "alice").act
    # live events: content of a held conversation only to its holder and supervisors
    msg = {"type": "message", "handoff_id": 7, "conversation_id": "sms:+8613800138000", "status": "assigned",
           "holder": "alice"}
    assert event_for("bob", "agent", msg) is None
    assert event_for("alice", "agent", msg)["conversation_id"] == "sms:138****8000"
    assert event_for("sue", "supervisor", msg)["conversation_id"] == "sms:138****8000"
    assert event_for("bob", "agent", {"type": "message", "handoff_id": 7, "conversation_id": "rest:x"}) is None
    assert event_for("bob", "agent", {**msg, "type": "taken"})["conversation_id"] == "sms:138****8000"
    assert event_for("bob", "agent", {**msg, "status": "waiting", "holder": None}) is not None
    # the masks of the side panel, for every key and nesting
    assert mask_field("account_number", 3100000001) == "31******01"
    assert mask_field("description", {"x": [f"call {PHONE}"]}) == {"x": ["call 138****8000"]}
    assert mask_field("amount", "12.50") == "12.50" and mask_field(None, True) is True


# ------------------------------------------------------------------ 2. malformed input
async def test_malformed_input_gets_problems_not_500(gw, http) -> None:
    c = Customer(http, gw.url, "bad-" + uuid.uuid4().hex[:8])
    await c.say("转人工")
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        hid = (await a.handoff_for(c.conversation_id))["handoff_id"]
        assert (await a.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        csrf = {"X-CSRF-Token": a.csrf}
        base = gw.url + f"/console/api/handoffs/{hid}"
        deep = ("[" * 100_000 + "]" * 100_000).encode()
        bodies: list[tuple[bytes, str]] = [
            (deep, "application/json"),
            (b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json"),
            (b"\xff\xfe not utf-8", "application/json"),
            (b'{"text": "x"}', "application/json; charset=no-such-charset"),
            (b"[]", "application/json"),
            (b"{", "application/json"),
            (b'{"text": "a\\u0000b", "agent": "a\\u0000b", "note": "\\u0000"}', "application/json"),
            (b'{"text": "\\ud800", "agent": "\\udfff", "field": "\\ud800", "slot": "\\ud800"}', "application/json"),
            (b'{"text": 1e999999, "agent": 12345678901234567890}', "application/json"),
            (b'{"field": "phone", "index": true}', "application/json"),
            (b'{"field": "phone", "index": 99999999999999999999999}', "application/json"),
            (b'{"slot": "x", "message": "e1"}', "application/json"),
            (b'{"message": "e99999999999999999999999"}', "application/json"),
        ]
        for action in ("reply", "note", "transfer", "reveal", "close"):
            for raw, ctype in bodies:
                async with a.http.post(f"{base}/{action}", data=raw, headers={**csrf, "Content-Type": ctype}) as r:
                    assert r.status < 500, (action, raw[:40], r.status, await r.text())
                    if r.status >= 400:
                        await problem_of(r, r.status)
            async with a.http.post(f"{base}/{action}", data=deep, headers={**csrf, "Content-Type": "application/json"}) as r:
                await problem_of(r, 400)

        # handoff ids: too big for any column, not a number, not ASCII digits, zero, negative
        for hid_text in ("99999999999999999999999999", "9223372036854775808", "9223372036854775807", "abc",
                         "-1", "0", "%D9%A1%D9%A2", "1e3", "%20"):
            async with a.http.get(gw.url + f"/console/api/handoffs/{hid_text}") as r:
                await problem_of(r, 404)
            for action in ("take", "reply", "note", "transfer", "close", "reveal"):
                async with a.http.post(gw.url + f"/console/api/handoffs/{hid_text}/{action}",
                                       json={"text": "x", "agent": "bob", "field": "phone"}, headers=csrf) as r:
                    await problem_of(r, 404)

        # unknown paths and wrong methods, tokens and cookies that are not ASCII
        async with a.http.get(gw.url + "/console/api/nope") as r:
            await problem_of(r, 404)
        async with a.http.get(f"{base}/take") as r:
            await problem_of(r, 405)
        async with a.http.post(f"{base}/reply", json={"text": "x"}, headers={"X-CSRF-Token": "é" * 40}) as r:
            await problem_of(r, 403)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as anon:
            async with anon.get(gw.url + "/console/api/queue", headers={"Cookie": "pb_console=\xe9" + "x" * 30}) as r:
                await problem_of(r, 401)
            # the login form: NUL in a name, a file instead of a field, a body that is no form
            async with anon.get(gw.url + "/console/login") as r:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
            async with anon.post(gw.url + "/console/login", data={"csrf_token": token, "name": "a\x00b", "password": "x"}) as r:
                await problem_of(r, 400)
            form = aiohttp.FormData()
            form.add_field("csrf_token", token)
            form.add_field("name", b"alice", filename="name.txt", content_type="text/plain")
            async with anon.post(gw.url + "/console/login", data=form) as r:
                await problem_of(r, 400)
            async with anon.post(gw.url + "/console/login", data=b"--x\r\nbroken",
                                 headers={"Content-Type": "multipart/form-data; boundary=x"}) as r:
                assert r.status < 500

        # the websocket: anything but a ping is answered with a problem; a huge frame closes it
        ws = await ws_connect(a, gw)

        async def answer() -> dict:
            while True:  # live events (presence...) may come in between
                doc = await ws.receive_json(timeout=5)
                if doc.get("type") in ("error", "pong"):
                    return doc

        for frame in ("hello", "[" * 2000, "[" * 1500 + "]" * 1500, json.dumps({"type": "take", "id": 1})):
            await ws.send_str(frame)
            doc = await answer()
            assert doc["type"] == "error" and doc["problem"]["status"] == 400, doc
            assert {"type", "title", "status", "detail"} <= doc["problem"].keys()
        await ws.send_bytes(b"\x00\x01")
        assert (await answer())["problem"]["status"] == 400
        await ws.send_str("ping")
        assert (await answer())["type"] == "pong"
        await ws.send_str("x" * 100_000)
        msg = await ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.TEXT:  # a live event may come first
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        # and the gateway is fine
        assert (await a.get("/console/api/queue"))[0] == 200


# ------------------------------------------------------------------ 3. login enumeration
def _page(text: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', text)


async def _attempt(gw, name: str, password: str) -> tuple[int, str, float]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(gw.url + "/console/login") as r:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        started = time.perf_counter()
        async with s.post(gw.url + "/console/login", data={"csrf_token": token, "name": name, "password": password},
                          allow_redirects=False) as r:
            body = await r.text()
            return r.status, _page(body), time.perf_counter() - started


async def test_unknown_and_known_names_answer_alike(gw) -> None:
    known, unknown = [], []
    for _ in range(MAX_FAILURES):
        known.append(await _attempt(gw, "alice", "wrong password"))
        unknown.append(await _attempt(gw, "nobody-x", "wrong password"))
    # same statuses and pages at every step: 401 four times, then the lockout
    assert [k[0] for k in known] == [401] * (MAX_FAILURES - 1) + [429]
    assert [u[0] for u in unknown] == [k[0] for k in known]
    assert [u[1] for u in unknown] == [k[1] for k in known]
    assert "锁定" in known[-1][1]
    # locked: even the right password is refused, with the same page as for the unknown name
    right = await _attempt(gw, "alice", PASSWORD)
    ghost = await _attempt(gw, "nobody-x", PASSWORD)
    assert right[0] == ghost[0] == 429 and right[1] == ghost[1]
    # other names are not affected
    assert (await _attempt(gw, "bob", PASSWORD))[0] == 302
    # and both cost one password hash: similar times (medians of alternating tries)
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    await make_agent(gw, "dave")
    for _ in range(3):
        times["known"].append((await _attempt(gw, "dave", "wrong password"))[2])
        times["unknown"].append((await _attempt(gw, "carol-unknown", "wrong password"))[2])
    ratio = statistics.median(times["known"]) / statistics.median(times["unknown"])
    assert 1 / 3 < ratio < 3, times
    # the audit log still tells the operator which was which
    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.agent_name == "nobody-x"))).scalars().all()
    assert [r.action for r in rows].count("lockout") == 1 and all(r.detail.get("unknown_name") for r in rows)
