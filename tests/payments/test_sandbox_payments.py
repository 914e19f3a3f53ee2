"""The demo core's payments: a customer of the embedded default confirms, opens the link, pays
on the sandbox page, and the core holds the payment paid and the bills settled — once."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import time_machine

from bot.testing.run import PINNED_NOW, embedded_stack

API = "/api/v1"


async def _say(stack, sender: str, text: str) -> str:  # type: ignore[no-untyped-def]
    async with stack.http.post(stack.gateway_url + "/webhooks/rest/webhook",
                               json={"sender": sender, "message": text}) as r:
        assert r.status == 200, await r.text()
        return " / ".join(m.get("text", "") for m in await r.json())


def test_pay_on_the_sandbox_page_settles_the_bills_once(interpreter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with embedded_stack(tmp_path, interpreter) as stack:
            http, core = stack.http, stack.core_url
            owed = (await (await http.get(f"{core}{API}/accounts/3100000001/arrears")).json())["amount_owed"]
            assert float(owed) > 0
            first = await _say(stack, "sandbox-payer", "交电费，户号3100000001，尾号8000")
            assert owed in first, first  # the amount to confirm
            assert (await (await http.get(f"{core}{API}/accounts/3100000001/payments")).json())["payments"] == []
            answer = await _say(stack, "sandbox-payer", "确认")
            url = re.search(r"http://\S+/pay/sandbox/(\w+)", answer)
            assert url, answer
            link, out_trade_no = url.group(0).replace("http://127.0.0.1:8080", stack.gateway_url), url.group(1)
            pending = (await (await http.get(f"{core}{API}/payments/{out_trade_no}")).json())
            assert (pending["status"], pending["account_number"], pending["amount"]) == ("pending", "3100000001", owed)

            page = await http.get(link)
            text = await page.text()
            assert page.status == 200 and owed in text and "31******01" in text and "演示" in text
            assert "3100000001" not in text  # the account masked on a page anyone with the link sees
            for _ in range(2):  # a second press (a reload that posts again) pays nothing more
                paid = await http.post(link)
                assert paid.status == 200 and "支付成功" in await paid.text()
            payment = (await (await http.get(f"{core}{API}/payments/{out_trade_no}")).json())
            assert payment["status"] == "paid" and payment["channel"] == "sandbox"
            assert float(payment["credit_amount"]) == 0
            after = (await (await http.get(f"{core}{API}/accounts/3100000001/arrears")).json())
            assert float(after["amount_owed"]) == 0
            english = await http.get(link, headers={"Accept-Language": "en-US"})
            assert "Paid" in await english.text()
            unknown = await http.get(stack.gateway_url + "/pay/sandbox/SBX000000unknown")
            assert unknown.status == 404

    with time_machine.travel(PINNED_NOW, tick=True):
        asyncio.run(scenario())


def test_sandbox_is_off_unless_asked(interpreter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A gateway not told to use the sandbox has no page and offers no link (the ways to pay)."""
    async def scenario() -> None:
        async with embedded_stack(tmp_path, interpreter, settings_overrides={"payment_sandbox": None}) as stack:
            assert (await stack.http.get(stack.gateway_url + "/pay/sandbox/SBX1234567")).status == 404
            await _say(stack, "no-sandbox", "交电费，户号3100000001，尾号8000")
            answer = await _say(stack, "no-sandbox", "确认")
            assert "/pay/sandbox/" not in answer

    with time_machine.travel(PINNED_NOW, tick=True):
        asyncio.run(scenario())
