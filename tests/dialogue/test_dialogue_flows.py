"""End to end: every 95598 flow as a multi-turn conversation through the REST channel.

The real core (seeded once per module, in its own thread and event loop) and a real gateway
per test (fresh SQLite bot store) — nothing mocked.
"""

from __future__ import annotations

import re

import pytest

from tests.chat import Chat


def chat(gw, sender: str | None = None) -> Chat:
    return Chat(gw.http, gw.url, sender)


async def verified(c: Chat, intent_text: str = "查一下我的电费") -> str:
    await c.say(intent_text)
    await c.say("3100000001")
    return await c.text("8000")


# ---------------------------------------------------------------------------------- small talk
async def test_greet_thank_goodbye_rules(gw):
    c = chat(gw)
    out = await c.say("你好")
    assert "95598" in out[0]["text"] and out[0].get("buttons")
    assert "不客气" in await c.text("谢谢") or "应该" in await c.text("谢谢")
    assert "再见" in await c.text("再见")
    en = await c.text("hello")
    assert "95598" in en and re.search(r"[A-Za-z]{4}", en)


# ---------------------------------------------------------------------------------- bills
async def test_bill_query_identity_followup_and_usage(gw):
    c = chat(gw)
    assert "户号" in await c.text("查一下我的电费")
    ask = await c.text("3100000001")
    assert "后4位" in ask and "3100000001" not in ask
    out = await c.text("8000")
    m = re.search(r"(\d{4}-\d{2}) 电费 (\d+\.\d{2}) 元", out)
    assert m, out
    month = m.group(1)
    prev = await c.text("那上个月呢")
    m2 = re.search(r"(\d{4}-\d{2}) 电费 \d+\.\d{2} 元", prev)
    assert m2 and m2.group(1) < month, prev
    usage = await c.text("我用了多少度电")
    assert "度" in usage and m2.group(1) not in "" and "用电量" in usage


async def test_bill_query_english(gw):
    c = chat(gw)
    await c.say("how much is my bill")
    await c.say("3100000001")
    out = await c.text("8000")
    assert "CNY" in out and re.search(r"\d+\.\d{2} CNY", out)


async def bound(gw) -> Chat:
    """An identity bound to 3100000001 before any guessing starts."""
    c = chat(gw)
    await c.say("我要绑定户号")
    await c.say("3100000001")
    assert "绑定" in await c.text("8000")
    return c


async def bill_of(c: Chat) -> str:
    out = await c.text("查一下电费")
    if "多个户号" in out:
        out = await c.text("3100000001")
    return out


async def test_wrong_last4_reveals_nothing_and_locks_after_five(gw):
    owner_bound = await bound(gw)
    attacker = chat(gw)
    await attacker.say("查电费")
    await attacker.say("3100000001")
    for i in range(4):
        out = await attacker.text("1111")
        assert "验证未通过" in out
        assert "元" not in out and "张" not in out and "138" not in out
    out = await attacker.text("1111")
    assert "锁定" in out
    # the guessing identity stays locked, even with the right answer
    await attacker.say("查电费")
    out = await attacker.text("3100000001")
    assert "锁定" in out and "元" not in out
    # ... but the owner, writing from another identity, is not locked out by it
    owner = chat(gw)
    out = await verified(owner, "查电费")
    assert re.search(r"\d+\.\d{2} 元", out), out
    # a customer bound to the account is not affected either
    out = await bill_of(owner_bound)
    assert re.search(r"\d+\.\d{2} 元", out), out


async def test_guessing_spread_over_identities_locks_the_account(gw):
    """Fifteen wrong answers from three identities lock the check for every unbound identity."""
    owner_bound = await bound(gw)
    for _ in range(3):
        guesser = chat(gw)
        await guesser.say("查电费")
        await guesser.say("3100000001")
        outs = [await guesser.text("1111") for _ in range(5)]
        assert "锁定" in outs[-1]
    newcomer = chat(gw)
    await newcomer.say("查电费")
    out = await newcomer.text("3100000001")
    assert "锁定" in out and "元" not in out
    out = await bill_of(owner_bound)  # a bound identity still gets its bill
    assert re.search(r"\d+\.\d{2} 元", out), out


