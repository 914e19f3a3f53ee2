"""A customer in the web chat and an agent in the console, two browsers at once (Debian's
Chromium through Playwright), the customer on a phone or a desktop, the agent on a desktop:
the customer asks for a person → the conversation appears in the agent's queue → the agent
takes it → the customer is told who joined → the agent types a reply → the customer sees it,
named → the customer answers → the agent sees it live → the agent hands back → the customer
is told, and asked for a score.

Screenshots: test-artifacts/together-<size>-<step>-<who>.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from console_support import PASSWORD, make_agent
from stack import run_core, run_gateway

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("size", list(SIZES))
async def test_customer_and_agent_talk_in_two_browsers(tmp_path, interpreter, size: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)

    async def shot(page, step: str, who: str) -> None:  # type: ignore[no-untyped-def]
        await page.screenshot(path=str(ARTIFACTS / f"together-{size}-{step}-{who}.png"))

    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, \
            run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter) as gw, \
            async_playwright() as pw:
        await make_agent(gw, "李娜")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            customer_ctx = await browser.new_context(viewport=SIZES[size], locale="zh-CN", is_mobile=size == "phone",
                                                     has_touch=size == "phone")
            agent_ctx = await browser.new_context(viewport=SIZES["desktop"], locale="zh-CN")
            customer, agent = await customer_ctx.new_page(), await agent_ctx.new_page()
            errors: list[str] = []
            for p in (customer, agent):
                p.on("pageerror", lambda e: errors.append(str(e)))
                p.on("dialog", lambda d: d.accept())

            # the agent is at work
            await agent.goto(gw.url + "/console/login")
            await agent.fill("#name", "李娜")
            await agent.fill("#password", PASSWORD)
            await agent.click("#login-btn")
            await agent.wait_for_url(gw.url + "/console")
            await expect(agent.locator("#conn")).to_have_class("conn on", timeout=10_000)

            # the customer asks for a person
            log = customer.locator("#log")
            await customer.goto(gw.url + "/chat")
            await expect(log.locator(".msg.bot").first).to_contain_text("请问有什么可以帮您")
            await customer.fill("#t", "我要转人工")
            await customer.click("#send")
            await expect(log.locator(".msg.me").last).to_have_text("我要转人工")
            await expect(log.locator(".msg.bot").last).to_contain_text("人工", timeout=10_000)
            sender = await customer.evaluate("localStorage.getItem('powerbot-sender')")

            # it appears in the agent's queue, live; the agent opens and takes it
            item = agent.locator(f'#queue .q-item[data-conversation="rest:{sender}"]')
            await expect(item).to_have_count(1, timeout=10_000)
            await item.click()
            await expect(agent.locator("#history")).to_contain_text("我要转人工", timeout=10_000)
            await expect(agent.locator("#take-btn")).to_be_visible()
            await agent.click("#take-btn")
            await expect(agent.locator("#chat-status")).to_contain_text("处理中", timeout=10_000)
            await expect(log.locator(".divider", has_text="人工客服李娜已接入")).to_be_visible(timeout=10_000)
            await shot(customer, "1-joined", "customer")

            # the agent's reply reaches the customer, named
            words = "您好，我是客服李娜，请问遇到了什么问题？"
            await agent.fill("#reply-text", words)
            await agent.click("#reply-btn")
            said = log.locator(".msg.agent").last
            await expect(said.locator(".bubble")).to_have_text(words, timeout=10_000)
            await expect(said.locator(".who")).to_contain_text("李娜")
            await shot(customer, "2-agent-reply", "customer")

            # the customer answers; the agent sees it live
            await customer.fill("#t", "家里跳闸了，合不上去")
            await customer.click("#send")
            await expect(agent.locator("#history")).to_contain_text("家里跳闸了，合不上去", timeout=10_000)
            await shot(agent, "3-customer-answer", "agent")

            # the agent hands back; the customer is told, and asked for a score
            await agent.click("#close-btn")
            await expect(log.locator(".divider", has_text="人工服务已结束")).to_be_visible(timeout=10_000)
            await expect(log.locator(".buttons.csat").last.locator("button")).to_have_count(5)
            await shot(customer, "4-handback", "customer")
            assert errors == []
        finally:
            await browser.close()
