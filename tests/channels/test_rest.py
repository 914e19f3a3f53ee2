"""The gateway's own surface: health/readiness, the Rasa-shaped REST channel, the chat page."""

from __future__ import annotations

import aiohttp
import pytest_asyncio

from bot import outbox
from bot.app import CORE, OUTBOX, SESSIONMAKER
from channels.base import Reply
from stack import run_core, run_gateway, wait_until


@pytest_asyncio.fixture
async def stack(tmp_path, interpreter):  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path) as gw:
            async with aiohttp.ClientSession() as http:
                yield core, gw, http


async def test_health_and_readiness_report_channels(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get(gw.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 200 and body["ready"] is True
    assert body["checks"] == {"database": "ok", "core": "ok"}
    assert body["channels"]["rest"] == {"on": True}
    assert body["channels"]["wechat"] == {"on": False} and body["channels"]["sms"] == {"on": False}


async def test_not_ready_when_core_is_down(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    await core.runner.cleanup()  # the core goes away; the gateway stays up
    async with http.get(gw.url + "/readyz") as r:
        body = await r.json()
    assert r.status == 503 and body["ready"] is False
    assert body["checks"]["database"] == "ok" and body["checks"]["core"].startswith("error")
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200


async def test_rest_webhook_shape_and_bad_input(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    url = gw.url + "/webhooks/rest/webhook"
    async with http.post(url, json={"sender": "shape-1", "message": "你好"}) as r:
        body = await r.json()
    assert r.status == 200 and isinstance(body, list) and body
    assert body[0]["recipient_id"] == "shape-1" and body[0]["text"]
    for bad in (b"{not json", b"[1,2]", b'{"sender": "", "message": "x"}', b'{"sender": "a", "message": 5}'):
        async with http.post(url, data=bad, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert "reason" in await r.json()
    # A replayed message id is processed once: the retry gets no second answer.
    payload = {"sender": "shape-2", "message": "你好", "message_id": "fixed-1"}
    async with http.post(url, json=payload) as r:
        assert await r.json()
    async with http.post(url, json=payload) as r:
        assert await r.json() == []


async def test_chat_page_is_served_locally(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    async with http.get(gw.url + "/chat") as r:
        html = await r.text()
    assert r.status == 200 and "/webhooks/rest/webhook" in html
    assert "http://" not in html and "https://" not in html  # no CDN


async def test_poll_delivers_a_reply_queued_before_the_first_poll(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    sender = "poll-1"
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        await outbox.enqueue(s, Reply(channel="rest", recipient_id=sender, text="客服回复：已为您处理"), delay=1.0)
    async with http.get(gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": "0"}) as r:
        first = await r.json()
    assert first["messages"] == []

    async def delivered():  # type: ignore[no-untyped-def]
        async with http.get(
            gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": str(first["cursor"])}
        ) as r:
            return (await r.json())["messages"]

    got = await wait_until(delivered, timeout=10)
    assert [m["text"] for m in got] == ["客服回复：已为您处理"]
    assert gw.app[OUTBOX] is not None and gw.app[CORE] is not None


# --------------------------------------------------------------------------- the web chat's API
async def _say(http, gw, sender: str, text: str, **extra):  # type: ignore[no-untyped-def]
    async with http.post(gw.url + "/webhooks/rest/webhook", json={"sender": sender, "message": text, **extra}) as r:
        assert r.status == 200, await r.text()
        return await r.json(), r.headers


async def _transcript(http, gw, sender: str):  # type: ignore[no-untyped-def]
    async with http.get(gw.url + "/webhooks/rest/transcript", params={"sender": sender}) as r:
        assert r.status == 200
        return await r.json()


async def test_replies_say_who_is_talking_bill_figures_score_buttons_and_transcript(stack) -> None:  # type: ignore[no-untyped-def]
    from bot.app import CORE
    from console_support import AgentClient, make_agent

    core, gw, http = stack
    sender = "who-1"
    await gw.app[CORE].bind_account("3100000001", "rest", sender)
    body, _ = await _say(http, gw, sender, "/bill_query", metadata={"shown": "查电费"})
    assert body and all(m["sender"] == {"role": "bot", "name": "小e"} for m in body)
    bill = next(m["custom"]["bill"] for m in body if "bill" in m.get("custom", {}))
    assert bill["account"].startswith("31") and "*" in bill["account"]  # masked as in the text
    assert bill["month"][:2] == "20" and float(bill["amount"]) > 0 and float(bill["owed"]) > 0
    assert {"kwh", "paid", "balance", "due", "status"} <= set(bill)

    body, _ = await _say(http, gw, sender, "转人工")
    offer = [m for m in body if m.get("custom", {}).get("callback_offer")]
    assert offer and offer[0]["buttons"] == [{"title": "回电", "payload": "回电"}]  # nobody online

    await make_agent(gw, "李娜")
    async with AgentClient(gw.url) as agent:
        assert (await agent.login("李娜")).status == 302
        hid = (await agent.handoff_for(f"rest:{sender}"))["handoff_id"]
        assert (await agent.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        after = (await _transcript(http, gw, sender))["cursor"]  # where a page opened now goes on
        assert (await agent.post(f"/console/api/handoffs/{hid}/reply", {"text": "您好，我是客服李娜。"}))[0] == 200

        async def polled():  # type: ignore[no-untyped-def]
            nonlocal after
            async with http.get(gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": str(after)}) as r:
                got = await r.json()
            after = got["cursor"]
            return got["messages"]

        msgs = await wait_until(polled, timeout=10)
        assert msgs[0]["text"] == "您好，我是客服李娜。" and msgs[0]["sender"] == {"role": "agent", "name": "李娜"}
        assert (await agent.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
        msgs = await wait_until(polled, timeout=10)
        ask = msgs[0]
        assert ask["sender"]["role"] == "bot" and ask["custom"]["csat"] is True
        assert [b["payload"] for b in ask["buttons"]] == ["1", "2", "3", "4", "5"]
    body, _ = await _say(http, gw, sender, "5", metadata={"shown": "5 非常满意"})
    assert any("5" in m["text"] for m in body)

    # the transcript: what the customer wrote (as shown) and every reply, in order, once
    t = await _transcript(http, gw, sender)
    lines = [(m["sender"]["role"], m["text"]) for m in t["messages"]]
    roles = [r for r, _ in lines]
    assert lines[0] == ("customer", "查电费") and ("customer", "5 非常满意") in lines
    assert lines.count(("agent", "您好，我是客服李娜。")) == 1 and roles.index("agent") < len(roles) - 3
    assert sum(1 for m in t["messages"] if m.get("custom", {}).get("csat")) == 1
    assert t["cursor"] >= after
    async with http.get(gw.url + "/webhooks/rest/messages", params={"sender": sender, "after": str(t["cursor"])}) as r:
        assert (await r.json())["messages"] == []  # a restored page is shown nothing again
    async with http.get(gw.url + "/webhooks/rest/transcript", params={"sender": ""}) as r:
        assert r.status == 400


async def test_webhook_gives_up_within_two_seconds_when_the_core_is_down(stack) -> None:  # type: ignore[no-untyped-def]
    import time

    core, gw, http = stack
    assert gw.settings.rest_reply_wait_seconds == 2.0
    await core.runner.cleanup()
    ask, _ = await _say(http, gw, "down-1", "查电费")
    assert ask and "户号" in ask[0]["text"]  # asking for the account needs no core
    first, _ = await _say(http, gw, "down-1", "3100000001")
    assert first and "繁忙" in first[0]["text"]  # reading it does: the busy answer, at once
    t0 = time.monotonic()
    second, headers = await _say(http, gw, "down-1", "停电了吗")  # waits behind the postponed message
    took = time.monotonic() - t0
    assert second == [] and headers.get("X-Reply-Pending") == "1" and 1.5 <= took < 4.0, took


async def test_chat_page_brand_colour_and_texts_from_settings(tmp_path, interpreter) -> None:  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core:
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
                               chat_primary_color="#c8102e", brand_short_name="南网", assistant_name="小南") as gw:
            async with aiohttp.ClientSession() as http, http.get(gw.url + "/chat") as r:
                page = await r.text()
    assert "--brand: #c8102e" in page and "南网 95598 智能客服" in page and "\"assistant\": \"小南\"" in page
    assert "国网" not in page and "小e" not in page and "powerbot" not in page.lower().replace("powerbot-", "")


async def test_transcript_log_keeps_each_senders_entries_in_order_on_both_stores(sessionmaker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from common.clock import utcnow
    from channels.rest import TranscriptLog, purge_transcripts

    log = TranscriptLog(lambda: sessionmaker, 30)
    for i in range(3):
        await log.add("a", [{"text": f"a{i}"}, {"text": f"a{i}-reply"}])
        log.add("a:b", [{"text": f"ab{i}"}])  # a sender whose id extends another's
    await log.flush()
    assert [e["text"] for e in await log.read("a")] == ["a0", "a0-reply", "a1", "a1-reply", "a2", "a2-reply"]
    assert [e["text"] for e in await log.read("a:b")] == ["ab0", "ab1", "ab2"]
    assert [e["text"] for e in await log.read("a", limit=2)] == ["a2", "a2-reply"]  # the newest, oldest first
    engine = sessionmaker.kw["bind"]
    assert await purge_transcripts(engine, utcnow(), 100, True) == 0
    later = TranscriptLog(lambda: sessionmaker, 0)  # retention 0: kept forever
    await later.add("a", [{"text": "kept"}])
    import channels.rest as rest

    monkeypatch.setattr(rest, "utcnow", lambda: utcnow() + timedelta(days=31))  # a month on
    assert await purge_transcripts(engine, rest.utcnow(), 2, False) == 9  # in batches of 2
    assert [e["text"] for e in await log.read("a")] == ["kept"] and await log.read("a:b") == []
