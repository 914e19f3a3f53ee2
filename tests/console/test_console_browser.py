"""The console in a real browser (Debian's Chromium driven by Playwright): log in, see a
conversation escalated by a web-chat customer, take it, reply, the customer receives the reply,
hand back, the bot answers the customer again. Saves test-artifacts/console.png."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
from playwright.async_api import async_playwright, expect

from bot.app import CORE
from stack import run_core, run_gateway, wait_until
from console_support import PASSWORD, Customer, make_agent

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


async def test_agent_console_in_the_browser(tmp_path, interpreter) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, \
            run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter) as gw, \
            aiohttp.ClientSession() as http, async_playwright() as pw:
        await make_agent(gw, "李娜")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())

            # log in (an unauthenticated visit lands on the login page)
            await page.goto(gw.url + "/console")
            assert page.url.endswith("/console/login")
            await page.fill("#name", "李娜")
            await page.fill("#password", PASSWORD)
            await page.click("#login-btn")
            await page.wait_for_url(gw.url + "/console")
            await expect(page.locator("#conn")).to_have_class("conn on", timeout=10_000)

            # a web-chat customer asks for a human: the queue shows it live
            c = Customer(http, gw.url, "web-" + uuid.uuid4().hex[:6])
            await gw.app[CORE].bind_account("3100000001", "rest", c.sender)
            await c.say("我家这个月电费怎么这么高")
            texts = await c.say("转人工")
            assert any("转接人工" in t for t in texts)
            await c.poll()
            item = page.locator(f'.q-item[data-conversation="{c.conversation_id}"]')
            await expect(item).to_be_visible(timeout=10_000)
            await expect(item).to_contain_text("要求人工")

            # open and take it
            await item.click()
            await expect(page.locator("#chat-title")).to_have_text(c.conversation_id)
            await expect(page.locator("#history")).to_contain_text("我家这个月电费怎么这么高")
            await expect(page.locator("#history .nlu").first).to_be_visible()
            await page.click("#take-btn")
            await expect(page.locator("#chat-status")).to_contain_text("处理中", timeout=10_000)
            await expect(page.locator("#account")).to_contain_text("138****8000", timeout=10_000)

            # customer text containing markup is shown as text, never run
            hostile = '<b>bold</b><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
            answer = await c.say(hostile)  # held by an agent: at most the engine's "passed to an agent"
            assert len(answer) <= 1 and all("agent" in t or "人工" in t for t in answer), answer
            await expect(page.locator("#history")).to_contain_text("<script>window.__pwned=2</script>", timeout=10_000)
            assert await page.evaluate("window.__pwned === undefined")
            assert await page.locator("#history b, #history img, #history script").count() == 0

            # reply; the customer receives it on their own channel
            await page.fill("#reply-text", "您好，我是客服李娜。您本月用电量较上月增加，已为您核对账单，请稍等。")
            await page.click("#reply-btn")
            await expect(page.locator("#history .msg-agent")).to_contain_text("我是客服李娜", timeout=10_000)
            got = await wait_until(c.poll, timeout=10)
            assert got == ["您好，我是客服李娜。您本月用电量较上月增加，已为您核对账单，请稍等。"]

            # reveal one field (audited) and take the screenshot with everything on screen
            await page.locator("#account button.reveal").first.click()
            await expect(page.locator("#account .revealed").first).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=False)

            # hand back to the bot; the customer is asked for a score, then the bot answers again
            await page.click("#close-btn")
            await expect(page.locator("#chat-status")).to_contain_text("已结束", timeout=10_000)
            await expect(item).to_have_count(0, timeout=10_000)
            ask = await wait_until(c.poll, timeout=10)
            assert "1–5" in ask[0]
            texts = await c.say("你好")
            assert texts and not any("人工" in t for t in texts), texts
            assert not errors, errors

            # the supervisor page: an agent gets 403, a supervisor sees the figures
            resp = await page.goto(gw.url + "/console/supervisor")
            assert resp is not None and resp.status == 403
            await make_agent(gw, "王主管", role="supervisor")
            sup = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
            await sup.goto(gw.url + "/console/login")
            await sup.fill("#name", "王主管")
            await sup.fill("#password", PASSWORD)
            await sup.click("#login-btn")
            await sup.wait_for_url(gw.url + "/console")
            await sup.goto(gw.url + "/console/supervisor")
            await expect(sup.locator("#s-queue")).to_have_text("0")
            await expect(sup.locator("#s-auto")).to_contain_text("%")
            await expect(sup.locator("body")).to_contain_text("李娜")
            await sup.screenshot(path=str(ARTIFACTS / "supervisor.png"))
        finally:
            await browser.close()
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000
