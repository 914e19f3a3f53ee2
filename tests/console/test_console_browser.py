"""The console in a real browser (Debian's Chromium driven by Playwright), as agents and a
supervisor use it, on a desktop and a phone screen, with web-chat customers writing through the
REST webhook in the same test:

log in (a wrong password keeps the name), enable notifications, a customer escalates (sound,
notification, unread count in the list and the tab title), the customer's identity (masked name,
account, channel, earlier conversations), take with T, Reply/Note toggle (a note stays internal
whatever key sends it), canned responses edited in the UI and inserted with "/", readable intent
and slot labels in zh and en, views Mine/Unassigned/All, filters, search, closing with C and
reopening, the help overlay, the queue naming customers (masked) before anyone opened them and a
search by a customer's name; the supervisor's containment, per-agent table, SLA breaches, trend
and assigning from the queue; every page checked with axe-core (vendored). Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from bot.app import CORE, SESSIONMAKER
from bot.dialogue.handoff import Handoff
from bot.models import utcnow
from stack import run_core, run_gateway, wait_until
from console_support import PASSWORD, Customer, make_agent

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"  # axe-core 4.10.3 from npm (MPL-2.0)
SIZES = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}

# a Notification the test can see: records what the page shows and grants what it asks for
FAKE_NOTIFICATION = """
window.__notes = [];
window.__asked = 0;
function FakeNotification(title, opts) { window.__notes.push({ title: title, body: (opts || {}).body || "" }); }
FakeNotification.permission = "default";
FakeNotification.requestPermission = function (cb) {
  window.__asked++; FakeNotification.permission = "granted"; if (cb) cb("granted"); return Promise.resolve("granted");
};
window.Notification = FakeNotification;
"""


async def axe_check(page: Page, name: str) -> None:
    """axe-core on the page as it is: no serious or critical violation (WCAG 2 A/AA rules)."""
    await page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the driver: the page's CSP allows no inline script
    result = await page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})")
    bad = [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, ensure_ascii=False)}"


async def login(page: Page, url: str, name: str) -> None:
    await page.goto(url + "/console/login")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("#login-btn")
    await page.wait_for_url(url + "/console")


@pytest.mark.parametrize("size", list(SIZES))
async def test_agent_console_in_the_browser(tmp_path, interpreter, size: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    viewport = SIZES[size]
    shot = lambda page, what: page.screenshot(path=str(ARTIFACTS / f"console-{what}-{size}.png"))  # noqa: E731
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, \
            run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter) as gw, \
            aiohttp.ClientSession() as http, async_playwright() as pw:
        await make_agent(gw, "李娜")
        await make_agent(gw, "王主管", role="supervisor")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = await browser.new_context(viewport=viewport, locale="zh-CN", is_mobile=size == "phone",
                                            has_touch=size == "phone")
            await ctx.add_init_script(FAKE_NOTIFICATION)
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())

            # (8) a wrong password keeps the name typed and clears the password
            await page.goto(gw.url + "/console")
            assert page.url.endswith("/console/login")
            await axe_check(page, "login")
            await page.fill("#name", "李娜")
            await page.fill("#password", "wrong password")
            await page.click("#login-btn")
            await expect(page.locator(".login-card .error")).to_contain_text("用户名或密码错误")
            await expect(page.locator("#name")).to_have_value("李娜")
            await expect(page.locator("#password")).to_have_value("")
            await expect(page.locator("#password")).to_be_focused()
            await shot(page, "login-error")
            await page.fill("#password", PASSWORD)
            await page.click("#login-btn")
            await page.wait_for_url(gw.url + "/console")
            await expect(page.locator("#conn")).to_have_class("conn on", timeout=10_000)

            # (4) notifications are asked for on a click (a browser only asks after a gesture)
            await page.click("#notify-btn")
            assert await page.evaluate("window.__asked") == 1
            await expect(page.locator("#notify-btn")).to_be_hidden()

            # an earlier conversation of the same account, handled and closed (another REST sender)
            old = Customer(http, gw.url, "web-" + uuid.uuid4().hex[:6])
            await gw.app[CORE].bind_account("3100000001", "rest", old.sender)
            await old.say("转人工")
            old_item = page.locator(f'.q-item[data-conversation="{old.conversation_id}"]')
            await expect(old_item).to_be_visible(timeout=10_000)
            await old_item.click()
            await expect(page.locator("#take-btn")).to_be_visible()
            await page.keyboard.press("t")  # (5) shortcut: take
            await expect(page.locator("#chat-status")).to_contain_text("处理中", timeout=10_000)
            await page.locator("#history").click()  # focus out of any field
            await page.keyboard.press("c")  # (5) shortcut: close (confirm accepted)
            await expect(page.locator("#chat-status")).to_contain_text("已结束", timeout=10_000)

            # a web-chat customer asks for a human: sound, notification, unread count, tab title
            beeps = int(await page.evaluate("document.body.dataset.beeps || '0'"))
            notes = await page.evaluate("window.__notes.length")
            c = Customer(http, gw.url, "web-" + uuid.uuid4().hex[:6])
            await gw.app[CORE].bind_account("3100000001", "rest", c.sender)
            await c.say("我家这个月电费怎么这么高")
            texts = await c.say("转人工")
            assert any("转接人工" in t for t in texts)
            await c.poll()
            item = page.locator(f'.q-item[data-conversation="{c.conversation_id}"]')
            await expect(item).to_be_visible(timeout=10_000)
            await expect(item).to_contain_text("要求人工")
            await expect(item.locator(".unread")).to_have_text("2")  # the two messages since shortly before it
            await expect(page).to_have_title("(2) 坐席工作台 · 95598")
            await wait_until(lambda: page.evaluate(f"window.__notes.length > {notes}"), timeout=5)
            assert "新的转人工会话" in (await page.evaluate("window.__notes"))[-1]["title"]
            assert int(await page.evaluate("document.body.dataset.beeps")) > beeps
            await expect(page.locator("#count-unassigned")).to_have_text("1")
            # who the customer is, masked, before anyone opened the conversation
            await expect(item.locator(".q-name")).to_have_text("张* · 31******01")
            await shot(page, "queue")

            # (3) open it: who the customer is (masked), the channel, the earlier conversation
            await item.click()
            await expect(item.locator(".unread")).to_have_count(0)
            await expect(page).to_have_title("坐席工作台 · 95598")
            await expect(page.locator("#cust-name")).to_have_text("张*", timeout=10_000)
            await expect(page.locator("#cust-account")).to_have_text("31******01")
            await expect(page.locator("#cust-channel")).to_have_text("网页")
            await expect(page.locator("#chat-title")).to_have_text("张* · 31******01")
            await expect(page.locator("#earlier li")).to_have_count(1)
            await expect(page.locator("#earlier")).to_contain_text("已结束 · 李娜")
            await expect(page.locator("#history")).to_contain_text("我家这个月电费怎么这么高")
            # (6) intents in the agent's language, not identifiers
            intent = page.locator("#history .tag.intent").first
            await expect(intent).to_be_visible()
            name = await intent.get_attribute("data-intent")
            assert name and (await intent.text_content() or "").split(" ")[0] != name
            await expect(page.locator("#take-btn")).to_be_visible()
            await item.focus()
            await page.keyboard.press("t")
            await expect(page.locator("#chat-status")).to_contain_text("处理中", timeout=10_000)
            await expect(page.locator("#account")).to_contain_text("138****8000", timeout=10_000)
            await expect(page.locator(".q-item.active")).to_contain_text("张* · 31******01")

            # customer text containing markup is shown as text, never run
            hostile = '<b>bold</b><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
            answer = await c.say(hostile)
            assert len(answer) <= 1 and all("agent" in t or "人工" in t for t in answer), answer
            await expect(page.locator("#history")).to_contain_text("<script>window.__pwned=2</script>", timeout=10_000)
            assert await page.evaluate("window.__pwned === undefined")
            assert await page.locator("#history b, #history img, #history script").count() == 0

            # (1) Reply / Note: the note mode colours the editor; Ctrl+Enter then only adds a note
            editor = page.locator("#reply-text")
            reply_bg = await editor.evaluate("e => getComputedStyle(e).backgroundColor")
            await page.click("#mode-note")
            await expect(page.locator("#composer")).to_have_class("composer note-mode")
            assert await editor.evaluate("e => getComputedStyle(e).backgroundColor") != reply_bg
            await expect(page.locator("#reply-btn")).to_contain_text("保存备注")
            await editor.fill("客户情绪较急，已核对上月抄表数据")
            await shot(page, "note-mode")
            await editor.press("Control+Enter")
            await expect(page.locator("#history .msg-note")).to_contain_text("已核对上月抄表数据", timeout=10_000)
            # back to Reply: "/" lists canned responses, Enter inserts one
            await page.click("#mode-reply")
            await expect(page.locator("#composer")).not_to_have_class("composer note-mode")
            await editor.fill("")
            await editor.press_sequentially("/wa")
            await expect(page.locator("#canned-picker")).to_be_visible()
            await expect(page.locator("#canned-picker .pick").first).to_contain_text("/wait")
            await editor.press("Enter")
            await expect(editor).to_have_value("请您稍等，我正在为您查询。")
            await editor.fill("您好，我是客服李娜。您本月用电量较上月增加，已为您核对账单，请稍等。")
            await shot(page, "reply-mode")
            await editor.press("Control+Enter")
            await expect(page.locator("#history .msg-agent")).to_contain_text("我是客服李娜", timeout=10_000)
            got = await wait_until(c.poll, timeout=10)
            # the customer was told the agent joined when she took it; then her reply, never the note
            assert got == ["人工客服李娜已接入，正在为您服务。", "您好，我是客服李娜。您本月用电量较上月增加，已为您核对账单，请稍等。"]
            assert not any("抄表" in t for t in c.received)

            # (5) canned responses edited in the UI, then found by "/"
            await page.click("#canned-btn")
            await expect(page.locator("#canned-dialog")).to_be_visible()
            await page.fill("#canned-shortcut", "meter")
            await page.fill("#canned-text", "我们将安排人员上门核对电表读数。")
            await page.click("#canned-save")
            await expect(page.locator("#canned-list")).to_contain_text("/meter")
            await axe_check(page, "canned dialog")
            await shot(page, "canned")
            await page.click("#canned-close")
            await editor.fill("")
            await editor.press_sequentially("/met")
            await editor.press("Tab")
            await expect(editor).to_have_value("我们将安排人员上门核对电表读数。")
            await editor.fill("")

            # reveal one field (audited)
            await page.locator("#account button.reveal").first.click()
            await expect(page.locator("#account .revealed").first).to_be_visible()
            await shot(page, "conversation")
            await axe_check(page, "console")

            # (6) slot and intent labels in English when the agent picks English
            await page.select_option("#lang", "en")
            assert (await intent.text_content() or "").split(" ")[0] != name
            await expect(page.locator("#history .tag.intent").first).not_to_contain_text(name)
            await page.select_option("#lang", "zh")

            # (2) views, filters and search
            await page.click('.view-btn[data-view="mine"]')
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await expect(page.locator("#count-mine")).to_have_text("1")
            await page.click('.view-btn[data-view="unassigned"]')
            await expect(page.locator("#queue .q-item")).to_have_count(0)
            await page.click('.view-btn[data-view="all"]')
            await page.select_option("#f-channel", "wechat")
            await expect(page.locator("#queue .q-item")).to_have_count(0)
            await page.select_option("#f-channel", "rest")
            await page.select_option("#f-priority", "normal")
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await page.select_option("#f-priority", "")
            await page.select_option("#f-status", "released")
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await expect(page.locator(f'.q-item[data-conversation="{old.conversation_id}"]')).to_be_visible()
            await page.select_option("#f-status", "any")
            await expect(page.locator("#queue .q-item")).to_have_count(2)
            await page.fill("#search", "电费怎么这么高")  # a message
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await expect(page.locator("#queue .q-item")).to_have_attribute("data-conversation", c.conversation_id)
            await page.fill("#search", "抄表")  # a note
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await page.fill("#search", "张伟")  # a customer's name (the core's): both of her conversations
            await expect(page.locator("#queue .q-item")).to_have_count(2)
            await expect(page.locator("#queue .q-item .q-name")).to_have_text(["张* · 31******01"] * 2)
            await expect(page.locator("#search-note")).to_be_hidden()
            assert "张伟" not in await page.locator("#queue").inner_text()  # the list shows masked names only
            await shot(page, "name-search")
            await page.fill("#search", old.sender)  # a customer
            await expect(page.locator("#queue .q-item")).to_have_count(1)
            await expect(page.locator("#queue .q-item")).to_have_attribute("data-conversation", old.conversation_id)
            await shot(page, "search")
            # the closed one reopens: a new handoff held by this agent
            await page.locator("#queue .q-item").click()
            await expect(page.locator("#reopen-btn")).to_be_visible()
            await page.click("#reopen-btn")
            await expect(page.locator("#chat-status")).to_contain_text("处理中 · 李娜", timeout=10_000)
            await page.fill("#search", "")
            await page.select_option("#f-status", "open")
            await expect(page.locator("#count-mine")).to_have_text("2")

            # (5) J walks the list; ? shows the help; Escape closes it
            await page.locator("#history").click()
            before = await page.locator("#chat-id").text_content()
            await page.keyboard.press("j")
            await expect(page.locator("#chat-id")).not_to_have_text(before or "")
            await page.keyboard.press("?")
            await expect(page.locator("#help-dialog")).to_be_visible()
            await expect(page.locator("#help-dialog")).to_contain_text("Ctrl")
            await axe_check(page, "help")
            await shot(page, "help")
            await page.keyboard.press("Escape")
            await expect(page.locator("#help-dialog")).to_be_hidden()

            # hand back to the bot; the customer is asked for a score, then the bot answers again
            await page.locator(f'.q-item[data-conversation="{c.conversation_id}"]').click()
            await expect(page.locator("#close-btn")).to_be_visible()
            await page.click("#close-btn")
            await expect(page.locator("#chat-status")).to_contain_text("已结束", timeout=10_000)
            ask = await wait_until(c.poll, timeout=10)
            assert "1–5" in ask[0]
            await c.say("5")
            texts = await c.say("你好")
            assert texts and not any("人工" in t for t in texts), texts
            assert not errors, errors

            # the supervisor page: an agent gets 403
            resp = await page.goto(gw.url + "/console/supervisor")
            assert resp is not None and resp.status == 403

            # (7) a conversation waiting past its SLA (normal: 5 minutes), and a bot-only one
            async with gw.app[SESSIONMAKER]() as s, s.begin():
                s.add(Handoff(conversation_id="rest:web-late01", reason="request_human", status="waiting",
                              created_at=utcnow() - timedelta(minutes=12)))
            await Customer(http, gw.url, "web-" + uuid.uuid4().hex[:6]).say("你好")
            sup_ctx = await browser.new_context(viewport=viewport, locale="zh-CN", is_mobile=size == "phone")
            sup = await sup_ctx.new_page()
            sup.on("pageerror", lambda e: errors.append(str(e)))
            await login(sup, gw.url, "王主管")
            await sup.goto(gw.url + "/console/supervisor")
            # 4 conversations wrote (old, c, the bot-only one; the late one never wrote):
            # containment counts only the bot-only one
            await expect(sup.locator("#s-convs")).to_have_text("3")
            await expect(sup.locator("#s-auto")).to_have_text("33.3%")
            await expect(sup.locator("#s-max")).to_contain_text("12 分")
            await expect(sup.locator("#sla")).to_contain_text("rest:web-late01")
            await expect(sup.locator("#sla-count")).to_have_text("1")
            row = sup.locator('#agents tr[data-agent="李娜"]')
            await expect(row).to_contain_text("5 / 5")  # the customer's score
            await expect(row.locator("td").nth(2)).to_have_text("1")  # holds the reopened one
            await expect(row.locator("td").nth(3)).to_have_text("2")  # closed two
            await expect(sup.locator("#trend svg rect")).to_have_count(48)
            await expect(sup.locator("#trend")).to_have_attribute("data-total", "3")
            late = sup.locator('#sup-queue tr', has_text="rest:web-late01")
            await expect(late).to_contain_text("超时")
            await axe_check(sup, "supervisor")
            await sup.screenshot(path=str(ARTIFACTS / f"supervisor-{size}.png"), full_page=True)
            # the queue is actionable: assign the late one to 李娜
            await late.locator("select.assign-to").select_option("李娜")
            await expect(late).to_contain_text("处理中 · 李娜", timeout=10_000)
            assert not errors, errors
        finally:
            await browser.close()
    assert (ARTIFACTS / f"console-conversation-{size}.png").stat().st_size > 10_000
