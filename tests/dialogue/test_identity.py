"""Identity is proven by a platform or by the customer, never by the look of a sender id.

A REST sender id is an opaque string: "+8613900139000" is not the holder of that phone. An
account number alone proves nothing either: nothing registered on it (address, name, phone,
amounts) is shown, used in a confirmation or attached to a work order before the check.
The real core and gateway, nothing mocked; the core is asked what was written.
"""

from __future__ import annotations

import re
import aiohttp
import pytest
from sqlalchemy import func, select

from backend_client import CoreClient
from bot.app import SESSIONMAKER
from bot.models import OutboxMessage
from sms_platform import API_KEY, SECRET, inbound_body, post_signed, run_provider
from stack import run_gateway, wait_until
from tests.chat import Chat

ADDRESS_2 = "漕溪北路201弄"  # the registered address of 3100000002 (李娜)
NAME_2 = "李"


def chat(gw, sender: str | None = None) -> Chat:  # noqa: F811
    return Chat(gw.http, gw.url, sender)


def _everything(replies: list[dict]) -> str:
    """Text, button titles and payloads, custom payloads: all a client receives."""
    return repr(replies)


async def test_a_rest_sender_that_looks_like_a_phone_proves_nothing(gw):  # noqa: F811
    c = chat(gw, "+8613900139000")  # the registered phone of 3100000002
    for ask in ("查电费", "我欠了多少钱", "交电费", "我的工单进度", "我要订阅停电通知"):
        out = await c.say(ask)
        seen = _everything(out)
        assert "户号" in seen, (ask, seen)
        assert "3100000002" not in seen and ADDRESS_2 not in seen and NAME_2 not in seen, (ask, seen)
        assert not re.search(r"\d+\.\d{2} ?(元|CNY)", seen), (ask, seen)
        await c.say("算了")
    # binding needs the check too: the account number alone binds nothing
    await c.say("我要绑定户号")
    out = _everything(await c.say("3100000002"))
    assert "后4位" in out and "已绑定" not in out, out
    async with CoreClient(gw.settings.core_url) as core:
        acc = await core.get_account("3100000002")
    assert not [b for b in acc.bindings if b.identity == "+8613900139000"]


async def test_account_choice_buttons_never_carry_full_account_numbers(core_url, interpreter, tmp_path):
    """A proven SMS sender holding two accounts is asked which one: the buttons (kept with the
    reply in the outbox, rendered by button-capable channels) name them masked and answer with
    a position; the customer picks by position or by the last 4 digits."""
    phone = "+8613800138000"  # registered on 3100000001 and 3100000003
    async with run_provider() as provider, run_gateway(
            f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core_url, interpreter, data_dir=tmp_path,
            sms_api_base_url=provider.url, sms_api_key=API_KEY, sms_secret=SECRET, notify_enabled=False,
            notify_quiet_hours="") as sgw, aiohttp.ClientSession() as http:

        async def say(text: str) -> list[dict]:
            async with sgw.app[SESSIONMAKER]() as s:
                before = (await s.execute(select(func.max(OutboxMessage.id)))).scalar() or 0
            assert (await post_signed(http, f"{sgw.url}/channels/sms", inbound_body(phone, text))).status == 200

            async def answered() -> list[dict]:
                async with sgw.app[SESSIONMAKER]() as s:
                    rows = (await s.execute(select(OutboxMessage.payload).where(
                        OutboxMessage.id > before, OutboxMessage.recipient_id == phone))).scalars().all()
                return list(rows)

            await wait_until(answered, timeout=20)
            return await answered()

        ask = await say("查电费")
        buttons = [b for r in ask for b in r.get("buttons") or []]
        assert "多个户号" in repr(ask) and len(buttons) == 2, ask
        assert "3100000001" not in repr(ask) and "3100000003" not in repr(ask), ask
        assert {b["title"] for b in buttons} == {"31******01", "31******03"}
        second = next(b for b in buttons if b["title"] == "31******03")
        bill = repr(await say(second["payload"]))  # a button-capable client answers with the payload
        assert re.search(r"31\*+03.*\d+\.\d{2} 元", bill), bill


@pytest.mark.parametrize("opening", ["户号3100000002家里停电了", "户号3100000002，家里电表坏了要报修"])
async def test_an_unverified_account_number_never_reveals_its_address(gw, opening):  # noqa: F811
    c = chat(gw)
    seen = [await c.say(opening)]
    for probe in ("13800000000", "13912345678", "是的", "确认"):
        seen.append(await c.say(probe))
    text = _everything(seen)
    assert ADDRESS_2 not in text and "徐汇" not in text and NAME_2 not in text, text
    # the customer says where: the order carries what they said, not the account they named
    c2 = chat(gw)
    await c2.say(opening)
    out = await c2.text("浦东新区张江路100号")
    for _ in range(3):  # contact phone, confirmation: whatever the flow asks next
        if "工单" in out and re.search(r"[A-Z]{2}\d{6,}", out):
            break
        out = await c2.text("确认" if "确认" in out else "13912345678")
    m = re.search(r"([A-Z]{2}\d{6,}\w*)", out)
    assert m, out
    async with CoreClient(gw.settings.core_url) as core:
        wo = await core.get_work_order(m.group(1))
    assert wo.account_number is None and "张江路100号" in (wo.address or ""), wo


async def test_the_verification_digits_never_reach_the_log(gw, caplog):  # noqa: F811
    import logging

    caplog.set_level(logging.DEBUG)
    c = chat(gw)
    await c.say("查电费")
    await c.say("3100000001")
    assert re.search(r"\d+\.\d{2} 元", await c.text("8000"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "turn conv=" in logged  # the turn log was written...
    # ...without the check's digits (as numbers of their own: a timestamp's "…26.258000Z" is none)
    assert not re.search(r"(?<![\d.])(?:8000|3100000001)(?!\d)", logged), logged


async def test_relative_dates_are_read_on_chinas_calendar(gw):  # noqa: F811
    """At 01:00 in Shanghai (17:00 UTC the day before) "明天" is the day after China's today."""
    import time_machine

    from bot.app import DIALOGUE

    with time_machine.travel("2026-12-06T17:00:00+00:00", tick=False):
        parse = gw.app[DIALOGUE]._parse("浦东明天停电吗")
    assert {e["entity"]: e["value"] for e in parse["entities"]}.get("date") == "2026-12-08", parse