async def test_full_registered_phone_verifies_and_a_wrong_one_counts_as_a_failure(gw):
    c = chat(gw)
    await c.say("查电费")
    await c.say("3100000002")
    out = await c.text("13900139001")  # right tail, wrong number: the whole number is compared
    assert "验证未通过" in out and "元" not in out
    out = await c.text("我的手机号是 139 0013 9000")
    assert "验证通过" in out and re.search(r"\d+\.\d{2} 元", out), out


async def test_work_order_number_given_where_the_account_was_asked(gw, core_url):
    c = chat(gw)
    await verified(c)
    await c.say("我家电表坏了要报修")
    wid = re.search(r"WO\d{12}", await c.text("确认")).group(0)
    other = chat(gw)
    assert "户号" in await other.text("查一下工单进度")
    out = await other.text(wid)
    # the number itself answers the question; the order's account still needs verification
    assert "后4位" in out, out
    out = await other.text("8000")
    assert wid in out, out


async def test_tariff_in_english_names_it_in_english(gw):
    c = chat(gw)
    out = await c.text("how much is electricity per kwh")
    assert "Residential" in out and "over 400 kWh" in out and not re.search(r"[\u4e00-\u9fff]", out), out
    zh = await chat(gw).text("电价多少")
    assert "400 度以上" in zh and "第1档" in zh


async def test_unknown_account_is_refused(gw):
    c = chat(gw)
    await c.say("查电费")
    out = await c.text("3199999999")
    assert "没有找到" in out


# ---------------------------------------------------------------------------------- payment
async def test_pay_bill_without_provider_tells_how(gw):
    c = chat(gw)
    await verified(c)
    out = await c.text("我要交电费")
    assert re.search(r"应缴 \d+\.\d{2} 元", out) and "网上国网" in out


async def test_pay_bill_no_arrears(gw):
    c = chat(gw)
    await c.say("交电费")
    await c.say("3100000002")
    out = await c.text("9000")
    assert "没有欠费" in out, out  # account 2 (phone 13900139000) owes nothing


async def test_payment_issue_opens_work_order_after_confirmation(gw):
    c = chat(gw)
    await verified(c)
    out = await c.text("我交了电费但是没到账")
    assert "工单" in out and out.count("WO") == 0
    done = await c.text("是的")
    assert re.search(r"WO\d{12}", done), done


# ---------------------------------------------------------------------------------- outages
async def test_report_outage_known_outage_no_duplicate(gw):
    c = chat(gw)
    await verified(c)
    out = await c.text("我家停电了")
    assert "预计" in out and "无需重复报修" in out and not re.search(r"WO\d{12}", out)
    sub = await c.text("好的")
    assert "订阅" in sub


async def test_an_unclear_reply_keeps_the_yes_no_question_open(gw):
    """A customer who types something meaningless while the bot waits for yes/no is asked
    for a yes or no, and a "yes" afterwards still takes the offer; a real new request lets
    the offer lapse."""
    c = chat(gw)
    await verified(c)
    assert "恢复供电时通知您" in await c.text("我家停电了")
    again = await c.text("0000")
    assert "是" in again and "否" in again and "没有理解" in again
    assert "订阅" in await c.text("好的")

    d = chat(gw)
    await verified(d)
    assert "恢复供电时通知您" in await d.text("我家停电了")
    bill = await d.text("查一下我的电费")
    assert "元" in bill and "订阅" not in bill
    assert "订阅" not in await d.text("好的")  # the offer lapsed with the new request


async def test_report_outage_unknown_creates_repair_order(gw):
    c = chat(gw)
    assert "地址" in await c.text("我家停电了")
    out = await c.text("松江区广富林路999号")
    assert "联系电话" in out
    out = await c.text("13700001111")
    assert "确认" in out
    done = await c.text("确认")
    assert re.search(r"WO\d{12}", done) and "45分钟" in done


async def test_outage_schedule(gw):
    c = chat(gw)
    out = await c.text("浦东新区最近有计划停电吗")
    assert "浦东新区" in out and ("计划停电" in out)


