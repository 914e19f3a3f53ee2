"""Trust fixes of the SMS channel, through the real gateway (engine, pipeline, outbox) with a local
signed provider, on SQLite and PostgreSQL bot stores:

- invalid text at the edge (lone UTF-16 surrogates, NUL and other control characters) is
  repaired or refused with a problem document, never a store failure on every provider retry;
- a concatenated message whose parts split a surrogate pair is reassembled into the emoji;
- a timestamp that is not a finite time ("nan", "inf", "1e400"...) is refused;
- opt-out phrasings (full-width ``ＴＤ``, ``T D``, ``我要退订短信``, ``unsubscribe``...) are
  honoured, an enquiry that merely mentions the word is not taken for one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.app import CHANNELS, SESSIONMAKER
from bot.models import InboundMessage
from channels.sms import keyword_of
from channels.sms_store import SmsOptOut
from sms_platform import API_KEY, SECRET, FakeSmsProvider, hmac_hex, run_provider
from stack import Gateway, run_core, run_gateway, wait_until

aio = pytest.mark.asyncio(loop_scope="module")  # the async tests share the module's stack


@dataclass
class Stack:
    gateway: Gateway
    provider: FakeSmsProvider
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return f"{self.gateway.url}/channels/sms"

    @property
    def status_url(self) -> str:
        return f"{self.gateway.url}/channels/sms/status"

    @property
    def channel(self) -> Any:
        return self.gateway.app[CHANNELS]["sms"]

    async def post(self, data: dict[str, Any], *, url: str | None = None, form: bool = False) -> tuple[int, str, Any]:
        """POST ``data`` signed like the provider. JSON is written with ASCII escapes, so a lone
        surrogate travels as ``\\ud83d`` exactly as a provider's JSON encoder writes it."""
        if form:
            from urllib.parse import urlencode

            body, ctype = urlencode(data).encode(), "application/x-www-form-urlencoded"
        else:
            body, ctype = json.dumps(data).encode(), "application/json"
        headers = {"Content-Type": ctype, "X-Signature": hmac_hex(SECRET, body)}
        async with self.http.post(url or self.url, data=body, headers=headers) as r:
            raw = await r.read()
            doc = json.loads(raw) if raw[:1] == b"{" else None
            return r.status, r.content_type, doc

    async def rows(self, e164: str) -> list[InboundMessage]:
        async with self.gateway.app[SESSIONMAKER]() as s:
            return list((await s.execute(
                select(InboundMessage).where(InboundMessage.channel == "sms", InboundMessage.sender_id == e164)
                .order_by(InboundMessage.id))).scalars())

    async def messages(self, e164: str) -> list[InboundMessage]:
        """The customer messages handed to the dialogue (not the stored parts of one)."""
        return [r for r in await self.rows(e164) if r.kind == "text"]

    async def opted_out(self, e164: str) -> bool:
        async with self.gateway.app[SESSIONMAKER]() as s:
            return await s.get(SmsOptOut, e164) is not None


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bot_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('trust_sms') / 'bot.db'}"
    return request.getfixturevalue("postgres").new_database("trustsms")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(bot_url: str, tmp_path_factory, interpreter) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("trust_sms_core")
    async with run_provider() as provider, run_core(f"sqlite+aiosqlite:///{tmp / 'core.db'}") as core:
        async with run_gateway(
            bot_url, core.url, interpreter, data_dir=tmp,
            sms_api_base_url=provider.url, sms_api_key=API_KEY, sms_secret=SECRET,
            sms_inbound_per_minute=100, notify_quiet_hours="", notify_enabled=False,
        ) as gw, aiohttp.ClientSession() as http:
            yield Stack(gw, provider, http)


def new_phone() -> str:
    return "139" + str(uuid.uuid4().int)[:8]


def body(phone: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"from": phone, "to": "95598", "text": text, "message_id": f"in-{uuid.uuid4().hex}",
            "timestamp": int(time.time()), **extra}


