"""Console security: authentication, CSRF, roles, lockout, escaping, exclusive taking, audit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.app import CORE, SESSIONMAKER
from bot.console.models import AuditEntry
from stack import run_gateway, wait_until
from console_support import PASSWORD, AgentClient, Customer, make_agent

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(core, interpreter, tmp_path_factory) -> AsyncIterator:
    db = tmp_path_factory.mktemp("console_gw") / "bot.db"
    async with run_gateway(f"sqlite+aiosqlite:///{db}", core.url, interpreter) as g:
        await make_agent(g, "alice")
        await make_agent(g, "bob")
        await make_agent(g, "carol")
        await make_agent(g, "sue", role="supervisor")
        yield g


async def escalate(gw, http) -> Customer:  # type: ignore[no-untyped-def]
    c = Customer(http, gw.url, "sec-" + uuid.uuid4().hex[:8])
    await c.say("转人工")
    return c


async def test_unauthenticated_gets_login_page_or_401(gw, http) -> None:
    async with http.get(gw.url + "/console", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/console/login"
    async with http.get(gw.url + "/console/supervisor", allow_redirects=False) as r:
        assert r.status == 302
    async with http.get(gw.url + "/console/login") as r:
        assert r.status == 200 and "坐席登录" in await r.text()
    for path in ("/console/api/queue", "/console/api/me", "/console/api/stats", "/console/api/handoffs/1", "/console/ws"):
        async with http.get(gw.url + path) as r:
            assert r.status == 401, path
    async with http.post(gw.url + "/console/api/handoffs/1/take", headers={"X-CSRF-Token": "x"}) as r:
        assert r.status == 401
    # a forged cookie is no session
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), cookies={"pb_console": "forged"}) as s:
        async with s.get(gw.url + "/console/api/queue") as r:
            assert r.status == 401


async def test_login_cookie_flags_and_logout(gw) -> None:
    async with AgentClient(gw.url) as a:
        r = await a.login("alice")
        assert r.status == 302
        cookie = r.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookie if c.startswith("pb_console="))
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
        assert "Secure" not in session_cookie  # cookie_secure defaults to false (plain HTTP on loopback)
        status, page = await a.get("/console")
        assert status == 200 and "alice" in page
        assert "Content-Security-Policy" in (await a.http.get(gw.url + "/console")).headers
        # logout without the CSRF token is refused, with it the session ends
        async with a.http.post(gw.url + "/console/logout", data={}, allow_redirects=False) as r:
            assert r.status == 403
        async with a.http.post(gw.url + "/console/logout", data={"csrf_token": a.csrf}, allow_redirects=False) as r:
            assert r.status == 302
        status, _ = await a.get("/console/api/queue")
        assert status == 401


async def test_secure_cookie_when_configured(core, interpreter, tmp_path) -> None:
    import re

    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", core.url, interpreter, cookie_secure=True) as g:
        await make_agent(g, "zoe")
        # a client never sends Secure cookies back over plain HTTP, so carry them by hand
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
            async with s.get(g.url + "/console/login") as r:
                token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text()).group(1)
                assert "Secure" in r.headers["Set-Cookie"]
            async with s.post(g.url + "/console/login", data={"csrf_token": token, "name": "zoe", "password": PASSWORD},
                              headers={"Cookie": f"pb_console_login={token}"}, allow_redirects=False) as r:
                assert r.status == 302
                session_cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("pb_console="))
            assert "Secure" in session_cookie and "HttpOnly" in session_cookie


async def test_login_form_needs_its_csrf_token(gw) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(gw.url + "/console/login", data={"name": "alice", "password": PASSWORD}, allow_redirects=False) as r:
            assert r.status == 403
            assert "pb_console=" not in " ".join(h for h in r.headers.getall("Set-Cookie", []) if h.startswith("pb_console="))


async def test_missing_or_wrong_csrf_is_403(gw, http) -> None:
    c = await escalate(gw, http)
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        h = await a.handoff_for(c.conversation_id)
        assert h is not None and h["status"] == "waiting"
        path = f"/console/api/handoffs/{h['handoff_id']}"
        assert (await a.post(path + "/take", csrf=None))[0] == 403
        assert (await a.post(path + "/take", csrf="wrong-token"))[0] == 403
        assert (await a.handoff_for(c.conversation_id))["status"] == "waiting"  # nothing happened
        assert (await a.post(path + "/take"))[0] == 200
        for action, body in (("reply", {"text": "hi"}), ("note", {"text": "n"}), ("close", {}),
                             ("reveal", {"field": "phone"}), ("transfer", {"agent": "bob"})):
            status, _ = await a.post(f"{path}/{action}", body, csrf=None)
            assert status == 403, action
        # a CSRF token of another session does not work either
        async with AgentClient(gw.url) as b:
            await b.login("bob")
            assert (await a.post(path + "/reply", {"text": "x"}, csrf=b.csrf))[0] == 403
        assert (await a.post(path + "/close"))[0] == 200


async def test_agent_cannot_open_supervisor_pages(gw) -> None:
    async with AgentClient(gw.url) as a, AgentClient(gw.url) as s:
        await a.login("alice")
        await s.login("sue")
        status, page = await a.get("/console/supervisor")
        assert status == 403 and "无权限" in page
        assert (await a.get("/console/api/stats"))[0] == 403
        status, page = await s.get("/console/supervisor")
        assert status == 200 and "机器人解决率" in page and "满意度" in page
        status, figures = await s.get("/console/api/stats")
        assert status == 200 and "queue_length" in figures and "automation_rate" in figures


async def test_lockout_after_repeated_failures(gw) -> None:
    await make_agent(gw, "mallory-target")
    async with AgentClient(gw.url) as a:
        for _ in range(4):
            assert (await a.login("mallory-target", "wrong password")).status == 401
        r = await a.login("mallory-target", "wrong password")
        assert r.status == 429  # fifth failure locks the account
        r = await a.login("mallory-target")  # even the right password is refused now
        assert r.status == 429 and "锁定" in await r.text()
        assert (await a.get("/console/api/queue"))[0] == 401
        # other accounts are not affected
        assert (await a.login("alice")).status == 302
    async with gw.app[SESSIONMAKER]() as s:
        actions = (await s.execute(select(AuditEntry.action).where(AuditEntry.agent_name == "mallory-target"))).scalars().all()
    assert actions.count("login_failed") == 4 and "lockout" in actions and "login_locked" in actions
    # unknown names answer like a wrong password (no account enumeration)
    async with AgentClient(gw.url) as a:
        assert (await a.login("nobody-here", "whatever")).status == 401


async def test_two_agents_racing_one_wins(gw, http) -> None:
    customers = [await escalate(gw, http) for _ in range(4)]
    async with AgentClient(gw.url) as a, AgentClient(gw.url) as b, AgentClient(gw.url) as c:
        for x, name in ((a, "alice"), (b, "bob"), (c, "carol")):
            await x.login(name)
        for cust in customers:
            h = await a.handoff_for(cust.conversation_id)
            path = f"/console/api/handoffs/{h['handoff_id']}/take"
            results = await asyncio.gather(a.post(path), b.post(path), c.post(path))
            statuses = sorted(r[0] for r in results)
            assert statuses == [200, 409, 409], results
            winner = next(r[1]["agent"] for r in results if r[0] == 200)
            assert (await a.handoff_for(cust.conversation_id))["agent"] == winner
            # the losers cannot act on it
            for x, name in ((a, "alice"), (b, "bob"), (c, "carol")):
                status, _ = await x.post(path.replace("/take", "/reply"), {"text": "hello"})
                assert status == (200 if name == winner else 403)
            holder = {"alice": a, "bob": b, "carol": c}[winner]
            assert (await holder.post(path.replace("/take", "/close")))[0] == 200
            assert (await a.post(path))[0] == 409  # closed: nobody can take it any more


async def test_script_in_names_is_escaped_in_pages(gw) -> None:
    await make_agent(gw, "<script>alert(1)</script>")
    async with AgentClient(gw.url) as a:
        assert (await a.login("<script>alert(1)</script>")).status == 302
        status, page = await a.get("/console")
        assert status == 200
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_reveal_is_audited_and_only_for_the_holder(gw, http) -> None:
    c = Customer(http, gw.url, "reveal-" + uuid.uuid4().hex[:8])
    await gw.app[CORE].bind_account("3100000001", "rest", c.sender)
    await c.say("转人工")
    async with AgentClient(gw.url) as a, AgentClient(gw.url) as b:
        await a.login("alice")
        await b.login("bob")
        h = await a.handoff_for(c.conversation_id)
        path = f"/console/api/handoffs/{h['handoff_id']}"
        assert (await a.post(path + "/take"))[0] == 200
        status, conv = await a.get(path)
        assert status == 200
        acc = conv["account"]["accounts"][0]
        assert acc["masked"]["phone"] == "138****8000"
        assert acc["masked"]["account_number"] != "3100000001" and "3100000001" not in str(conv["account"])
        assert "13800138000" not in str(conv)
        assert "bills" in acc and "work_orders" in acc and "outages" in acc
        assert (await b.post(path + "/reveal", {"field": "phone"}))[0] == 403  # not bob's conversation
        status, body = await a.post(path + "/reveal", {"field": "phone"})
        assert status == 200 and body["value"] == "13800138000"
        status, body = await a.post(path + "/reveal", {"field": "account_number"})
        assert body["value"] == "3100000001"
        assert (await a.post(path + "/reveal", {"field": "password"}))[0] == 400
    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.action == "reveal",
                                                         AuditEntry.conversation_id == c.conversation_id))).scalars().all()
    assert sorted(r.field for r in rows) == ["account_number", "phone"] and all(r.agent_name == "alice" for r in rows)


async def test_websocket_refuses_foreign_origin(gw) -> None:
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await a.http.ws_connect(gw.url + "/console/ws", headers={"Origin": "https://evil.example"})
        assert exc.value.status == 403
        ws = await a.http.ws_connect(gw.url + "/console/ws", headers={"Origin": gw.url})
        msg = await ws.receive_json(timeout=5)
        assert msg["type"] == "hello"
        await ws.close()
    _ = wait_until