# ---------------------------------------------------------------------------------- repair / hazard
async def test_hazard_emergency_script_first_then_order_and_the_bot_answers_on(gw):
    """Safety first, then where and who, then a yes: only then the emergency order (with its
    address and phone), dispatched; the bot goes on answering (no queue for an agent)."""
    c = chat(gw)
    out = await c.say("楼下电线断了还在冒火花")
    assert "10米" in out[0]["text"] and "95598" in out[0]["text"]
    assert not any(re.search(r"WO\d{12}|正在赶往", o["text"]) for o in out) and "位置" in out[-1]["text"]
    assert "手机" in await c.text("浦东新区张江路100号门口")
    confirm = await c.text("13912345678")
    assert "确认" in confirm and "张江路100号" in confirm
    done = await c.text("确认")
    wo = re.search(r"WO\d{12}", done).group(0)
    assert "派" in done and "转接人工" not in done
    after = await c.text("大概多久能到？")
    assert wo in after and re.search(r"\d{2}:\d{2} 前", after)  # the order, its status and its deadline
    async with gw.http.get(f"{gw.settings.core_base_url}/api/v1/work-orders/{wo}") as r:
        order = await r.json()
    assert order["priority"] == "emergency" and "张江路100号" in order["address"]
    assert order["contact_phone"] == "13912345678" and order["details"]["hazard"] is True


async def test_repair_request_form(gw):
    c = chat(gw)
    await c.say("我家电表坏了需要报修")
    out = await c.text("闵行区莘庄镇莘松路10号")
    assert "联系电话" in out
    await c.say("13700002222")
    done = await c.text("是的")
    assert re.search(r"WO\d{12}", done)


# ---------------------------------------------------------------------------------- complaint & co
async def test_complaint_and_angry_complaint_handoff(gw):
    c = chat(gw)
    out = await c.text("我要投诉你们的抄表员态度很差")
    if "联系电话" in out:
        out = await c.text("13700003333")
    assert "确认" in out
    done = await c.text("确认")
    assert re.search(r"WO\d{12}", done) and "1个工作日" in done
    # a complaint about a member of staff: filed as urgent for a person to follow up, the chat
    # not queued for an agent
    assert "专人跟进" in done and "转接人工" not in done
    angry = chat(gw)
    out = await angry.text("我要投诉！！！第三次停电了，你们太差了")
    assert out.startswith("非常抱歉") and not re.search(r"WO\d{12}", out)  # an apology first, nothing written yet
    assert "确认" in out


async def test_feedback_and_anonymous_violation(gw):
    c = chat(gw)
    out = await c.text("我有个建议，希望网上国网App增加夜间模式")
    if "联系电话" in out:
        out = await c.text("13700004444")
    done = await c.text("确认")
    assert re.search(r"WO\d{12}", done)
    v = chat(gw)
    await v.say("我要举报窃电")
    await v.say("隔壁工厂私拉电线绕过电表偷电")
    out = await v.text("宝山区友谊路1号")
    assert "匿名" in out
    out = await v.text("匿名")
    done = await v.text("确认")
    assert re.search(r"WO\d{12}", done)


async def test_work_order_status_by_id_and_latest(gw):
    c = chat(gw)
    await verified(c)
    await c.say("我家电表坏了要报修")
    done = await c.text("确认")
    wo = re.search(r"WO\d{12}", done).group(0)
    out = await c.text(f"{wo}进度怎么样了")
    assert wo in out and ("已受理" in out or "派单" in out)
    out = await c.text("我的工单进度")
    assert "WO" in out
    stranger = chat(gw)
    out = await stranger.text(f"{wo}进度怎么样了")
    assert "后4位" in out and "已受理" not in out


# ---------------------------------------------------------------------------------- applications
@pytest.mark.parametrize("text,material", [("我想新装一个电表", "身份证"), ("屋顶光伏怎么并网", "逆变器"), ("我想装个充电桩", "车位")])
async def test_applications(gw, text, material):
    c = chat(gw)
    out = await c.text(text)
    assert material in out
    if "地址" in out:
        out = await c.text("青浦区华新镇华腾路1号")
    if "联系电话" in out:
        out = await c.text("13700005555")
    assert "申请" in out
    done = await c.text("是的")
    assert re.search(r"WO\d{12}", done) and "预约" in done


