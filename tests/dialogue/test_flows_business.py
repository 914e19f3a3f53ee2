"""The business flows give right answers and write only what was asked: each conversation here
is checked against what the core holds afterwards (read over its API), not only the text.

The real core (demo data, one per module) and a real gateway per test; nothing mocked.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.chat import Chat

CN = timezone(timedelta(hours=8))


def chat(gw) -> Chat:
    return Chat(gw.http, gw.url, None)


async def get(gw, core_url: str, path: str, **params) -> dict:
    async with gw.http.get(f"{core_url}/api/v1{path}", params={k: v for k, v in params.items() if v is not None}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def verified(c: Chat, account: str = "3100000001", last4: str = "8000") -> None:
    await c.say("查一下我的电费")
    await c.say(account)
    assert "验证通过" in await c.text(last4)


async def work_orders(gw, core_url: str, **q) -> list[dict]:
    return (await get(gw, core_url, "/work-orders", limit=200, **q))["work_orders"]


# ---------------------------------------------------------------------------------- appointments
async def test_appointment_in_one_message_is_confirmed_then_booked_as_said(gw, core_url):
    c = chat(gw)
    tomorrow = (datetime.now(CN) + timedelta(days=1)).date().isoformat()
    halls = (await get(gw, core_url, "/halls", district="静安区"))["halls"]
    slots_before = (await get(gw, core_url, f"/halls/{halls[0]['id']}/slots", date=tomorrow))["slots"]
    out = await c.text("帮我约明天下午静安营业厅，办新装，我叫刘芳，电话13600001111")
    assert "静安" in out and "刘芳" in out and "13600001111" in out and "下午" in out and "新装" in out and "确认" in out
    assert (await get(gw, core_url, f"/halls/{halls[0]['id']}/slots", date=tomorrow))["slots"] == slots_before  # nothing yet
    done = await c.text("好的")
    m = re.search(r"预约号 (\d+)", done)
    assert m, done
    appt = await get(gw, core_url, f"/appointments/{m.group(1)}")
    assert (appt["contact_name"], appt["contact_phone"], appt["period"], appt["date"], appt["hall_id"]) == (
        "刘芳", "13600001111", "afternoon", tomorrow, halls[0]["id"])
    assert "新装" in appt["purpose"] and appt["status"] == "booked"


async def test_appointment_asks_only_what_is_missing(gw, core_url):
    c = chat(gw)
    out = await c.text("我想预约去营业厅办业务")
    assert "营业厅" in out and "张江" in out  # the halls to choose from
    out = await c.text("徐汇")
    assert "漕溪北路398号" in out and "09:00" in out  # where it is and when it opens, with the free slots
    out = await c.text("明天上午")
    assert "姓名" in out and "电话" in out
    out = await c.text("王小明，13912345678")
    assert "王小明" in out and "业务" in out
    out = await c.text("办理过户")
    assert "徐汇" in out and "过户" in out and "确认" in out
    done = await c.text("确认")
    booked = re.search(r"预约号 (\d+)", done)
    assert booked, done
    appt = await get(gw, core_url, f"/appointments/{booked.group(1)}")
    assert appt["contact_name"] == "王小明" and appt["period"] == "morning" and "过户" in appt["purpose"]


async def test_hall_questions_districts_without_hall_and_english_names(gw):
    c = chat(gw)
    out = await c.text("黄浦营业厅在哪里，几点开门")
    assert "西藏南路1200号" in out and "09:00" in out
    out = await chat(gw).text("宝山有营业厅可以预约吗")
    assert "宝山" in out and "没有" in out and "静安" in out  # the nearest hall is offered
    en = chat(gw)
    out = await en.text("I'd like to book a visit to a service hall")
    # halls by their district, addresses in English: nothing in Chinese in an English answer
    assert "Jing'an Service Hall" in out and "Zhangjiang Service Hall" not in out
    assert "2000 Gonghexin Road, Jing'an" in out and not re.search(r"[\u4e00-\u9fff]", out)
    out = await en.text("Jing'an")
    assert "Jing'an Service Hall" in out and "morning" in out


# ---------------------------------------------------------------------------------- outages
async def test_outage_on_another_street_is_not_told_the_known_fault_and_is_filed_after_a_yes(gw, core_url):
    c = chat(gw)
    await c.say("我家停电了")
    out = await c.text("浦东新区锦绣路1000弄6号")  # the known fault is on 碧波路, not here
    assert "正在停电" not in out and "电话" in out
    out = await c.text("13912345678")
    assert "锦绣路" in out and "139****5678" in out and "确认" in out
    assert not await work_orders(gw, core_url, contact_phone="13912345678")
    done = await c.text("确认")
    assert re.search(r"WO\d{12}", done)
    [wo] = await work_orders(gw, core_url, contact_phone="13912345678")
    assert wo["type"] == "outage" and "锦绣路" in wo["address"]


async def test_known_outage_is_reported_back_without_an_order(gw, core_url):
    c = chat(gw)
    before = len(await work_orders(gw, core_url, type="outage"))
    await c.say("停电了")
    out = await c.text("浦东新区张江镇碧波路88弄5号")
    assert "正在停电" in out and "无需重复报修" in out
    assert len(await work_orders(gw, core_url, type="outage")) == before


# ---------------------------------------------------------------------------------- work-order status
async def test_status_lists_every_open_order_and_the_passed_deadlines(gw, core_url):
    c = chat(gw)
    await verified(c)
    before = datetime.now(timezone.utc)
    out = await c.text("查一下我的工单进度")
    after = datetime.now(timezone.utc)
    orders = await work_orders(gw, core_url, account_number="3100000001")
    still_open = [o for o in orders if o["status"] not in ("resolved", "closed")]
    assert still_open
    for o in still_open:
        assert o["id"] in out

    def late(at: datetime) -> int:
        return sum(1 for o in still_open if o["sla_due_at"] and datetime.fromisoformat(o["sla_due_at"]) < at)

    assert late(before) <= out.count("已超过承诺时限") <= late(after)


# ---------------------------------------------------------------------------------- tariffs
async def test_peak_valley_split_is_priced_with_peak_and_valley(gw, core_url):
    c = chat(gw)
    out = await c.text("峰时200度，谷时100度，电费多少钱")
    q = await get(gw, core_url, "/tariffs/residential/quote", peak_kwh="200", valley_kwh="100")
    assert f"{Decimal(str(q['amount'])):.2f}" in out and "200 ×" in out and "100 ×" in out


async def test_a_shop_gets_the_commercial_tariff(gw, core_url):
    c = chat(gw)
    await verified(c, "3100000003", "8000")
    out = await c.text("电价是多少")
    commercial = await get(gw, core_url, "/tariffs/commercial")
    assert str(commercial["flat_price"] or commercial["name"])[:4] in out or "商业" in out or "工商业" in out
    assert "阶梯" not in out


# ---------------------------------------------------------------------------------- invoices and subscriptions
async def test_invoice_for_a_paid_month_without_an_online_payment(gw, core_url):
    c = chat(gw)
    await verified(c, "3100000002", "9000")
    out = await c.text("我要开上个月的电费发票")
    assert "已缴清" in out and "确认" in out
    await c.text("确认")
    [wo] = [w for w in await work_orders(gw, core_url, account_number="3100000002") if w["type"] == "invoice"]
    today = datetime.now(CN).date()
    last_month = f"{today.year - (today.month == 1)}-{(today.month - 2) % 12 + 1:02d}"
    assert wo["details"]["month"] == last_month


async def test_subscribing_to_outage_notices_writes_outage_only_after_the_yes(gw, core_url):
    c = chat(gw)
    await verified(c, "3100000002", "9000")
    out = await c.text("订阅停电通知")
    assert "停电" in out and "短信" in out and "139****9000" in out
    assert not (await get(gw, core_url, "/subscriptions", account_number="3100000002"))["subscriptions"]
    await c.text("确认")
    subs = (await get(gw, core_url, "/subscriptions", account_number="3100000002"))["subscriptions"]
    assert [(s["topic"], s["channel"]) for s in subs] == [("outage", "sms")]
    out = await c.text("退订账单通知")  # none held: said at once, with no question to answer
    assert "没有订阅" in out and "0" not in out and "确认" not in out
    assert [s["topic"] for s in (await get(gw, core_url, "/subscriptions", account_number="3100000002"))["subscriptions"]] == ["outage"]


# ---------------------------------------------------------------------------------- complaints and applications
async def test_angry_complaint_waits_for_the_yes_and_carries_the_callback_number(gw, core_url):
    c = chat(gw)
    out = await c.text("你们什么破服务！一个月停了三次电，还让不让人过日子了")
    assert "确认" in out and not re.search(r"WO\d{12}", out)
    out = await c.text("静安区大统路500弄8号，电话13600001111")
    assert "大统路" in out and "136****1111" in out
    assert not await work_orders(gw, core_url, contact_phone="13600001111")
    await c.text("对，提交投诉")
    [wo] = await work_orders(gw, core_url, contact_phone="13600001111")
    assert wo["type"] == "complaint" and wo["priority"] == "high"


async def test_application_confirms_address_and_files_what_was_said(gw, core_url):
    c = chat(gw)
    await c.say("我们店要增容，现在的容量不够用")
    await c.say("户号3100000003，尾号8000")
    out = await c.text("想增加到50千瓦，联系电话就用登记的")
    assert "世纪大道1500号" in out and "50千瓦" in out and "确认" in out
    await c.text("是的")
    [wo] = [w for w in await work_orders(gw, core_url, account_number="3100000003") if w["type"] == "new_connection"
            and "50千瓦" in w["description"]]
    assert wo["address"] and wo["contact_phone"] == "13800138000"


async def test_an_unpaid_payment_link_is_not_a_payment_waiting_to_be_credited(gw, core_url):
    body = {"out_trade_no": "TEST" + uuid.uuid4().hex[:12], "account_number": "3100000001", "amount": "12.34",
            "channel": "alipay", "status": "pending"}
    async with gw.http.post(f"{core_url}/api/v1/payments", json=body) as r:
        assert r.status in (200, 201), await r.text()
    c = chat(gw)
    await verified(c)
    out = await c.text("我交的电费一直没到账")
    assert "12.34" not in out and "确认" not in out.split("\n")[0]


async def test_planned_outages_for_each_district_named(gw):
    out = await chat(gw).text("黄浦和浦东明天都停电吗")
    assert "黄浦" in out and "浦东" in out


async def test_english_street_address_is_kept_on_the_outage_order(gw, core_url):
    c = chat(gw)
    out = await c.text("report an outage: 30 Lujiazui Ring Road, Pudong, phone 13600002222. no power in the whole building")
    assert "Lujiazui" in out and "136****2222" in out
    assert not await work_orders(gw, core_url, contact_phone="13600002222")
    await c.text("yes")
    [wo] = await work_orders(gw, core_url, contact_phone="13600002222")
    assert wo["type"] == "outage" and "Lujiazui Ring Road" in wo["address"]
    out = await c.text("what's the status of that ticket now?")
    assert wo["id"] in out  # the order this conversation filed, without asking for an account
