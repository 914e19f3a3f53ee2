"""powerbot in front of a Rasa assistant (POWERBOT_DIALOGUE_BACKEND=rasa), end to end.

The real gateway and core run on loopback; the assistant is ``rasa_rest_server.FakeRasa``, which
speaks Rasa's REST channel as Rasa 3.6 does. Customers come through the web chat's REST channel
and through WeChat (played with real signatures by ``wechat_platform``); agents through the
console's HTTP API. Checked: Rasa decides every turn (powerbot's own NLU and flows stay out of
it), buttons become each channel's quick replies and a chosen one goes back to Rasa as its
payload, an image reaches the customer, a handoff Rasa asks for is worked in the console and the
agent's close gives the conversation back to Rasa, and Rasa down or slow gets the busy answer
now and Rasa's answer later through the outbox.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.app import SESSIONMAKER
from bot.dialogue.handoff import Handoff
from bot.models import OutboxMessage
from console_support import AgentClient, Customer, make_agent
from rasa_rest_server import FakeRasa, run_fake_rasa
from stack import run_gateway, wait_until
from wechat_platform import APPID, SECRET, TOKEN, WeChatPusher, new_openid, run_wechat_api, text_xml

pytestmark = pytest.mark.asyncio(loop_scope="module")

# utter_busy of training_data/domain.yml with the default brand: the answer while the core is down
BUSY = "系统繁忙，您的消息已收到并排队处理，恢复后我们会第一时间回复您。如遇停电、电线断落等紧急情况，请远离危险并拨打95598。"
CHOICES = [{"title": "查询电费", "payload": "/bill_query"}, {"title": "不用了", "payload": "/deny"}]
CHART = "https://rasa.example.com/charts/bill-2026-11.png"


def scripted() -> dict:
    """What the assistant answers (responses as a Rasa domain writes them)."""
    return {
        "你好": [{"text": "您好，我是 Rasa 助手。\n\n请问需要办理什么业务？"},
                 {"text": "请选择：", "buttons": CHOICES}],
        "/bill_query": [{"text": "这是您近期的电费走势："}, {"image": CHART},
                        {"custom": {"chart": "bill", "months": 6}}],
        "/deny": [{"text": "好的，有需要随时找我。"}],
        # what powerbot's own engine would take as an outage report: here Rasa answers it
        "我家停电了": [{"text": "Rasa 已记录您的停电情况。"}],
        "我要投诉": [{"text": "正在为您转接人工客服。"},
                     {"custom": {"handoff": True, "reason": "complaint_angry", "priority": "high",
                                 "summary": "客户要求投诉"}}],
        "我还有个问题": [{"text": "Rasa 又回来了，请讲。"}],
    }


@pytest_asyncio.fixture(loop_scope="module")
async def rasa() -> AsyncIterator[FakeRasa]:
    async with run_fake_rasa(script=scripted()) as r:
        yield r


@pytest_asyncio.fixture(loop_scope="module")
async def gw(core, interpreter, rasa, tmp_path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with run_wechat_api() as api:
        async with run_gateway(
            f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
            dialogue_backend="rasa", rasa_url=rasa.url, rasa_timeout_seconds=0.5, notify_enabled=False,
            wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET, wechat_api_base_url=api.url,
        ) as g:
            g.wechat = api
            yield g


async def say(http: aiohttp.ClientSession, gw, sender: str, text: str, **extra) -> list[dict]:  # type: ignore[no-untyped-def]
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text, **extra}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_web_chat_turns_are_decided_by_rasa_with_buttons_and_an_image(gw, rasa, http) -> None:
    sender = "web-" + uuid.uuid4().hex[:8]
    answer = await say(http, gw, sender, "你好")
    # Rasa's messages in Rasa's shape: the text split at the blank line, the buttons kept
    assert [m["text"] for m in answer] == ["您好，我是 Rasa 助手。", "请问需要办理什么业务？", "请选择："]
    assert answer[-1]["buttons"] == CHOICES
    assert all(m["recipient_id"] == sender for m in answer)
    first = rasa.requests[-1]
    assert first["sender"] == f"rest:{sender}" and first["message"] == "你好" and first["input_channel"] == "rest"
    assert first["metadata"]["powerbot"]["channel"] == "rest" and "handed_back" not in first["metadata"]["powerbot"]

    # the web chat sends a button's payload (and shows its title): Rasa gets the payload
    answer = await say(http, gw, sender, "/bill_query", metadata={"shown": "查询电费"})
    assert rasa.sent(f"rest:{sender}") == ["你好", "/bill_query"]
    assert answer[0]["text"] == "这是您近期的电费走势："
    image = [m for m in answer if (m.get("custom") or {}).get("image")]
    assert len(image) == 1 and image[0]["custom"]["image"] == CHART and image[0]["text"] == CHART
    custom = [m for m in answer if (m.get("custom") or {}).get("chart")]
    assert len(custom) == 1 and custom[0]["custom"]["months"] == 6

    # Rasa decides, not powerbot's NLU: an outage report gets Rasa's answer, no outage flow
    answer = await say(http, gw, sender, "我家停电了")
    assert [m["text"] for m in answer] == ["Rasa 已记录您的停电情况。"]
    # the transcript the page restores holds the button's title as the customer's line
    async with http.get(gw.url + "/webhooks/rest/transcript", params={"sender": sender}) as r:
        lines = [(m["sender"]["role"], m["text"]) for m in (await r.json())["messages"]]
    assert ("customer", "查询电费") in lines and ("bot", "Rasa 已记录您的停电情况。") in lines


async def test_wechat_lists_the_buttons_and_a_typed_title_goes_back_as_the_payload(gw, rasa, http) -> None:
    pusher = WeChatPusher(gw.url)
    openid = new_openid()
    got = await pusher.post(http, text_xml(openid, "你好"))
    assert got.status == 200 and got.text is not None
    # WeChat has no buttons in a passive reply: their titles are listed under the text
    assert "请选择：\n· 查询电费\n· 不用了" in got.text and got.text.startswith("您好，我是 Rasa 助手。")
    assert rasa.requests[-1]["input_channel"] == "wechat" and rasa.requests[-1]["sender"] == f"wechat:{openid}"

    # the customer types a title (as listed, with the list mark): Rasa gets that button's payload
    got = await pusher.post(http, text_xml(openid, "· 查询电费"))
    assert rasa.sent(f"wechat:{openid}") == ["你好", "/bill_query"]
    # the image arrives as its link; the custom payload meant for a web client is not shown
    assert got.text is not None and "这是您近期的电费走势：" in got.text and CHART in got.text
    assert got.text.count("\n\n") == 1 and "months" not in got.text and "{" not in got.text

    # no buttons on offer any more: the same words now go to Rasa as they are
    await pusher.post(http, text_xml(openid, "不用了"))
    assert rasa.sent(f"wechat:{openid}")[-1] == "不用了"


async def test_a_handoff_rasa_asks_for_is_worked_in_the_console_and_handed_back(gw, rasa, http) -> None:
    await make_agent(gw, "alice")
    async with AgentClient(gw.url) as agent:
        assert (await agent.login("alice")).status == 302
        c = Customer(http, gw.url, "ho-" + uuid.uuid4().hex[:8])
        texts = await c.say("我要投诉")
        await c.poll()  # the chat page starts polling (cursor after what it already has)
        assert texts[0] == "正在为您转接人工客服。"
        assert any("暂无人工客服在线" in t for t in texts[1:])  # the console's notice: nobody online
        item = await wait_until(lambda: agent.handoff_for(c.conversation_id), timeout=5)
        assert item["reason"] == "complaint_angry" and item["priority"] == "high" and item["status"] == "waiting"
        asked = len(rasa.sent(f"rest:{c.sender}"))

        # while handed off the customer's words go to the console, not to Rasa
        assert await c.say("还在吗") == ["您的消息已转给人工客服，请稍候。"]
        assert await c.say("快点处理") == []
        assert len(rasa.sent(f"rest:{c.sender}")) == asked
        hid = item["handoff_id"]
        status, conv = await agent.get(f"/console/api/handoffs/{hid}")
        assert status == 200
        said = [e["text"] for e in conv["events"] if e["kind"] == "customer"]
        assert said[-2:] == ["还在吗", "快点处理"]

        assert (await agent.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        assert await wait_until(c.poll, timeout=10) == ["人工客服alice已接入，正在为您服务。"]
        assert (await agent.post(f"/console/api/handoffs/{hid}/reply", {"text": "您好，我是客服alice，请讲。"}))[0] == 200
        assert await wait_until(c.poll, timeout=10) == ["您好，我是客服alice，请讲。"]

        # the agent's close: the satisfaction question, then Rasa decides again
        assert (await agent.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
        ask = await wait_until(c.poll, timeout=10)
        assert len(ask) == 1 and "1–5" in ask[0]
        assert len(await c.say("5")) == 1
        assert len(rasa.sent(f"rest:{c.sender}")) == asked  # the score is the console's
        assert await c.say("我还有个问题") == ["Rasa 又回来了，请讲。"]
        back = rasa.requests[-1]
        assert back["message"] == "我还有个问题" and back["metadata"]["powerbot"]["handed_back"] is True
        async with gw.app[SESSIONMAKER]() as s:
            h = (await s.execute(select(Handoff).where(Handoff.id == hid))).scalar_one()
        assert h.status == "released"
        # and once only: the next message is an ordinary one
        await c.say("你好")
        assert "handed_back" not in rasa.requests[-1]["metadata"]["powerbot"]


async def _delivered_later(gw, http, c: Customer) -> list[str]:  # type: ignore[no-untyped-def]
    """The customer's poll until something arrives (the recovery retries after its backoff)."""
    return await wait_until(c.poll, timeout=20, interval=0.25)


