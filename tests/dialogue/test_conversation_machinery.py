"""The conversation machinery, judged by what the core holds afterwards, not only by the text:
a hazard is filed only with a place, a phone and a yes; a no or a cancel writes nothing; a form
takes only answers of its kind; every write waits for a yes; two requests in one message are
both answered; the customer's language is not switched by an "ok".

The real core (one per module) and a real gateway per test, through the REST channel.
"""

from __future__ import annotations

import re

from backend_client import CoreClient
from bot.app import CORE, SESSIONMAKER
from bot.dialogue.handoff import get_active_handoff
from tests.chat import Chat


def chat(gw, sender: str | None = None) -> Chat:
    return Chat(gw.http, gw.url, sender)


async def handoff_of(gw, c: Chat):  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as session:
        return await get_active_handoff(session, f"rest:{c.sender}")


async def orders_for(gw, phone: str) -> list:
    async with CoreClient(gw.settings.core_url) as core:
        return await core.list_work_orders(contact_phone=phone)


# ---------------------------------------------------------------------------------- hazards
async def test_hazard_is_filed_only_after_place_phone_and_yes(gw):
    c = chat(gw)
    first = await c.text("小区门口电线断了在冒火花")
    assert "远离" in first and "95598" in first and not re.search(r"WO\d{12}", first)
    assert "位置" in await c.text("13711110001")  # a phone where the place is asked: kept, the place asked again
    assert await orders_for(gw, "13711110001") == []
    confirm = await c.text("闵行区莘庄路300弄门口")
    assert "确认" in confirm and "莘庄路300弄" in confirm
    assert await orders_for(gw, "13711110001") == []  # nothing written before the yes
    done = await c.text("对，快派人来")
    assert re.search(r"WO\d{12}", done) and "派" in done
    (wo,) = await orders_for(gw, "13711110001")
    assert wo.priority == "emergency" and wo.type == "repair" and "莘庄路300弄" in wo.address
    assert wo.details.get("hazard") is True


async def test_hazard_declined_files_nothing_and_hands_off_nothing(gw):
    c = chat(gw)
    sender_phone = "13711110002"
    await c.text("马路上电线断了在冒火花")
    await c.text("浦东新区东方路800号")
    await c.text(sender_phone)
    out = await c.text("等等，不用了，火花没了，物业电工已经来了")
    assert "注意安全" in out or "远离" in out
    assert await orders_for(gw, sender_phone) == []
    assert await handoff_of(gw, c) is None
    # the bot still answers: no "passed to an agent"
    assert "人工客服，请稍候" not in await c.text("你好")


async def test_a_tariff_question_mid_hazard_is_answered_and_the_report_goes_on(gw):
    c = chat(gw)
    await c.text("我家门口的电缆在冒火花")
    side = await c.text("对了顺便问一下，现在谷电是几点开始？")
    assert "22:00" in side and "位置" in side
    assert "手机" in await c.text("地址是静安区共和新路1000弄3号")
    assert "共和新路1000弄3号" in await c.text("13711110003")
    await c.text("确认提交")
    (wo,) = await orders_for(gw, "13711110003")
    assert "谷电" not in wo.description and "共和新路" in wo.address


# ---------------------------------------------------------------------------------- forms
async def test_a_no_at_the_address_prompt_is_not_an_address(gw):
    c = chat(gw)
    assert "地址" in await c.text("我家电表坏了需要报修")
    out = await c.text("还是不弄了吧")
    assert "取消" in out
    assert "请留下" not in out and "联系电话" not in out  # the form was left, not advanced
    out = await c.text("你好")
    assert "95598" in out and "地址" not in out  # small talk resumes nothing


async def test_an_account_number_at_the_address_prompt_is_not_an_address(gw):
    c = chat(gw)
    await c.text("我家电表坏了需要报修")
    out = await c.text("3100000002")
    assert "地址" in out and "联系电话" not in out  # still asking where, not moving on to the phone
    await c.text("闵行区莘庄镇莘松路10号")
    await c.text("13711110004")
    await c.text("确认")
    (wo,) = await orders_for(gw, "13711110004")
    assert wo.address and "3100000002" not in wo.address and wo.account_number is None


