"""Working the queue end to end through the real gateway, dialogue engine and core:
escalation, live events, taking, history with NLU, replies on the customer's channel, notes,
transfer, close → satisfaction score, nobody online → expected wait + callback work order,
supervisor figures. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.app import CORE, SESSIONMAKER
from bot.console.models import CallbackOffer, Satisfaction
from stack import run_gateway, wait_until
from console_support import AgentClient, Customer, make_agent

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def gw(request, core, interpreter, tmp_path_factory, postgres) -> AsyncIterator:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console_flow_gw') / 'bot.db'}"
    else:
        url = await asyncio.get_running_loop().run_in_executor(None, postgres.new_database)
    async with run_gateway(url, core.url, interpreter) as g:
        await make_agent(g, "alice")
        await make_agent(g, "bob")
        await make_agent(g, "sue", role="supervisor")
        yield g


async def next_event(ws, type_: str, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no {type_!r} event within {timeout}s")
        msg = await ws.receive(timeout=left)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"websocket closed: {msg}")
        ev = json.loads(msg.data)
        if ev.get("type") == type_:
            return ev


async def test_nobody_online_wait_notice_and_callback_order(gw, http) -> None:
    c = Customer(http, gw.url, "cb-" + uuid.uuid4().hex[:8])
    await gw.app[CORE].bind_account("3100000002", "rest", c.sender)
    texts = await c.say("转人工")
    joined = " ".join(texts)
    assert "转接人工" in joined  # the engine's acknowledgement
    assert "暂无人工客服在线" in joined and "分钟" in joined and "回电" in joined
    texts = await c.say("那请给我回电吧")
    assert len(texts) == 1 and "回电工单" in texts[0]
    wo_id = texts[0].split("回电工单")[1].split("，")[0].strip()
    wo = await gw.app[CORE].get_work_order(wo_id)
    assert wo.account_number == "3100000002" and wo.contact_phone == "13900139000" and wo.details.get("callback")
    async with gw.app[SESSIONMAKER]() as s:
        offer = (await s.execute(select(CallbackOffer).where(CallbackOffer.conversation_id == c.conversation_id))).scalar_one()
    assert offer.status == "accepted" and offer.work_order_id == wo_id and offer.estimated_wait_seconds > 0
    # the customer is still queued for an agent; a retry of "回电" does not create a second order
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        assert (await a.handoff_for(c.conversation_id))["status"] == "waiting"
        status, conv = await a.get(f"/console/api/handoffs/{(await a.handoff_for(c.conversation_id))['handoff_id']}")
        assert any("回电工单" in e["text"] for e in conv["events"])
        assert any(e["kind"] == "customer" and e["intent"] for e in conv["events"])


async def test_callback_asked_in_other_words_carries_the_number_given(gw, http) -> None:
    """"让人回个电话给我吧 136…" while nobody is online: a call back, to the number just given."""
    c = Customer(http, gw.url, "cb2-" + uuid.uuid4().hex[:8])
    assert "暂无人工客服在线" in " ".join(await c.say("转人工"))
    texts = await c.say("没人吗？不等了，让人回个电话给我吧 13600001111")
    assert len(texts) == 1 and "回电工单" in texts[0]
    wo = await gw.app[CORE].get_work_order(texts[0].split("回电工单")[1].split("，")[0].strip())
    assert wo.contact_phone == "13600001111" and wo.details.get("callback")


async def test_agent_works_a_conversation(gw, http) -> None:
    async with AgentClient(gw.url) as a, AgentClient(gw.url) as b, AgentClient(gw.url) as sup:
        await a.login("alice")
        await b.login("bob")
        await sup.login("sue")
        ws = await a.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        ws_b = await b.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
        await ws_b.receive_json(timeout=5)
        await wait_until(lambda: _online(a, {"alice", "bob"}), timeout=5)

        c = Customer(http, gw.url, "flow-" + uuid.uuid4().hex[:8])
        assert await c.say("你好")
        texts = await c.say("我要转人工")
        await c.poll()  # the chat page starts polling (cursor after what it already has)
        assert any("转接人工" in t for t in texts)
        assert not any("暂无人工客服在线" in t for t in texts)  # agents are online
        ev = await next_event(ws, "queued")
        assert ev["conversation_id"] == c.conversation_id
        hid = ev["handoff_id"]
        item = await a.handoff_for(c.conversation_id)
        assert item["reason"] == "request_human" and item["channel"] == "rest" and item["waiting_seconds"] >= 0

        assert (await a.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        ev = await next_event(ws_b, "taken")
        assert ev["agent"] == "alice"
        # the customer is told a person joined, by name, once
        assert await wait_until(c.poll, timeout=10) == ["人工客服alice已接入，正在为您服务。"]

        # while alice holds it the customer's messages go to her, not to the bot
        assert await c.say("我家停电了，电线掉下来了吗不确定") in ([], ["您的消息已转给人工客服，请稍候。"])
        ev = await next_event(ws, "message")
        assert ev["handoff_id"] == hid
        status, conv = await a.get(f"/console/api/handoffs/{hid}")
        customer = [e for e in conv["events"] if e["kind"] == "customer"]
        assert [e["text"] for e in customer][-1].startswith("我家停电了")
        assert all(e["intent"] for e in customer) and customer[0]["intent"] == "greet"
        assert "slots" in customer[-1]

        status, body = await a.post(f"/console/api/handoffs/{hid}/reply", {"text": "您好，我是客服小李，正在为您查询。"})
        assert status == 200
        got = await wait_until(c.poll, timeout=10)
        assert got == ["您好，我是客服小李，正在为您查询。"]
        assert (await a.post(f"/console/api/handoffs/{hid}/note", {"text": "客户情绪平稳，疑似单户故障"}))[0] == 200
        status, canned = await a.get("/console/api/canned")
        assert status == 200 and len(canned["canned"]) >= 3
        status, conv = await a.get(f"/console/api/handoffs/{hid}")
        kinds = [e["kind"] for e in conv["events"]]
        assert "agent" in kinds and "note" in kinds
        assert not any("疑似单户故障" in t for t in c.received)  # notes stay internal

        # transfer to bob; alice can no longer write, bob can
        assert (await a.post(f"/console/api/handoffs/{hid}/transfer", {"agent": "nobody"}))[0] == 400
        assert (await a.post(f"/console/api/handoffs/{hid}/transfer", {"agent": "bob"}))[0] == 200
        ev = await next_event(ws_b, "transferred")
        assert ev["agent"] == "bob"
        assert (await a.post(f"/console/api/handoffs/{hid}/reply", {"text": "x"}))[0] == 403
        assert (await b.post(f"/console/api/handoffs/{hid}/reply", {"text": "我是小王，已为您安排抢修。"}))[0] == 200
        assert await wait_until(c.poll, timeout=10) == ["我是小王，已为您安排抢修。"]

        # close: the bot is back and asks for a score; "4分" is the score
        assert (await b.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
        await next_event(ws, "closed")
        ask = await wait_until(c.poll, timeout=10)
        assert len(ask) == 1 and "1–5" in ask[0]
        assert (await a.handoff_for(c.conversation_id)) is None
        texts = await c.say("4分")
        assert len(texts) == 1 and "4 分" in texts[0]
        async with gw.app[SESSIONMAKER]() as s:
            sat = (await s.execute(select(Satisfaction).where(Satisfaction.conversation_id == c.conversation_id))).scalar_one()
        assert sat.status == "answered" and sat.score == 4 and sat.agent_name == "bob"
        # and the bot answers normally again
        texts = await c.say("谢谢")
        assert texts and not any("人工" in t for t in texts)

        status, figures = await sup.get("/console/api/stats")
        assert status == 200
        assert figures["satisfaction_count"] >= 1 and figures["satisfaction_distribution"]["4"] >= 1
        assert figures["conversations_with_agent"] >= 1 and 0 <= figures["automation_rate"] < 1
        assert set(figures["agents_online"]) >= {"alice", "bob"}
        assert figures["average_handled_wait_seconds"] is not None
        await ws.close()
        await ws_b.close()


async def test_score_is_optional_and_queue_order(gw, http) -> None:
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        ws = await a.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
        await ws.receive_json(timeout=5)
        c = Customer(http, gw.url, "skip-" + uuid.uuid4().hex[:8])
        await c.say("转人工")
        await c.poll()
        hid = (await a.handoff_for(c.conversation_id))["handoff_id"]
        assert (await a.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        assert (await a.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
        await wait_until(c.poll, timeout=10)
        texts = await c.say("这个月电费多少")  # not a score: the bot answers the question
        assert texts and not any("感谢您的评价" in t for t in texts)
        async with gw.app[SESSIONMAKER]() as s:
            sat = (await s.execute(select(Satisfaction).where(Satisfaction.conversation_id == c.conversation_id))).scalar_one()
        assert sat.status == "skipped" and sat.score is None
        await ws.close()

    # most urgent first, then oldest: a hazard report jumps ahead of earlier plain requests
    first = Customer(http, gw.url, "ord1-" + uuid.uuid4().hex[:8])
    await first.say("转人工")
    second = Customer(http, gw.url, "ord2-" + uuid.uuid4().hex[:8])
    await second.say("转人工")
    hazard = Customer(http, gw.url, "ord3-" + uuid.uuid4().hex[:8])
    await gw.app[CORE].bind_account("3100000001", "rest", hazard.sender)
    await hazard.say("我家门口电线断了掉在地上还在冒火")
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        order = [q["conversation_id"] for q in await a.queue() if q["status"] == "waiting"]
    mine = [cid for cid in order if cid in {first.conversation_id, second.conversation_id, hazard.conversation_id}]
    assert mine == [hazard.conversation_id, first.conversation_id, second.conversation_id]


async def _online(a: AgentClient, names: set[str]) -> bool:
    status, body = await a.get("/console/api/queue")
    return names <= set(body["agents_online"])


async def test_racing_agents_one_wins(gw, http) -> None:
    """The exclusive take on this backend: of several simultaneous clicks exactly one wins."""
    async with AgentClient(gw.url) as a, AgentClient(gw.url) as b, AgentClient(gw.url) as s:
        await a.login("alice")
        await b.login("bob")
        await s.login("sue")
        for _ in range(3):
            c = Customer(http, gw.url, "race-" + uuid.uuid4().hex[:8])
            await c.say("转人工")
            hid = (await a.handoff_for(c.conversation_id))["handoff_id"]
            path = f"/console/api/handoffs/{hid}/take"
            results = await asyncio.gather(a.post(path), b.post(path), s.post(path), a.post(path))
            assert sorted(r[0] for r in results) == [200, 409, 409, 409], results
            winner = next(r[1]["agent"] for r in results if r[0] == 200)
            assert (await a.handoff_for(c.conversation_id))["agent"] == winner
            assert (await s.post(f"/console/api/handoffs/{hid}/close"))[0] == 200  # a supervisor may close any


async def test_customer_calls_off_a_waiting_request(gw, http) -> None:
    """"算了不用了" while still queued takes the customer out of the queue (a closed event for the
    agents' browsers); once an agent holds the conversation the same words go to the agent."""
    async with AgentClient(gw.url) as a:
        await a.login("alice")
        ws = await a.http.ws_connect(gw.url.replace("http", "ws") + "/console/ws")
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        c = Customer(http, gw.url, "off-" + uuid.uuid4().hex[:8])
        await c.say("我要转人工")
        hid = (await next_event(ws, "queued"))["handoff_id"]
        texts = await c.say("算了不用了，我自己查吧")
        assert any("取消人工排队" in t for t in texts)
        ev = await next_event(ws, "closed")
        assert ev["handoff_id"] == hid and ev["status"] == "released"
        assert await a.handoff_for(c.conversation_id) is None
        # back with the bot: the next question is answered, not queued
        assert any("户号" in t for t in await c.say("查电费"))

        await c.say("转人工")
        hid = (await next_event(ws, "queued"))["handoff_id"]
        assert (await a.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        texts = await c.say("算了不用了")
        assert not any("取消人工排队" in t for t in texts)
        assert (await a.handoff_for(c.conversation_id))["status"] == "assigned"
        await ws.close()