def assert_problem(status: int, ctype: str, doc: Any, expected: int) -> None:
    assert status == expected, (status, doc)
    assert ctype == "application/problem+json"
    assert doc["status"] == expected and doc["type"] and doc["title"] and doc["detail"]


# --------------------------------------------------------------------------- invalid text
@aio
async def test_lone_surrogate_and_control_characters_are_repaired_and_stored_once(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    data = body(phone, "电费\x00多少\x07钱\r\n谢谢\ud83d", to="95598\ud83d")
    for _ in range(3):  # the provider retries: each attempt answered, one message stored
        status, _, _ = await stack.post(data)
        assert status == 200
    await wait_until(lambda: stack.provider.to(e164), timeout=15)
    rows = await stack.messages(e164)
    assert len(rows) == 1
    assert rows[0].text == "电费多少钱\n谢谢\ufffd"
    assert rows[0].payload["to"] == "95598\ufffd"


@aio
async def test_text_with_nothing_valid_and_broken_ids_are_refused_with_a_problem(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    assert_problem(*await stack.post(body(phone, "\ud83d\x00")), 400)
    assert_problem(*await stack.post(body(phone, "查电费", message_id="id-\ud83d")), 400)
    assert_problem(*await stack.post(body(phone, "查电费", message_id="id\x00x")), 400)
    # full-width digits are not a phone number
    assert_problem(*await stack.post(body("1３８００１３８０００", "查电费")), 400)
    # a delivery report naming a broken segment id
    report = {"message_id": "prov-\udc00", "status": "delivered", "timestamp": int(time.time())}
    assert_problem(*await stack.post(report, url=stack.status_url), 400)
    await asyncio.sleep(0.3)
    assert await stack.rows(e164) == []


@aio
async def test_concatenated_parts_splitting_a_surrogate_pair_are_reassembled(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    text = "请问这个月电费多少😀谢谢"
    units = text.encode("utf-16-le", "surrogatepass")
    cut = 2 * text.index("😀") + 2  # after the high surrogate: part 1 ends with \ud83d
    part1 = units[:cut].decode("utf-16-le", "surrogatepass")
    part2 = units[cut:].decode("utf-16-le", "surrogatepass")
    assert part1.endswith("\ud83d") and part2.startswith("\ude00")
    ref = uuid.uuid4().hex[:8]
    p2 = body(phone, part2, concat_ref=ref, part=2, parts=2)
    p1 = body(phone, part1, concat_ref=ref, part=1, parts=2)
    assert (await stack.post(p2))[0] == 200  # the second part arrives first
    await asyncio.sleep(0.3)
    assert await stack.messages(e164) == []  # nothing handed to the dialogue yet
    assert (await stack.post(p1))[0] == 200
    assert (await stack.post(p1))[0] == 200  # a provider retry of a part
    rows = await wait_until(lambda: stack.messages(e164), timeout=10)
    assert [r.text for r in rows] == [text]
    await wait_until(lambda: stack.provider.to(e164), timeout=15)
    await asyncio.sleep(0.5)
    assert len(await stack.messages(e164)) == 1


@aio
async def test_concatenated_parts_form_encoded_and_out_of_range_parts(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    ref = uuid.uuid4().hex[:8]
    for i, chunk in enumerate(["我家", "停电了", "怎么办"], start=1):
        assert (await stack.post(body(phone, chunk, concat_ref=ref, part=str(i), parts="3"), form=True))[0] == 200
    rows = await wait_until(lambda: stack.messages(e164), timeout=10)
    assert [r.text for r in rows] == ["我家停电了怎么办"]
    for bad in ({"part": 3, "parts": 2}, {"part": 0, "parts": 2}, {"part": "x", "parts": 2}, {"part": 1, "parts": 99},
                {"part": 1, "parts": 2, "concat_ref": ""}, {"part": 1}):
        data = body(phone, "查电费", **{"concat_ref": ref, **bad})
        assert_problem(*await stack.post(data), 400)


@aio
async def test_a_part_that_never_comes_does_not_lose_the_message(stack: Stack) -> None:
    phone = new_phone()
    e164 = "+86" + phone
    stack.channel.assembly_wait = 0.5
    try:
        assert (await stack.post(body(phone, "我要查询电费", concat_ref="77", part=1, parts=2)))[0] == 200
        rows = await wait_until(lambda: stack.messages(e164), timeout=10)
    finally:
        stack.channel.assembly_wait = type(stack.channel).assembly_wait
    assert rows[0].text == "我要查询电费" and rows[0].payload["sms_parts_missing"] == [2]
    await wait_until(lambda: stack.provider.to(e164), timeout=15)


# --------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("ts", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "abc", "", None, [1], True])
@aio
async def test_non_finite_or_unparsable_timestamps_are_refused(stack: Stack, ts: Any) -> None:
    phone = new_phone()
    data = body(phone, "STOP", timestamp=ts)
    status, ctype, doc = await stack.post(data)
    assert status in (400, 403)
    assert_problem(status, ctype, doc, status)
    if isinstance(ts, str):
        assert_problem(*await stack.post(data, form=True), status)
    report = {"message_id": "prov-1", "status": "delivered", "timestamp": ts}
    assert (await stack.post(report, url=stack.status_url))[0] in (400, 403)
    await asyncio.sleep(0.1)
    assert await stack.rows("+86" + phone) == []
    assert not await stack.opted_out("+86" + phone)


# --------------------------------------------------------------------------- opt-out
STOPS_ZH = ["ＴＤ", "T D", "td", "TD。", "我要退订短信", "取消订阅", "退订", "退订！", "请退订", "退订短信通知",
            "不要再发短信了", "ｔｄ退订"]
STOPS_EN = ["STOP", "stop", "Stop.", "unsubscribe", "UNSUBSCRIBE!", "opt out", "stop all", "Please unsubscribe me"]
NOT_STOPS = ["我想问下怎么退订电子账单", "怎么退订", "退订电子账单", "不想收停电通知怎么设置", "stop the outage please",
             "为什么停电", "td是什么意思", "取消", "cancel"]


@pytest.mark.parametrize("text", STOPS_ZH + STOPS_EN)
def test_opt_out_phrasings_are_recognised(text: str) -> None:
    assert keyword_of(text) == "stop"


@pytest.mark.parametrize("text", NOT_STOPS)
def test_enquiries_mentioning_the_word_are_not_opt_outs(text: str) -> None:
    assert keyword_of(text) is None


@pytest.mark.parametrize("text", ["START", "恢复", "恢复短信通知", "Start!"])
def test_resubscribe_phrasings(text: str) -> None:
    assert keyword_of(text) == "start"


@aio
async def test_opt_out_phrasings_are_honoured_in_the_customer_language(stack: Stack) -> None:
    for text, lang_word in [("ＴＤ", "退订"), ("我要退订短信", "退订"), ("T D", "退订"), ("unsubscribe", "unsubscribed")]:
        phone = new_phone()
        e164 = "+86" + phone
        assert (await stack.post(body(phone, text)))[0] == 200
        assert await stack.opted_out(e164), text
        texts = await wait_until(lambda: stack.provider.texts_to(e164), timeout=10)
        assert lang_word in texts[0], (text, texts)
    # an enquiry is answered by the dialogue, and the number stays subscribed
    phone = new_phone()
    e164 = "+86" + phone
    assert (await stack.post(body(phone, "我想问下怎么退订电子账单")))[0] == 200
    await wait_until(lambda: stack.provider.texts_to(e164), timeout=15)
    assert not await stack.opted_out(e164)
    assert len(await stack.messages(e164)) == 1