async def test_a_wrong_phone_is_asked_again(gw):
    c = chat(gw)
    await c.text("我家电表坏了需要报修")
    await c.text("闵行区莘庄镇莘松路12号")
    out = await c.text("12345")
    assert "11位" in out
    assert "确认" in await c.text("13711110005")


# ---------------------------------------------------------------------------------- writes need a yes
async def test_a_subscription_is_written_only_after_yes(gw):
    c = chat(gw)
    await gw.app[CORE].bind_account("3100000002", "rest", c.sender)
    out = await c.text("订阅停电通知")
    assert "确认" in out
    async with CoreClient(gw.settings.core_url) as core:
        assert await core.list_subscriptions("3100000002", "outage") == []
    out = await c.text("是的")
    assert "订阅" in out
    async with CoreClient(gw.settings.core_url) as core:
        subs = await core.list_subscriptions("3100000002", "outage")
        assert len(subs) == 1
        for s in subs:
            await core.delete_subscription(s.account_number, s.topic, s.channel, s.identity)


async def test_a_no_to_a_subscription_writes_nothing(gw):
    c = chat(gw)
    await gw.app[CORE].bind_account("3100000002", "rest", c.sender)
    await c.text("订阅账单通知")
    out = await c.text("不了，还是不要了")
    assert "好的" in out
    async with CoreClient(gw.settings.core_url) as core:
        assert await core.list_subscriptions("3100000002", "bill") == []


async def test_a_yes_with_nothing_asked_writes_nothing(gw):
    c = chat(gw)
    out = await c.text("好的")
    assert "帮您" in out and "请回复" not in out  # not "please answer yes or no": nothing was asked
    assert await handoff_of(gw, c) is None


# ---------------------------------------------------------------------------------- two requests, tone, language
async def test_two_requests_in_one_message_are_both_handled(gw):
    c = chat(gw)
    out = await c.text("查下电费，顺便问下浦东明天停不停电")
    assert "户号" in out and "浦东" in out
    assert "后4位" in await c.text("3100000001")  # the bill's question stayed open


async def test_an_angry_customer_hears_an_apology_first_and_nothing_is_written(gw):
    c = chat(gw)
    out = await c.say("你们什么破服务！一个月停了三次电，还让不让人过日子了")
    assert "抱歉" in out[0]["text"] and not any(re.search(r"WO\d{12}", o["text"]) for o in out)
    assert await handoff_of(gw, c) is None


async def test_ok_does_not_switch_a_chinese_conversation_to_english(gw):
    c = chat(gw)
    await c.text("我想查电费")
    out = await c.text("ok")
    assert re.search(r"[\u4e00-\u9fff]", out), out


async def test_out_of_scope_says_what_the_assistant_can_do(gw):
    c = chat(gw)
    out = await c.text("帮我查一下水费")
    assert "只能" in out or "无法" in out


async def test_a_fire_alerts_an_agent_at_once_and_the_report_still_completes(gw):
    c = chat(gw)
    first = await c.text("电表箱着火了！！黄浦区复兴东路88号，电话13711110006")
    assert "119" in first and "确认" in first and "复兴东路88号" in first
    assert await handoff_of(gw, c) is not None  # an agent is alerted before the report is filed
    assert await orders_for(gw, "13711110006") == []
    done = await c.text("是的，赶紧派人")
    assert re.search(r"WO\d{12}", done)
    (wo,) = await orders_for(gw, "13711110006")
    assert wo.priority == "emergency" and "复兴东路88号" in wo.address


async def test_the_same_question_is_not_asked_a_third_time(gw):
    c = chat(gw)
    await c.text("我家电表坏了需要报修")
    await c.text("闵行区莘庄镇莘松路14号")
    await c.text("嗯嗯嗯")
    await c.text("啊？")
    third = await c.text("什么")
    assert "人工" in third  # a person is offered instead of the phone question a third time
    assert await handoff_of(gw, c) is None


async def test_a_bare_account_number_asks_what_for_and_shows_nothing(gw):
    c = chat(gw)
    out = await c.text("3100000002")
    assert "31******02" in out and "后4位" in out and "李" not in out and "漕溪北路" not in out