async def test_account_change_requires_identity(gw):
    c = chat(gw)
    out = await c.text("我要办理过户")
    assert "产权" in out and "户号" in out
    await c.say("3100000001")
    out = await c.text("8000")
    assert "申请" in out
    done = await c.text("是的")
    assert re.search(r"WO\d{12}", done)


# ---------------------------------------------------------------------------------- tariffs / invoices
async def test_tariff_consult_quote_from_core(gw, core_url):
    c = chat(gw)
    out = await c.text("300度电多少钱")
    m = re.search(r"(\d+\.\d{2}) 元", out)
    assert m
    async with gw.http.get(f"{core_url}/api/v1/tariffs/residential/quote", params={"kwh": "300"}) as r:
        q = await r.json()
    assert m.group(1) == f"{float(q['amount']):.2f}"
    out = await c.text("电价是怎么算的")
    assert "档" in out


async def test_invoice_request(gw):
    c = chat(gw)
    await verified(c)
    out = await c.text("我要开电子发票")
    assert "发票" in out


# ---------------------------------------------------------------------------------- appointment
async def test_book_appointment_real_slots(gw):
    c = chat(gw)
    await verified(c)
    out = await c.say("我想预约营业厅办业务")
    text = "\n".join(o["text"] for o in out)
    if "营业厅（" in text or "选择营业厅" in text:
        out = await c.say("1")
        text = "\n".join(o["text"] for o in out)
    assert "时段" in text, text
    out = await c.text("1")
    assert "确认" in out
    done = await c.text("确认")
    assert "预约成功" in done


# ---------------------------------------------------------------------------------- notices / binding
async def test_subscribe_unsubscribe_and_bind(gw):
    c = chat(gw)
    await verified(c)
    out = await c.text("我想订阅停电通知")
    assert "订阅" in out and "确认" in out  # a yes before anything is written
    out = await c.text("是的")
    assert "订阅" in out and "138****8000" in out
    out = await c.text("退订停电通知")
    assert "确认" in out
    out = await c.text("确认")
    assert "已退订" in out
    b = chat(gw)
    await b.say("绑定户号")
    await b.say("3100000002")
    out = await b.text("0000")
    assert "验证未通过" in out


async def test_bind_on_one_channel_recognised_later(gw):
    c = chat(gw)
    await c.say("我要绑定户号")
    await c.say("3100000001")
    out = await c.text("8000")
    assert "绑定" in out and "确认" in out and "已绑定" not in out
    out = await c.text("好的")
    assert "已绑定" in out
    out = await c.text("查电费")
    assert re.search(r"\d+\.\d{2} 元", out)


# ---------------------------------------------------------------------------------- form behaviour
async def test_interruption_inside_form_then_resume_and_cancel(gw):
    c = chat(gw)
    await c.say("我家电表坏了需要报修")
    out = await c.text("300度电多少钱")
    assert re.search(r"\d+\.\d{2} 元", out) and "继续" in out and "地址" in out
    out = await c.text("算了")
    assert "取消" in out
    out = await c.text("你好")
    assert "95598" in out


async def test_vague_message_is_asked_to_say_more(gw):
    """A few words the NLU is not sure of ("有个事") hear "please rephrase", not "out of scope"."""
    c = chat(gw)
    first = await c.say("有个事")
    assert "换个说法" in first[0]["text"] and first[0].get("buttons")
    assert "服务范围" not in first[0]["text"]


async def test_fallback_then_offer_then_human(gw):
    c = chat(gw)
    first = await c.say("今天天气怎么样呀")
    assert "服务范围" in first[0]["text"]  # not something 95598 handles, said as such
    second = await c.text("推荐一部电影")
    assert "服务范围" in second and "人工" in second  # the second in a row offers a person
    third = await c.text("好的")
    assert "转接人工" in third
