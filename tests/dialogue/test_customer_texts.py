"""Every sentence a customer reads is a response of training_data/domain.yml, and the brand is
a setting: a utility that is not State Grid changes no installed file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.texts import TextService
from channels.base import ChannelContext

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")

# Chinese string literals that are not text for customers, by module. Regular expressions
# (arguments of ``re.compile`` / ``re.search`` / ...) are not listed: they are recognised.
ALLOWED: dict[str, tuple[str, set[str]]] = {
    "bot/testing/run.py": (
        "the conversation-test runner's demo-data facts (the seeded accounts' streets), for placeholders",
        {"碧波路", "漕溪北路", "世纪大道"},
    ),
    "bot/openapi.py": (
        "example request bodies in the API document (what an agent might type, a customer's words for "
        "/model/parse), never sent by the bot",
        {"您好，我来为您处理。", "查一下户号3100000001上个月的电费"},
    ),
    "bot/settings.py": (
        "the brand settings' defaults themselves",
        {"国家电网", "国网", "国网电力客服", "小e", "网上国网"},
    ),
    "bot/dialogue/forms.py": (
        "the separator joining a detail the customer added to a report's own words (a work order's "
        "description, a record sent to the core)",
        {"；"},
    ),
    "bot/dialogue/flows/outages.py": (
        "records sent to the core (a work order's description) when the customer gave none",
        {"停电", "报修"},
    ),
    "bot/rasa/actions.py": (
        "the same records sent to the core as powerbot's own flows (a work order's description, an "
        "appointment's purpose) when the customer gave none",
        {"停电", "报修", "业务办理"},
    ),
    "bot/rasa/replies.py": ("punctuation a customer may type around a button's title (matching, never shown)",
                            {" \t\r\n·•-*>。.!！?？"}),
    "bot/dialogue/flows/appointments.py": (
        "a record sent to the core (an appointment's purpose) when the customer gave none",
        {"业务办理"},
    ),
    "bot/console/service.py": (
        "the agent console (agent-facing): handoff reason and priority labels, system lines in the "
        "agent's transcript, the agent's own canned quick replies (the agent picks, edits and sends "
        "them as their words), Chinese digits of a customer's 1-5 score (parsing)",
        {"要求人工", "投诉/情绪激动", "投诉/需人工跟进", "多次未识别", "安全隐患", "重复缴费", "低", "普通", "高", "紧急",
         "您好，我是人工客服，很高兴为您服务，请问有什么可以帮您？",
         "请您稍等，我正在为您查询。",
         "抢修人员已在赶往现场的路上（城区平均45分钟内到达），请您远离断线、冒火等危险区域，注意安全。",
         "您反映的问题已登记工单，我们会在1个工作日内与您联系，请保持电话畅通。",
         "您的缴费已收到，到账可能有几分钟延迟，请稍后再查询。",
         "感谢您的耐心等待，请问还有其他可以帮您的吗？",
         "一", "二", "两", "三", "四", "五", " 接入会话", "会话由 ", " 转给 ", " 结束会话，交还机器人", "主管", "转人工："},
    ),
    "bot/console/views.py": (
        "the agent console's API errors (agent-facing)",
        {"该会话由其他坐席处理", "页面已过期，请重新登录（CSRF）", "登录失败次数过多，账号已锁定，请 15 分钟后再试",
         "用户名或密码错误", "会话状态已变化", "会话未被接入或已结束", "会话已结束", "没有该坐席", "会话已在该坐席名下",
         "请先登录", "仅主管可用", "已被 ", " 接入", "其他坐席"},
    ),
    "bot/console/hooks.py": (
        "a system line in the agent's transcript and the callback work order's description (back office)",
        {"客户评分 ", " 分", "客户转人工时无坐席在线，请求人工回电。", "（原因：", "）"},
    ),
    "payments/alipay.py": (
        "the duplicate-payment work order's description and the agents' handoff summary (back office)",
        {"重复缴费待退款：支付宝订单 ", "（交易号 ", "）缴纳 ", " 元时账单已由其他订单缴清，",
         " 元未抵扣任何账单，已记为账户余额。请核实后联系客户办理退款或抵扣下期电费。",
         "重复缴费 ", " 元已记为账户余额（订单 ", "），请联系客户办理退款或抵扣"},
    ),
    "channels/menu.py": (
        "what a menu click stands for: the customer's words handed to the NLU, never shown",
        {"查电费", "我要交电费", "查用电量", "我家停电了", "最近有停电计划吗", "我要报修", "查询工单进度", "转人工",
         "绑定户号", "我要投诉", "电价是多少"},
    ),
    "channels/wechat.py": (
        "a subscribe event and a location message as the customer's words (NLU input)",
        {"绑定户号", "我附近停电了吗？我的位置："},
    ),
    "channels/alipay.py": ("a follow event as the customer's words (NLU input)", {"绑定户号"}),
    "bot/notify/cli.py": ("operator CLI help", {"District whose subscribers are told (e.g. 浦东新区).",
                                                "Reason shown to customers (e.g. 线路检修)."}),
    "bot/shell.py": ("the developer shell's prompt", {"你"}),
}
_REGEX_CALLS = {"compile", "search", "match", "fullmatch", "sub", "subn", "findall", "finditer", "split"}


def _cjk_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))  # docstrings
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _REGEX_CALLS \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args:
            skip.update(id(n) for n in ast.walk(node.args[0]))  # a regular expression (NLU, parsing)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip and CJK.search(n.value)]


def test_no_customer_text_outside_domain_yml() -> None:
    found: list[str] = []
    for package in ("bot", "channels", "payments"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            allowed = ALLOWED.get(rel, ("", set()))[1]
            found += [f"{rel}:{line}: {text!r}" for line, text in _cjk_literals(path) if text not in allowed]
    assert not found, "customer text belongs in training_data/domain.yml (bot.texts.TextService):\n" + "\n".join(found)


def test_allow_list_has_no_stale_entries() -> None:
    for rel, (_why, allowed) in ALLOWED.items():
        present = {text for _, text in _cjk_literals(ROOT / rel)}
        assert allowed <= present, (rel, allowed - present)


def test_default_brand_reproduces_the_texts() -> None:
    t = TextService(Settings())
    assert t.text("utter_busy").endswith("请远离危险并拨打95598。")
    assert t.text("utter_welcome", channel="wechat").startswith("您好，欢迎关注国网电力客服！我是智能客服小e，")
    assert "国网95598" in t.render("utter_greet", lang="zh", channel="rest").text
    assert t.text("utter_email_footer", channel="email") == "国家电网95598 · 直接回复本邮件即可继续咨询。"
    assert t.text("utter_notice_signature") == "【国网电力】"


def test_brand_settings_change_greeting_busy_text_and_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"BRAND_NAME": "南方电网", "BRAND_SHORT_NAME": "南网", "BRAND_NAME_EN": "China Southern Power Grid",
                        "SERVICE_NAME": "南网在线", "ASSISTANT_NAME": "小南", "HOTLINE": "95598-1",
                        "APP_NAME": "南网在线App"}.items():
        monkeypatch.setenv(f"POWERBOT_{name}", value)
    settings = Settings()
    t = TextService(settings)
    greet = t.render("utter_greet", lang="zh", channel="rest").text
    assert "南网95598-1" in greet and "国网" not in greet
    assert "95598-1" in t.render("utter_greet", lang="en", channel="rest").text
    busy = t.text("utter_busy")
    assert busy.endswith("拨打95598-1。")
    assert t.text("utter_busy", lang="en").endswith("call 95598-1.")
    welcome = t.text("utter_welcome", channel="wechat")
    assert "南网在线" in welcome and "小南" in welcome and "国网" not in welcome
    assert t.text("utter_email_footer", channel="email").startswith("南方电网95598-1")
    assert t.text("utter_notice_signature") == "【南网电力】"
    # the text service the wiring hands a channel takes the brand from its settings
    ctx = ChannelContext(settings=settings, processor=None, sessionmaker=None, http=None, core=None,  # type: ignore[arg-type]
                         texts=TextService(settings))
    assert ctx.texts.text("utter_rate_limited", channel="sms").endswith("拨打95598-1。")
    from channels.rest import render_chat_page

    page = render_chat_page(t).decode()
    assert "南网 95598-1" in page and "95598-1智能客服" in page and "国网" not in page
    # and the bundled responses and the web chat page name no brand of their own
    assert not re.search(r"95598|国网|国家电网|小e", (ROOT / "channels" / "static" / "chat.html").read_text(encoding="utf-8"))
    for name, variants in t.domain.responses.items():
        for v in variants:
            assert not re.search(r"95598|国网|国家电网|State Grid|小e", v.get("text", "")), (name, v["text"])


async def test_pipeline_busy_notice_uses_the_brand(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.pipeline import Pipeline

    monkeypatch.setenv("POWERBOT_HOTLINE", "12398")
    sm = type("SM", (), {"kw": {}})()
    p = Pipeline(sm, object(), texts=TextService(Settings()))  # type: ignore[arg-type]
    assert p.busy_text["zh"].endswith("拨打12398。") and p.busy_text["en"].endswith("call 12398.")
    assert p.unprocessable_text("zh").endswith("拨打12398。")
