"""WeChat end to end: a local WeChat (signing, encrypting, retrying, serving the server APIs)
talks to the real gateway, dialogue engine and core, in plaintext, compatible and safe modes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import CHANNELS, SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from channels.base import DeliveryError, Reply
from channels.wechat_store import WeChatWindow
from stack import run_gateway, wait_until
from wechat_platform import AES_KEY, APPID, SECRET, TOKEN, WeChatPusher, event_xml, image_xml, location_xml, new_openid, run_wechat_api, sign, text_xml, voice_xml

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wechat_api() -> AsyncIterator:
    async with run_wechat_api() as api:
        yield api


def wechat_settings(api, mode: str, **extra):  # type: ignore[no-untyped-def]
    kw = dict(wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET, wechat_api_base_url=api.url, **extra)
    if mode != "plain":
        kw["wechat_aes_key"] = AES_KEY
    return kw


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["plain", "safe", "compat"])
async def gateway(request, core, wechat_api, interpreter, tmp_path_factory) -> AsyncIterator:
    db = tmp_path_factory.mktemp(f"wx_gw_{request.param}") / "bot.db"
    async with run_gateway(
        f"sqlite+aiosqlite:///{db}", core.url, interpreter, **wechat_settings(wechat_api, request.param)
    ) as gw:
        gw.mode = request.param  # type: ignore[attr-defined]
        yield gw


async def count(gw, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_url_verification(gateway, http) -> None:
    ts, nonce = str(int(time.time())), "n0nce"
    params = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "8245762937592"}
    async with http.get(gateway.url + "/channels/wechat", params=params) as r:
        assert r.status == 200 and await r.text() == "8245762937592"
    params["signature"] = sign("not-the-token", ts, nonce)
    async with http.get(gateway.url + "/channels/wechat", params=params) as r:
        assert r.status == 403
        assert "8245762937592" not in await r.text()


async def test_conversation_passive_replies(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    oid = new_openid()
    welcome = await p.post(http, event_xml(oid, "subscribe"))
    assert welcome.status == 200 and "欢迎关注" in welcome.text
    assert "户号" in welcome.text  # bind prompt

    bill = await p.post(http, text_xml(oid, "查电费"))
    assert bill.status == 200 and bill.text
    voice = await p.post(http, voice_xml(oid, "转人工"))
    assert voice.status == 200 and voice.text
    image = await p.post(http, image_xml(oid))
    assert "图片" in image.text
    view = await p.post(http, event_xml(oid, "VIEW", "https://www.95598.cn/"))
    assert view.text is None and view.body == "success"

    async with gateway.app[SESSIONMAKER]() as s:
        rows = (await s.execute(
            select(InboundMessage).where(InboundMessage.sender_id == oid).order_by(InboundMessage.id)
        )).scalars().all()
    assert [(r.kind, r.text) for r in rows] == [("event", "绑定户号"), ("text", "查电费"), ("voice", "转人工")]
    # Passive answers are marked delivered (with a later grouped write, within a fraction of a
    # second): their rows are done, and the outbox never sends them a second time through the
    # customer-service API (one process holds them on the inbound row: no outbox row at all).
    answered = OutboxMessage.recipient_id == oid
    unmarked = (OutboxMessage.provider_id.is_(None)) | (OutboxMessage.provider_id != "inline")
    open_rows = (InboundMessage.sender_id == oid, InboundMessage.status != "done")
    for _ in range(100):
        if await count(gateway, OutboxMessage, answered, unmarked) == 0 and await count(gateway, InboundMessage, *open_rows) == 0:
            break
        await asyncio.sleep(0.05)
    assert await count(gateway, InboundMessage, *open_rows) == 0
    assert await count(gateway, OutboxMessage, answered, unmarked) == 0
    assert await count(gateway, OutboxMessage, answered, OutboxMessage.status != "sent") == 0


async def test_location_looks_up_outages_nearby(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    oid = new_openid()
    # The seeded core has an active fault on 碧波路 in 浦东新区.
    ans = await p.post(http, location_xml(oid, 31.2053, 121.5905, "上海市浦东新区张江镇碧波路88弄"))
    assert ans.status == 200 and ans.text
    async with gateway.app[SESSIONMAKER]() as s:
        row = (await s.execute(select(InboundMessage).where(InboundMessage.sender_id == oid))).scalar_one()
    assert row.kind == "location"
    assert row.payload["location"]["label"] == "上海市浦东新区张江镇碧波路88弄"
    assert abs(row.payload["location"]["lat"] - 31.2053) < 1e-9
    assert "碧波路" in ans.text


async def test_menu_click_maps_to_intent(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    oid = new_openid()
    ans = await p.post(http, event_xml(oid, "CLICK", "REPAIR"))
    assert ans.status == 200 and ans.text
    unknown = await p.post(http, event_xml(oid, "CLICK", "NO_SUCH_KEY", create_time=int(time.time()) + 1))
    assert "菜单" in unknown.text
    async with gateway.app[SESSIONMAKER]() as s:
        rows = (await s.execute(select(InboundMessage).where(InboundMessage.sender_id == oid))).scalars().all()
    assert [(r.kind, r.text, r.payload.get("key")) for r in rows] == [("event", "我要报修", "REPAIR")]
    # A click opens the 1-minute grant of 3 customer-service messages.
    async with gateway.app[SESSIONMAKER]() as s:
        w = await s.get(WeChatWindow, oid)
    assert w.evt_left == 3


async def test_retried_message_processed_once(gateway, wechat_api, http) -> None:
    """WeChat posts the same MsgId again while the first is in flight: one row, one answer."""
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    oid = new_openid()
    xml = text_xml(oid, "你好")
    params, body = p.build(xml)
    results = await asyncio.gather(*(p.post_raw(http, params, body) for _ in range(4)))
    assert all(status == 200 for status, _ in results)
    answered = [b for _, b in results if b not in ("", "success")]
    assert len(answered) <= 1
    assert await count(gateway, InboundMessage, InboundMessage.sender_id == oid) == 1
    if answered:  # the first delivery answered passively; nothing else goes out
        await asyncio.sleep(0.5)
        assert await count(gateway, OutboxMessage, OutboxMessage.recipient_id == oid,
                           OutboxMessage.provider_id != "inline") == 0
        assert await count(gateway, InboundMessage, InboundMessage.sender_id == oid,
                           InboundMessage.status == "done") == 1  # the answer was marked
        assert p.read(200, answered[0]).text
    else:  # a very slow box: the answer went through the customer-service API, once
        await wait_until(lambda: wechat_api.texts_to(oid), timeout=15)
        assert await count(gateway, OutboxMessage, OutboxMessage.recipient_id == oid) >= 1


async def test_unsubscribe_closes_window(gateway, http) -> None:
    p = WeChatPusher(gateway.url, mode=gateway.mode)
    oid = new_openid()
    await p.post(http, text_xml(oid, "你好"))
    ch = gateway.app[CHANNELS]["wechat"]
    assert await ch.window_open(oid)
    ans = await p.post(http, event_xml(oid, "unsubscribe"))
    assert ans.body == "success"
    assert not await ch.window_open(oid)
    assert await count(gateway, InboundMessage, InboundMessage.sender_id == oid) == 1


# ---------------------------------------------------------------------------- slow answers
@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_slow_answer_goes_through_customer_service_api(mode, core, wechat_api, interpreter, tmp_path, http) -> None:
    """No passive answer within the wait: `success` at once, WeChat retries, and the reply
    arrives exactly once through 客服消息 with a valid access token."""
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter,
        **wechat_settings(wechat_api, mode, wechat_reply_wait_seconds=0.0),
    ) as gw:
        p = WeChatPusher(gw.url, mode=mode)
        oid = new_openid()
        xml = text_xml(oid, "查电费")
        first = await p.post(http, xml)
        assert first.body == "success"
        for _ in range(3):  # WeChat's retries of the same MsgId
            again = await p.post(http, xml)
            assert again.body == "success"
        texts = await wait_until(lambda: wechat_api.texts_to(oid), timeout=15)
        await asyncio.sleep(1.0)
        assert len(wechat_api.texts_to(oid)) == len(texts) >= 1
        assert await count(gw, InboundMessage, InboundMessage.sender_id == oid) == 1
        n_replies = await count(gw, OutboxMessage, OutboxMessage.recipient_id == oid)
        assert n_replies == len(texts)
        assert await count(gw, OutboxMessage, OutboxMessage.recipient_id == oid, OutboxMessage.status == "sent") == n_replies
        assert not [r for r in wechat_api.refusals if r["path"].endswith("custom/send")]
        # The subscribe welcome still answers passively; the dialogue's part follows.
        oid2 = new_openid()
        welcome = await p.post(http, event_xml(oid2, "subscribe"))
        assert "欢迎关注" in welcome.text
        await wait_until(lambda: wechat_api.texts_to(oid2), timeout=15)


async def test_token_refreshed_once_on_40001(core, wechat_api, interpreter, tmp_path, http) -> None:
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, **wechat_settings(wechat_api, "plain")
    ) as gw:
        ch = gw.app[CHANNELS]["wechat"]
        p = WeChatPusher(gw.url, mode="plain")
        oid = new_openid()
        await p.post(http, text_xml(oid, "你好"))
        before = wechat_api.token_requests
        assert await ch.send(Reply(channel="wechat", recipient_id=oid, text="第一条"))
        # The token is cached (database): a second send does not fetch another one.
        assert await ch.send(Reply(channel="wechat", recipient_id=oid, text="第二条"))
        assert wechat_api.token_requests <= before + 1
        issued = wechat_api.token_requests
        wechat_api.revoke_all()  # e.g. someone else fetched a token: ours is now invalid
        assert await ch.send(Reply(channel="wechat", recipient_id=oid, text="第三条"))
        assert wechat_api.token_requests == issued + 1
        assert wechat_api.texts_to(oid)[-3:] == ["第一条", "第二条", "第三条"]
        # The refreshed token is shared through the cache: a new API object reuses it.
        from channels.wechat_api import WeChatAPI

        other = WeChatAPI(appid=APPID, secret=SECRET, base_url=wechat_api.url, cache=ch._cache, http=http)
        assert await other.access_token() == wechat_api.tokens_issued[-1]
        assert wechat_api.token_requests == issued + 1


async def test_window_ledger_refuses_and_template_fallback(core, wechat_api, interpreter, tmp_path, http) -> None:
    async with run_gateway(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, **wechat_settings(wechat_api, "safe")
    ) as gw:
        ch = gw.app[CHANNELS]["wechat"]
        p = WeChatPusher(gw.url, mode="safe")
        stranger = new_openid()
        sent_before = len(wechat_api.custom)
        with pytest.raises(DeliveryError) as err:
            await ch.send(Reply(channel="wechat", recipient_id=stranger, text="通知"))
        assert err.value.code == "45015" and not err.value.retryable
        assert len(wechat_api.custom) == sent_before  # refused without calling WeChat
        assert not await ch.window_open(stranger)

        oid = new_openid()
        await p.post(http, text_xml(oid, "你好"))
        assert await ch.window_open(oid)
        for i in range(5):
            await ch.send(Reply(channel="wechat", recipient_id=oid, text=f"消息{i}"))
        with pytest.raises(DeliveryError) as err:
            await ch.send(Reply(channel="wechat", recipient_id=oid, text="第六条"))
        assert err.value.code == "45047" and not err.value.retryable
        assert wechat_api.texts_to(oid) == [f"消息{i}" for i in range(5)]
        assert not await ch.window_open(oid)

        # WeChat itself says the window is closed: believed, not retried.
        oid3 = new_openid()
        await p.post(http, text_xml(oid3, "你好"))
        wechat_api.next_errcodes.append(45015)
        with pytest.raises(DeliveryError) as err:
            await ch.send(Reply(channel="wechat", recipient_id=oid3, text="x"))
        assert err.value.code == "45015" and not err.value.retryable
        assert not await ch.window_open(oid3)

        # Template messages do not need the window (the notification fallback).
        msgid = await ch.send_template(stranger, "TPL_OUTAGE", {"first": "计划停电通知", "keyword1": "11月30日"}, url="https://x/y")
        assert msgid
        tpl = wechat_api.templates[-1]
        assert tpl["touser"] == stranger and tpl["template_id"] == "TPL_OUTAGE"
        assert tpl["data"]["keyword1"] == {"value": "11月30日"} and tpl["url"] == "https://x/y"
        via_reply = await ch.send(Reply(channel="wechat", recipient_id=stranger, text="电费提醒", kind="notice",
                                        metadata={"template_id": "TPL_BILL"}))
        assert via_reply and wechat_api.templates[-1]["data"] == {"content": {"value": "电费提醒"}}


async def test_postgres_store_and_redis_token_cache(core, wechat_api, interpreter, postgres_url, redis_url, http) -> None:
    """Scale-out variant: PostgreSQL bot store, access token shared through Redis."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    key = f"wechat:access_token:{APPID}"
    await r.delete(key)
    try:
        async with run_gateway(
            postgres_url, core.url, interpreter,
            **wechat_settings(wechat_api, "safe", wechat_reply_wait_seconds=0.0, redis_url=redis_url),
        ) as gw:
            p = WeChatPusher(gw.url, mode="safe")
            oid = new_openid()
            xml = text_xml(oid, "查电费")
            params, body = p.build(xml)
            results = await asyncio.gather(*(p.post_raw(http, params, body) for _ in range(4)))
            assert [s for s, _ in results] == [200] * 4 and {b for _, b in results} == {"success"}
            texts = await wait_until(lambda: wechat_api.texts_to(oid), timeout=15)
            await asyncio.sleep(1.0)
            assert len(wechat_api.texts_to(oid)) == len(texts)
            assert await count(gw, InboundMessage, InboundMessage.sender_id == oid) == 1
            cached = await r.get(key)
            assert cached and wechat_api.tokens_issued[-1].encode() in cached
            ch = gw.app[CHANNELS]["wechat"]
            assert await ch.window_open(oid)
            async with gw.app[SESSIONMAKER]() as s:
                w = await s.get(WeChatWindow, oid)
            assert w.msg_left == 5 - len(texts)
    finally:
        await r.delete(key)
        await r.aclose()
