"""The web chat (/chat) in a real browser (Debian's Chromium driven by Playwright), as a customer
uses it, on a desktop (1280×800) and a phone (390×844), with an agent working the conversation
through the console's HTTP API in the same test:

greeting with quick replies → a bill as a card with a pay action → ask for a human with nobody
online → "回电" as a button → an agent joins (announced, named, styled apart) → the agent hands
back (announced) and the score is asked with five buttons → answered → reload: the transcript
comes back from the server, nothing answered is shown again, stale buttons stay disabled → the
core goes down: typing indicator and the busy text within seconds, the real answer later.

Screenshots: test-artifacts/web-chat-<size>-<step>.png."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from pathlib import Path

import aiohttp
from playwright.async_api import Page, async_playwright, expect
from sqlalchemy import update

from bot import outbox
from bot.app import CORE, OUTBOX, SESSIONMAKER, TEXTS
from bot.console.models import Agent
from channels.base import Reply
from console_support import AgentClient, make_agent
from stack import run_core, run_gateway, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BRAND = "#c8102e"  # POWERBOT_CHAT_PRIMARY_COLOR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def shot(page: Page, size: str, step: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"web-chat-{size}-{step}.png"))


async def texts_of(page: Page) -> list[str]:
    return await page.locator("#log .msg:not(.busy) .bubble, #log .msg .card, #log .divider").evaluate_all(
        "els => els.map(e => e.textContent)")


async def nobody_online(gw) -> None:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        await s.execute(update(Agent).values(last_seen_at=None))


async def journey(gw, http: aiohttp.ClientSession, page: Page, size: str, agent_name: str) -> None:  # type: ignore[no-untyped-def]
    log = page.locator("#log")
    await page.goto(gw.url + "/chat")
    # the greeting (brand from settings) with the domain's quick replies
    await expect(page.locator("#hd-title")).to_have_text("南网 95598 智能客服")
    assert await page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == "rgb(200, 16, 46)"
    greeting = log.locator(".msg.bot").first
    await expect(greeting).to_contain_text("请问有什么可以帮您")
    await expect(greeting.locator(".who")).to_contain_text("小南")
    quick = greeting.locator(".buttons button")
    await expect(quick).to_have_count(4)
    await expect(quick.first).to_have_text("查电费")
    await shot(page, size, "1-greeting")

    sender = await page.evaluate("localStorage.getItem('powerbot-sender')")
    await gw.app[CORE].bind_account("3100000001", "rest", sender)

    # a bill: a card with month, kWh, amounts, due date, arrears and a pay action
    await quick.first.click()
    await expect(log.locator(".msg.me").last).to_have_text("查电费")
    card = log.locator(".card.bill").last
    await expect(card).to_be_visible(timeout=10_000)
    await expect(card).to_contain_text("电费账单")
    for label in ("用电量", "电费金额", "已缴金额", "待缴金额", "缴费截止", "累计欠费"):
        await expect(card).to_contain_text(label)
    await expect(card.locator("button.pay")).to_have_text("去缴费 / Pay")
    # the arrears month by month (张伟 owes two months)
    await expect(card.locator("table tr")).to_have_count(2)
    await expect(card.locator("table tr").first).to_contain_text(re.compile(r"\d{4}-\d{2}"))
    await expect(quick.first).to_be_disabled()  # the conversation moved on: the greeting's buttons are stale
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= SIZES[size]["width"]  # fits the screen
    await shot(page, size, "2-bill-card")

    # a human, with nobody online: the wait and "回电" as a button
    await page.fill("#t", "转人工")
    await page.press("#t", "Enter")
    callback = log.locator(".msg.bot .buttons button", has_text="回电")
    await expect(callback).to_be_visible(timeout=10_000)
    await expect(card.locator("button.pay")).to_be_disabled()
    await callback.click()
    await expect(log.locator(".msg.me").last).to_have_text("回电")
    await expect(log.locator(".msg.bot").last).to_contain_text("回电工单", timeout=10_000)
    await expect(callback).to_be_disabled()

    # an agent takes the conversation and replies: the customer is told who joined and who talks
    async with AgentClient(gw.url) as agent:
        assert (await agent.login(agent_name)).status == 302
        item = await wait_until(lambda: agent.handoff_for(f"rest:{sender}"), timeout=10)
        hid = item["handoff_id"]
        assert (await agent.post(f"/console/api/handoffs/{hid}/take"))[0] == 200
        words = f"您好，我是客服{agent_name}，已看到您的回电登记，我来为您核对账单。"
        assert (await agent.post(f"/console/api/handoffs/{hid}/reply", {"text": words}))[0] == 200
        joined = log.locator(".divider", has_text=f"人工客服{agent_name}已接入")
        await expect(joined).to_be_visible(timeout=10_000)
        said = log.locator(".msg.agent").last
        await expect(said.locator(".bubble")).to_have_text(words)
        await expect(said.locator(".who")).to_contain_text(agent_name)
        await expect(said.locator(".who .tag")).to_have_text("人工客服")
        await expect(page.locator("#hd-sub")).to_contain_text(f"人工客服 {agent_name}")
        await shot(page, size, "3-agent-joined")

        # the agent hands back: announced, and the score asked with five buttons
        assert (await agent.post(f"/console/api/handoffs/{hid}/close"))[0] == 200
        await expect(log.locator(".divider", has_text="人工服务已结束，小南继续为您服务")).to_be_visible(timeout=10_000)
        csat = log.locator(".buttons.csat").last
        await expect(csat.locator("button")).to_have_count(5)
        await expect(page.locator("#hd-sub")).to_have_text("智能客服 小南")
        await shot(page, size, "4-handback-csat")
        await csat.locator("button", has_text="5").click()
        await expect(log.locator(".msg.bot").last).to_contain_text("感谢您的评价", timeout=10_000)
        await expect(csat.locator("button.chosen")).to_have_text("5 非常满意")
        assert await csat.locator("button:not([disabled])").count() == 0
    await nobody_online(gw)

    # reload: the transcript comes back in order; nothing answered is shown again
    before = await texts_of(page)
    async with page.expect_response(lambda r: "/webhooks/rest/messages" in r.url):  # the first poll after the restore
        await page.reload()
    await page.wait_for_timeout(300)
    await expect(log.locator(".msg.agent")).to_have_count(1)
    await expect(log.locator(".buttons.csat")).to_have_count(1)
    await expect(log.locator(".buttons.csat button.chosen")).to_have_text("5 非常满意")
    after = await texts_of(page)
    assert after == before, (before, after)
    assert await log.locator("button:not([disabled])").count() == 0  # every question was answered
    await expect(log.locator(".msg.agent .who")).to_contain_text(agent_name)
    await shot(page, size, "5-reloaded")


async def core_down(page: Page, size: str) -> float:
    """With the core down: typing indicator, the busy text within seconds. Returns how long the
    busy text took for a message that waits behind a postponed one."""
    log = page.locator("#log")
    await page.fill("#t", "查电费")
    await page.press("#t", "Enter")
    await expect(log.locator(".msg.bot").last).to_contain_text("系统繁忙", timeout=5_000)  # answered busy at once
    t0 = time.monotonic()
    await page.fill("#t", "我家停电了吗")
    await page.press("#t", "Enter")
    await expect(page.locator("#typing")).to_be_visible(timeout=1_000)
    await expect(page.locator("#typing")).to_contain_text("正在输入")
    await expect(log.locator(".msg.busy")).to_have_count(1, timeout=5_000)
    took = time.monotonic() - t0
    await expect(page.locator("#typing")).to_be_visible()  # still waiting for the real answer
    await shot(page, size, "6-core-down-busy")
    return took


async def test_web_chat_as_a_customer_on_desktop_and_phone(tmp_path, interpreter) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    core_db = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        core = await stack.enter_async_context(run_core(core_db, port=port))
        gw = await stack.enter_async_context(run_gateway(
            f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
            chat_primary_color=BRAND, brand_short_name="南网", assistant_name="小南", rate_limit_per_ip_per_minute=0))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        pw = await stack.enter_async_context(async_playwright())
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        stack.push_async_callback(browser.close)
        await make_agent(gw, "李娜")
        await make_agent(gw, "王芳")
        pages: dict[str, Page] = {}
        errors: list[str] = []
        requests: list[str] = []
        for size, agent_name in (("desktop", "李娜"), ("phone", "王芳")):
            context = await browser.new_context(viewport=SIZES[size], locale="zh-CN",
                                                is_mobile=size == "phone", has_touch=size == "phone")
            page = pages[size] = await context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            await journey(gw, http, page, size, agent_name)

        # the core goes down: both customers see the typing indicator and the busy text in seconds
        gw.app[CORE].breaker.cooldown = 0.5  # the core client tries again soon after the core is back
        await core.runner.cleanup()
        took = await asyncio.gather(*(core_down(p, size) for size, p in pages.items()))
        assert max(took) < 4.5, took
        # the core comes back: the real answers follow through the outbox; the page polls them in
        async with run_core(core_db, port=port, seed=False):
            for size, page in pages.items():
                await expect(page.locator("#log .card.bill")).to_have_count(2, timeout=40_000)
                await expect(page.locator("#typing")).to_be_hidden(timeout=10_000)
                await expect(page.locator("#log .msg.busy")).to_have_count(1)  # said once, not repeated by the poll
                await shot(page, size, "7-core-back")

        # the console's join announcement (what take() is to send): a system line, then the agent
        # talks under that name without a second announcement
        page = pages["desktop"]
        sender = await page.evaluate("localStorage.getItem('powerbot-sender')")
        joined = gw.app[TEXTS].text("utter_agent_joined", name="赵敏")
        async with gw.app[SESSIONMAKER]() as s, s.begin():
            await outbox.enqueue(s, Reply(channel="rest", recipient_id=sender, text=joined,
                                          metadata={"sender": {"role": "system", "name": "赵敏"}, "event": "agent_joined"}))
            await outbox.enqueue(s, Reply(channel="rest", recipient_id=sender, text="我是赵敏，继续为您处理。",
                                          metadata={"sender": {"role": "agent", "name": "赵敏"}}))
        gw.app[OUTBOX].wake()
        await expect(page.locator("#log .msg.agent").last).to_contain_text("我是赵敏", timeout=10_000)
        await expect(page.locator("#log .divider", has_text="赵敏")).to_have_count(1)
        await expect(page.locator("#hd-sub")).to_have_text("人工客服 赵敏")

        # an English browser gets the English page, greeting and quick replies
        en = await (await browser.new_context(viewport=SIZES["phone"], locale="en-US")).new_page()
        await en.goto(gw.url + "/chat")
        await expect(en.locator("#hd-title")).to_have_text("State Grid 95598 virtual assistant")
        await expect(en.locator("#log .msg.bot .buttons button").first).to_have_text("My bill")
        await expect(en.locator("#send")).to_have_text("Send")
        await shot(en, "phone", "8-english")
        assert not errors, errors
        assert all(u.startswith(gw.url) for u in requests), [u for u in requests if not u.startswith(gw.url)]  # no CDN
