"""Alipay service window end to end: the tests play Alipay (own RSA keys, GBK posts, gateway).

Real core, real gateway, real NLU and dialogue engine; nothing of ours is mocked. Alipay posts
signed messages to ``/channels/alipay``, gets a signed ``ack`` at once, and the bot's answer
arrives later at the fake open gateway through ``alipay.open.public.message.custom.send``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.app import CHANNELS, SESSIONMAKER
from bot.models import InboundMessage, OutboxMessage
from bot.settings import Settings
from channels.alipay_sdk import AlipayKeyError
from channels.base import ChannelContext, DeliveryError, Reply
from stack import Gateway, run_core, run_gateway, wait_until
from alipay_platform import FakeAlipay, KeyPair, run_fake_alipay

pytestmark = pytest.mark.asyncio(loop_scope="module")

APPID = "2021000000000001"
NOTIFY = "alipay.mobile.public.message.notify"


@dataclass
class Env:
    gw: Gateway
    fake: FakeAlipay
    app_keys: KeyPair
    http: aiohttp.ClientSession

    async def post(self, body: bytes, charset: str = "GBK") -> aiohttp.ClientResponse:
        r = await self.http.post(
            self.gw.url + "/channels/alipay", data=body,
            headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
        )
        await r.read()
        return r

    async def inbound(self, sender: str) -> list[InboundMessage]:
        async with self.gw.app[SESSIONMAKER]() as s:
            return list((await s.execute(
                select(InboundMessage).where(InboundMessage.channel == "alipay", InboundMessage.sender_id == sender)
                .order_by(InboundMessage.id)
            )).scalars())

    def sent_to(self, user: str) -> list[dict]:
        return [m for m in self.fake.sent if m["to_user_id"] == user]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(interpreter, tmp_path_factory) -> AsyncIterator[Env]:
    d: Path = tmp_path_factory.mktemp("alipay_channel")
    app_keys = KeyPair.generate()
    async with run_fake_alipay(APPID, app_keys.public_pem) as fake, \
            run_core(f"sqlite+aiosqlite:///{d / 'core.db'}") as core, \
            run_gateway(f"sqlite+aiosqlite:///{d / 'bot.db'}", core.url, interpreter, data_dir=d,
                        alipay_appid=APPID, alipay_app_private_key=app_keys.private_pem,
                        alipay_public_key=fake.keys.public_b64,  # bare base64 as the console shows it
                        alipay_gateway_url=fake.gateway_url) as gw, \
            aiohttp.ClientSession() as http:
        yield Env(gw=gw, fake=fake, app_keys=app_keys, http=http)


def user() -> str:
    return "2088" + str(uuid.uuid4().int)[:12]


def check_ack(env: Env, body: bytes, to_user: str, charset: str = "gbk") -> None:
    inner = env.fake.verify_answer(body, charset)
    assert "<MsgType><![CDATA[ack]]></MsgType>" in inner
    assert f"<ToUserId><![CDATA[{to_user}]]></ToUserId>" in inner
    assert f"<AppId><![CDATA[{APPID}]]></AppId>" in inner


async def test_readyz_lists_alipay_on_and_channel_off_without_settings(env: Env) -> None:
    r = await env.http.get(env.gw.url + "/readyz")
    channels = (await r.json())["channels"]
    assert channels["alipay"]["on"] is True
    assert "PRIVATE" not in await r.text()
    from channels.alipay import from_context

    ctx = ChannelContext(settings=Settings(), processor=None, sessionmaker=None, http=None, core=None)  # type: ignore[arg-type]
    assert from_context(ctx) is None
    assert "payments" not in ctx.extras
    ctx = ChannelContext(settings=Settings(alipay_appid=APPID, alipay_public_key=env.fake.keys.public_b64),  # type: ignore[arg-type]
                         processor=None, sessionmaker=None, http=None, core=None)
    assert from_context(ctx) is None  # the app private key missing → off
    ctx = ChannelContext(settings=Settings(alipay_appid=APPID, alipay_public_key="bm90IGEga2V5",  # type: ignore[arg-type]
                                           alipay_app_private_key=env.app_keys.private_pem),
                         processor=None, sessionmaker=None, http=None, core=None)
    with pytest.raises(AlipayKeyError) as err:  # a broken key is a loud startup error, not a silent "off"
        from_context(ctx)
    assert "bm90IGEga2V5" not in str(err.value) and "PRIVATE" not in str(err.value)


async def test_gateway_check_answers_signed_xml_with_our_public_key(env: Env) -> None:
    xml = (f"<XML><AppId><![CDATA[{APPID}]]></AppId><CreateTime>{int(time.time() * 1000)}</CreateTime>"
           "<MsgType><![CDATA[event]]></MsgType><EventType><![CDATA[verifygw]]></EventType></XML>")
    r = await env.post(env.fake.gateway_form("alipay.service.check", xml))
    assert r.status == 200
    inner = env.fake.verify_answer(await r.read(), "gbk")
    assert "<success>true</success>" in inner
    assert f"<biz_content>{env.app_keys.public_b64}</biz_content>" in inner


async def test_gbk_text_message_acked_and_answered_through_custom_send(env: Env) -> None:
    u = user()
    text = "你好，我想查询一下电费怎么交？"
    r = await env.post(env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, text=text), charset="GBK"))
    assert r.status == 200
    check_ack(env, await r.read(), u)
    rows = await env.inbound(u)
    assert [x.text for x in rows] == [text]  # Chinese decoded from GBK, signature verified in GBK
    sent = await wait_until(lambda: env.sent_to(u), timeout=20)
    assert sent[0]["msg_type"] == "text" and sent[0]["chat"] == "1"
    assert sent[0]["text"]["content"].strip()
    assert env.fake.rejected == []  # our custom.send requests carried a valid RSA2 signature


async def test_utf8_message_also_accepted(env: Env) -> None:
    u = user()
    r = await env.post(env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, text="停电了吗"), charset="UTF-8"),
                       charset="UTF-8")
    assert r.status == 200
    check_ack(env, await r.read(), u, "utf-8")
    assert [x.text for x in await env.inbound(u)] == ["停电了吗"]


async def test_retried_and_concurrent_notifies_processed_once(env: Env) -> None:
    u = user()
    body = env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, text="查电费", msg_id="MSG" + uuid.uuid4().hex))
    results = await asyncio.gather(*(env.post(body) for _ in range(5)))
    assert [r.status for r in results] == [200] * 5
    r = await env.post(body)  # a later retry
    assert r.status == 200
    assert len(await env.inbound(u)) == 1
    await wait_until(lambda: env.sent_to(u), timeout=20)
    async with env.gw.app[SESSIONMAKER]() as s:
        queued = (await s.execute(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.channel == "alipay", OutboxMessage.recipient_id == u))).scalar_one()
    await wait_until(lambda: len(env.sent_to(u)) == queued, timeout=20)
    await asyncio.sleep(0.5)
    assert len(env.sent_to(u)) == queued  # nothing sent twice


async def test_follow_menu_click_media_and_unfollow(env: Env) -> None:
    # the channel's own texts (training_data/domain.yml, default brand settings)
    WELCOME = ("您好，欢迎关注国网电力客服生活号！我是智能客服小e，可以帮您查电费、交电费、查停电、报修和转人工。"
               "为方便查询，请先绑定户号。")
    MEDIA_TEXT = ("收到您的消息，谢谢！目前智能客服只能识别文字，请用文字简单描述您的问题，"
                  "例如“查电费”“我家停电了”“电表坏了要报修”。如需人工帮助，请回复“转人工”。")
    MENU_UNKNOWN_TEXT = "该菜单功能正在升级中，您可以直接输入问题，例如“查电费”“我要报修”。"

    u = user()
    ct = int(time.time() * 1000)
    follow = env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, event="follow", create_time=ct))
    for _ in range(2):  # retried event: deduped by sender + CreateTime
        r = await env.post(follow)
        assert r.status == 200
        check_ack(env, await r.read(), u)
    click = env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, event="click", action="BILL", create_time=ct + 1))
    assert (await env.post(click)).status == 200
    unknown = env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, event="click", action="NOPE", create_time=ct + 2))
    assert (await env.post(unknown)).status == 200
    image = ("<XML><AppId><![CDATA[%s]]></AppId><FromUserId><![CDATA[%s]]></FromUserId><CreateTime>%d</CreateTime>"
             "<MsgType><![CDATA[image]]></MsgType><MsgId>IMG%d</MsgId></XML>") % (APPID, u, ct + 3, ct)
    for _ in range(2):
        assert (await env.post(env.fake.gateway_form(NOTIFY, image))).status == 200
    for n, event in enumerate(("enter", "unfollow")):
        xml = env.fake.message_xml(u, event=event, create_time=ct + 10 + n)
        assert (await env.post(env.fake.gateway_form(NOTIFY, xml))).status == 200
    rows = await env.inbound(u)
    assert [(x.kind, x.text, x.payload.get("event"), x.payload.get("key")) for x in rows] == [
        ("event", "绑定户号", "subscribe", None), ("event", "查电费", "CLICK", "BILL")]

    def texts() -> list[str]:
        return [m["text"]["content"] for m in env.sent_to(u)]

    await wait_until(lambda: WELCOME in texts() and MENU_UNKNOWN_TEXT in texts() and MEDIA_TEXT in texts(), timeout=20)
    await asyncio.sleep(0.6)
    assert texts().count(WELCOME) == 1 and texts().count(MEDIA_TEXT) == 1


async def test_hostile_gateway_posts_refused_without_side_effect(env: Env) -> None:
    u = user()
    xml = env.fake.message_xml(u, text="你好")
    other = KeyPair.generate()
    cases: list[tuple[bytes, int]] = [
        (env.fake.gateway_form(NOTIFY, xml, keys=other), 403),  # forged signature
        (env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, text="你好", appid="2021999999999999")), 403),
        (env.fake.gateway_form(NOTIFY, xml).replace(b"sign=", b"sign=AAAA"), 403),  # garbled signature
        (env.fake.gateway_form(NOTIFY, env.fake.message_xml(u, text="hello")).replace(
            b"charset=GBK", b"charset=UTF-8"), 403),  # charset swapped after signing
        (env.fake.gateway_form(NOTIFY, '<?xml version="1.0"?><!DOCTYPE XML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                       f'<XML><FromUserId>{u}</FromUserId><MsgType>text</MsgType><Text><Content>&x;</Content></Text></XML>'), 400),
        (env.fake.gateway_form(NOTIFY, '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                                       f'<XML><FromUserId>{u}</FromUserId><MsgType>text</MsgType><Text><Content>&b;</Content></Text></XML>'), 400),
        (env.fake.gateway_form(NOTIFY, f"<XML><FromUserId>{u}</FromUserId><MsgType>text"), 400),  # malformed
        (env.fake.gateway_form("alipay.unknown.service", xml), 400),
        (b"service=" + NOTIFY.encode() + b"&biz_content=x", 400),  # unsigned
        (b"x=" + b"a" * (1_048_576 + 10), 413),  # over 1 MB
    ]
    for body, status in cases:
        r = await env.post(body)
        assert r.status == status, (status, body[:80])
    # sign_type other than RSA2, signed correctly over its own string
    r = await env.post(env.fake.gateway_form(NOTIFY, xml).replace(b"sign_type=RSA2", b"sign_type=RSA"))
    assert r.status in (400, 403)
    await asyncio.sleep(0.3)
    assert await env.inbound(u) == []
    assert env.sent_to(u) == []


async def test_send_business_failure_is_a_permanent_delivery_error(env: Env) -> None:
    channel = env.gw.app[CHANNELS]["alipay"]
    env.fake.fail_send_with = "40004"
    try:
        with pytest.raises(DeliveryError) as err:
            await channel.send(Reply(channel="alipay", recipient_id="2088000000000001", text="测试"))
        assert err.value.retryable is False
    finally:
        env.fake.fail_send_with = None
    assert await channel.send(Reply(channel="alipay", recipient_id="2088000000000001", text="测试")) is not None
    with pytest.raises(DeliveryError):
        await channel.send(Reply(channel="alipay", recipient_id="not an id!", text="x"))
