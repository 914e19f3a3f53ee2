"""Property: whatever arrives at a public endpoint — arbitrary Unicode (lone surrogates,
controls), huge and deeply nested JSON, broken encodings, signed or not — gets no 5xx;
a refused request stores nothing; and customers writing at the same moment all have their
messages stored and answered. Every platform is played with its real signatures.

One gateway with every channel on, per store (SQLite, PostgreSQL); Hypothesis draws the input.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app import SESSIONMAKER
from bot.models import InboundMessage
from sms_platform import API_KEY, SECRET as SMS_SECRET, hmac_hex, run_provider
from stack import Gateway, run_core, run_gateway
from alipay_platform import FakeAlipay, KeyPair, run_fake_alipay
from wechat_platform import APPID as WX_APPID, SECRET as WX_SECRET, TOKEN as WX_TOKEN
from wechat_platform import WeChatPusher, run_wechat_api, text_xml

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALIPAY_APPID = "2021000000000001"
OPERATOR = "operator-token-for-tests"
EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclass
class Env:
    gw: Gateway
    alipay: FakeAlipay
    http: aiohttp.ClientSession

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
        async with self.http.request(method, self.gw.url + path, data=body, headers=headers or {}) as r:
            await r.read()
            assert r.status < 500, (method, path, r.status, body[:300])
            return r.status

    async def stored(self, sender: str) -> int:
        async with self.gw.app[SESSIONMAKER]() as s:
            return (await s.execute(select(func.count()).select_from(InboundMessage)
                                    .where(InboundMessage.sender_id == sender))).scalar_one()

    async def innocent(self) -> tuple[str, list[dict]]:
        sender = f"inn-{uuid.uuid4().hex[:10]}"
        async with self.http.post(self.gw.url + "/webhooks/rest/webhook",
                                  json={"sender": sender, "message": "你好"}) as r:
            assert r.status == 200
            return sender, await r.json()

    async def alongside(self, hostile) -> int:  # type: ignore[no-untyped-def]
        """Run a hostile request while three customers write: they are all stored and answered."""
        status, *inn = await asyncio.gather(hostile, *(self.innocent() for _ in range(3)))
        for sender, answer in inn:
            assert answer and answer[0].get("text"), answer
            assert await self.stored(sender) == 1
        return status


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def env(request, interpreter, tmp_path_factory, postgres) -> AsyncIterator[Env]:  # type: ignore[no-untyped-def]
    d: Path = tmp_path_factory.mktemp("property")
    store = (f"sqlite+aiosqlite:///{d / 'bot.db'}" if request.param == "sqlite"
             else await asyncio.to_thread(postgres.new_database, "pbprop"))
    app_keys = KeyPair.generate()
    async with run_fake_alipay(ALIPAY_APPID, app_keys.public_pem) as alipay, run_wechat_api() as wx, \
            run_provider() as sms, run_core(f"sqlite+aiosqlite:///{d / 'core.db'}") as core, \
            run_gateway(store, core.url, interpreter, data_dir=d,
                        wechat_appid=WX_APPID, wechat_token=WX_TOKEN, wechat_secret=WX_SECRET,
                        wechat_api_base_url=wx.url,
                        alipay_appid=ALIPAY_APPID, alipay_app_private_key=app_keys.private_pem,
                        alipay_public_key=alipay.keys.public_b64, alipay_gateway_url=alipay.gateway_url,
                        sms_api_key=API_KEY, sms_secret=SMS_SECRET, sms_api_base_url=sms.url,
                        sms_inbound_per_minute=0, operator_token=OPERATOR, notify_enabled=False,
                        rate_limit_per_sender_per_minute=0, rate_limit_per_ip_per_minute=0) as gw, \
            aiohttp.ClientSession() as http:
        yield Env(gw=gw, alipay=alipay, http=http)


# ------------------------------------------------------------------------------ strategies
hostile_chars = st.one_of(
    st.characters(),  # any code point Hypothesis draws (controls included)
    st.sampled_from(["\ud800", "\udfff", "\ud83d", "\x00", "\u202e", "<", "&", "\\", '"', "%", "\r", "\n"]),
)
hostile_text = st.one_of(st.text(hostile_chars, max_size=60),
                         st.lists(st.sampled_from(["]]>", "\ud83d\ude00", "户号", "\ufeff"]), max_size=4).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile_text)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(hostile_text, c, max_size=4),
                           max_leaves=12)
deep = st.integers(min_value=1, max_value=60_000).map(lambda n: ("[" * n + "]" * n).encode())


def dumps(value: object) -> bytes:
    """JSON as a client could send it: surrogates and NaN escaped/written as JSON allows."""
    return json.dumps(value).encode()


# ------------------------------------------------------------------------------ REST
@EXAMPLES
@given(text=hostile_text, metadata=json_values, message_id=json_values)
async def test_rest_webhook_any_json(env: Env, text: str, metadata: object, message_id: object) -> None:
    sender = f"h-{uuid.uuid4().hex[:10]}"
    body = dumps({"sender": sender, "message": text, "metadata": metadata, "message_id": message_id})
    status = await env.alongside(env.request("POST", "/webhooks/rest/webhook", body,
                                             {"Content-Type": "application/json"}))
    if status >= 400:
        assert await env.stored(sender) == 0


@EXAMPLES
@given(body=st.one_of(st.binary(max_size=300), deep, json_values.map(dumps)), sender=hostile_text)
async def test_rest_webhook_any_body_and_poll(env: Env, body: bytes, sender: str) -> None:
    await env.alongside(env.request("POST", "/webhooks/rest/webhook", body, {"Content-Type": "application/json"}))
    q = quote(sender.encode("utf-8", "surrogatepass"))
    await env.request("GET", f"/webhooks/rest/messages?sender={q}&after={q}")


# ------------------------------------------------------------------------------ SMS (signed)
@EXAMPLES
@given(text=hostile_text, ts=st.one_of(st.just(None), scalars), extra=json_values)
async def test_signed_sms_with_any_content(env: Env, text: str, ts: object, extra: object) -> None:
    phone = "+86139" + str(uuid.uuid4().int)[:8]
    data = {"from": phone, "to": "95598", "text": text, "message_id": f"in-{uuid.uuid4().hex}",
            "timestamp": int(time.time()) if ts is None else ts, "extra": extra}
    body = dumps(data)
    status = await env.alongside(env.request("POST", "/channels/sms", body, {
        "Content-Type": "application/json", "X-Signature": hmac_hex(SMS_SECRET, body)}))
    if status >= 400:
        assert await env.stored(phone) == 0
    await env.request("POST", "/channels/sms/status", body, {
        "Content-Type": "application/json", "X-Signature": hmac_hex(SMS_SECRET, body)})


# ------------------------------------------------------------------------------ WeChat (signed)
@EXAMPLES
@given(content=hostile_text)
async def test_signed_wechat_text_with_any_content(env: Env, content: str) -> None:
    openid = "o" + uuid.uuid4().hex[:27]
    p = WeChatPusher(env.gw.url)
    params, _ = p.build("")
    body = text_xml(openid, content).encode("utf-8", "surrogatepass")
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status = await env.alongside(env.request("POST", f"/channels/wechat?{query}", body, {"Content-Type": "text/xml"}))
    if status >= 400:
        assert await env.stored(openid) == 0


# ------------------------------------------------------------------------------ Alipay (signed)
@EXAMPLES
@given(content=hostile_text, charset=st.sampled_from(["GBK", "UTF-8"]))
async def test_signed_alipay_message_with_any_content(env: Env, content: str, charset: str) -> None:
    user = "2088" + str(uuid.uuid4().int)[:12]
    try:
        body = env.alipay.gateway_form("alipay.mobile.public.message.notify",
                                       env.alipay.message_xml(user, text=content), charset=charset)
    except UnicodeEncodeError:  # text the charset cannot carry: sent as the raw bytes a client might
        body = ("biz_content=" + content).encode("utf-8", "surrogatepass")
    status = await env.alongside(env.request("POST", "/channels/alipay", body, {
        "Content-Type": f"application/x-www-form-urlencoded; charset={charset}"}))
    if status >= 400:
        assert await env.stored(user) == 0
    await env.request("POST", "/payments/alipay/notify", body, {
        "Content-Type": "application/x-www-form-urlencoded"})


# ------------------------------------------------------------------------------ console, operator API, paths
@EXAMPLES
@given(value=json_values, raw=st.one_of(st.binary(max_size=200), deep), segment=hostile_text)
async def test_console_operator_and_paths(env: Env, value: object, raw: bytes, segment: str) -> None:
    seg = quote(segment.encode("utf-8", "surrogatepass"), safe="")
    await env.request("POST", "/console/login", raw, {"Content-Type": "application/x-www-form-urlencoded"})
    await env.request("POST", "/console/login", dumps(value), {"Content-Type": "application/json"})
    await env.request("GET", f"/console/api/handoffs/{seg or 'x'}")
    await env.request("POST", f"/console/api/handoffs/{seg or 'x'}/reply", raw, {"Content-Type": "application/json"})
    bearer = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"}
    await env.request("POST", "/api/v1/notify/subscriptions", dumps(value), bearer)
    await env.request("POST", "/api/v1/notify/subscriptions", raw, bearer)
    await env.request("DELETE", "/api/v1/notify/subscriptions", dumps(value), bearer)
    await env.request("GET", f"/api/v1/notify/subscriptions?account_number={seg}&channel={seg}", b"", bearer)
    await env.request("GET", f"/channels/{seg or 'x'}")
    await env.request("GET", f"/readyz?{seg}")