async def test_rasa_down_busy_now_rasas_answer_later(gw, rasa, http) -> None:
    c = Customer(http, gw.url, "down-" + uuid.uuid4().hex[:8])
    await rasa.stop()  # connection refused
    try:
        assert await c.say("我家停电了") == [BUSY]
    finally:
        await rasa.start()  # the same port again
    assert await _delivered_later(gw, http, c) == ["Rasa 已记录您的停电情况。"]
    assert rasa.sent(f"rest:{c.sender}") == ["我家停电了"]
    await asyncio.sleep(0.5)
    assert await c.poll() == []  # once
    async with gw.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(OutboxMessage.status).where(
            OutboxMessage.conversation_id == c.conversation_id))).scalars().all()
    assert rows and set(rows) == {"sent"}


async def test_rasa_slow_busy_now_rasas_answer_later(gw, rasa, http) -> None:
    c = Customer(http, gw.url, "slow-" + uuid.uuid4().hex[:8])
    rasa.delay = 1.0  # longer than POWERBOT_RASA_TIMEOUT_SECONDS (0.5 here)
    try:
        assert await c.say("我家停电了") == [BUSY]
    finally:
        rasa.delay = 0.0
    assert await _delivered_later(gw, http, c) == ["Rasa 已记录您的停电情况。"]
    # Rasa saw the message on the timed-out try and on the retry (a documented limit)
    assert rasa.sent(f"rest:{c.sender}") == ["我家停电了", "我家停电了"]

