"""The console's inbox API: views, filters and search by the access rule, reopen, supervisor
assignment, canned responses, labels, the customer panel (masked, earlier conversations)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.app import CORE, SESSIONMAKER
from bot.console.models import AuditEntry
from stack import run_gateway
from console_support import AgentClient, Customer, make_agent

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(core, interpreter, tmp_path_factory) -> AsyncIterator:
    db = tmp_path_factory.mktemp("console_inbox") / "bot.db"
    async with run_gateway(f"sqlite+aiosqlite:///{db}", core.url, interpreter) as g:
        for name in ("amy", "ben"):
            await make_agent(g, name)
        await make_agent(g, "sam", role="supervisor")
        yield g


async def escalate(gw, http, first: str = "转人工") -> Customer:  # type: ignore[no-untyped-def]
    c = Customer(http, gw.url, "inbox-" + uuid.uuid4().hex[:8])
    if first != "转人工":
        await c.say(first)
    await c.say("转人工")
    return c


async def test_views_filters_search_and_reopen(gw, http) -> None:
    mine = await escalate(gw, http, "我的电表箱冒烟了吗不是，是账单单价不对 zqx-unique")
    other = await escalate(gw, http, "账单问题 zqx-unique")
    async with AgentClient(gw.url) as amy, AgentClient(gw.url) as ben, AgentClient(gw.url) as sam:
        await amy.login("amy"); await ben.login("ben"); await sam.login("sam")
        h1 = (await amy.handoff_for(mine.conversation_id))["handoff_id"]
        h2 = (await ben.handoff_for(other.conversation_id))["handoff_id"]
        assert (await amy.post(f"/console/api/handoffs/{h1}/take"))[0] == 200
        assert (await ben.post(f"/console/api/handoffs/{h2}/take"))[0] == 200
        status, body = await amy.get("/console/api/queue?view=mine")
        assert status == 200 and [i["handoff_id"] for i in body["queue"]] == [h1]
        status, body = await amy.get("/console/api/queue?view=unassigned")
        assert all(i["status"] == "waiting" for i in body["queue"])
        assert (await amy.get("/console/api/queue?view=everything"))[0] == 400
        assert (await amy.get("/console/api/queue?channel=fax"))[0] == 400
        assert (await amy.get("/console/api/queue?channel=wechat"))[1]["queue"] == []
        # search: only what the caller may see (ben's conversation says the same words)
        status, body = await amy.get("/console/api/queue?q=zqx-unique")
        assert [i["handoff_id"] for i in body["queue"]] == [h1]
        status, body = await sam.get("/console/api/queue?q=zqx-unique")
        assert {i["handoff_id"] for i in body["queue"]} == {h1, h2}
        # closing, then the closed view and reopening
        assert (await amy.post(f"/console/api/handoffs/{h1}/close"))[0] == 200
        status, body = await amy.get("/console/api/queue?status=released")
        assert [i["handoff_id"] for i in body["queue"]] == [h1] and body["queue"][0]["reopenable"]
        assert (await ben.get("/console/api/queue?status=released"))[1]["queue"] == [] or all(
            i["agent"] == "ben" for i in (await ben.get("/console/api/queue?status=released"))[1]["queue"])
        assert (await ben.post(f"/console/api/handoffs/{h1}/reopen"))[0] == 403  # not ben's
        assert (await amy.post(f"/console/api/handoffs/{h2}/reopen"))[0] == 403
        assert (await ben.post(f"/console/api/handoffs/{h2}/reopen"))[0] == 409  # not closed
        status, body = await amy.post(f"/console/api/handoffs/{h1}/reopen")
        assert status == 200 and body["handoff_id"] != h1
        assert (await amy.post(f"/console/api/handoffs/{h1}/reopen"))[0] == 409  # held again
        new = body["handoff_id"]
        assert (await amy.post(f"/console/api/handoffs/{new}/reply", {"text": "我回来继续为您处理"}))[0] == 200
        # assignment is a supervisor's
        assert (await amy.post(f"/console/api/handoffs/{new}/assign", {"agent": "ben"}))[0] == 403
        status, body = await sam.post(f"/console/api/handoffs/{new}/assign", {"agent": "ben"})
        assert status == 200 and body["agent"] == "ben"
        assert (await sam.post(f"/console/api/handoffs/{new}/assign", {"agent": "nobody"}))[0] == 400
        waiting = await escalate(gw, http)
        hw = (await sam.handoff_for(waiting.conversation_id))["handoff_id"]
        assert (await sam.post(f"/console/api/handoffs/{hw}/assign", {"agent": "amy"}))[0] == 200
        assert (await amy.get("/console/api/queue?view=mine"))[1]["queue"][0]["handoff_id"] == hw


async def test_customer_panel_is_masked_and_lists_earlier_conversations(gw, http) -> None:
    first = Customer(http, gw.url, "inbox-" + uuid.uuid4().hex[:8])
    second = Customer(http, gw.url, "inbox-" + uuid.uuid4().hex[:8])
    for c in (first, second):
        await gw.app[CORE].bind_account("3100000002", "rest", c.sender)
    await first.say("转人工")
    async with AgentClient(gw.url) as amy, AgentClient(gw.url) as ben, AgentClient(gw.url) as sam:
        await amy.login("amy"); await ben.login("ben"); await sam.login("sam")
        h1 = (await amy.handoff_for(first.conversation_id))["handoff_id"]
        await amy.post(f"/console/api/handoffs/{h1}/take")
        await amy.post(f"/console/api/handoffs/{h1}/close")
        await second.say("转人工")
        h2 = (await ben.handoff_for(second.conversation_id))["handoff_id"]
        await ben.post(f"/console/api/handoffs/{h2}/take")
        status, body = await ben.get(f"/console/api/handoffs/{h2}")
        assert status == 200
        cust = body["customer"]
        assert cust["verified"] and cust["channel"] == "rest" and "*" in cust["name"] and "*" in cust["account"]
        assert "3100000002" not in str(body)  # nothing raw, and the raw lists stay on the server
        assert "numbers" not in body["account"] and "conversations" not in body["account"]
        earlier = [e for e in cust["earlier"] if e["handoff_id"] == h1]
        assert earlier and earlier[0]["status"] == "released" and earlier[0]["visible"] is False  # amy's
        assert (await ben.get(f"/console/api/handoffs/{h1}"))[0] == 403  # the access rule, as for any other
        # a supervisor may open it, audited as today
        status, body = await sam.get(f"/console/api/handoffs/{h2}")
        assert [e["visible"] for e in body["customer"]["earlier"] if e["handoff_id"] == h1] == [True]
        assert (await sam.get(f"/console/api/handoffs/{h1}"))[0] == 200
        async with gw.app[SESSIONMAKER]() as s:
            audits = (await s.execute(select(AuditEntry).where(
                AuditEntry.agent_name == "sam", AuditEntry.action == "supervisor_view",
                AuditEntry.conversation_id == first.conversation_id))).scalars().all()
        assert audits
        # the queue now names the customer (masked) instead of the raw id
        item = await ben.handoff_for(second.conversation_id)
        assert item["customer_label"] and "*" in item["customer_label"]


async def test_canned_responses_and_labels(gw, http) -> None:
    async with AgentClient(gw.url) as amy:
        await amy.login("amy")
        status, body = await amy.get("/console/api/canned")
        assert status == 200 and {"hello", "wait"} <= {c["shortcut"] for c in body["canned"]}
        status, made = await amy.post("/console/api/canned", {"shortcut": "arrears", "text": "您当前有欠费，请及时缴纳。"})
        assert status == 200 and made["updated_by"] == "amy"
        assert (await amy.post("/console/api/canned", {"shortcut": "arrears", "text": "x"}))[0] == 409
        assert (await amy.post("/console/api/canned", {"shortcut": "有 空格", "text": "x"}))[0] == 400
        assert (await amy.post("/console/api/canned", {"shortcut": "ok", "text": "  "}))[0] == 400
        assert (await amy.post("/console/api/canned", {"shortcut": "x2", "text": "y"}, csrf=False))[0] == 403
        async with amy.http.put(amy.base + f"/console/api/canned/{made['id']}", json={"shortcut": "owe", "text": "改过"},
                                headers={"X-CSRF-Token": amy.csrf}) as r:
            assert r.status == 200 and (await r.json())["shortcut"] == "owe"
        async with amy.http.delete(amy.base + f"/console/api/canned/{made['id']}", headers={"X-CSRF-Token": amy.csrf}) as r:
            assert r.status == 200
        async with amy.http.delete(amy.base + f"/console/api/canned/{made['id']}", headers={"X-CSRF-Token": amy.csrf}) as r:
            assert r.status == 404
        status, labels = await amy.get("/console/api/labels")
        assert labels["intents"]["request_human"] == {"zh": "转人工", "en": "Ask for a human"}
        assert labels["slots"]["account_number"]["en"] == "Account number"


async def test_wrong_password_keeps_the_name(gw, http) -> None:
    async with AgentClient(gw.url) as a:
        r = await a.login("amy", "not the password")
        assert r.status == 401
        page = await r.text()
        assert 'value="amy"' in page and 'name="password"' in page and 'value="not the password"' not in page
