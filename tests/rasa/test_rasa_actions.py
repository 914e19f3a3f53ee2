"""powerbot's 95598 actions through the real rasa-sdk action server (``powerbot rasa actions``),
called the way Rasa calls it, against the reference core: what the customer is told (the
responses, rendered from the starter project's domain), what the tracker learns (the events)
and what the core holds afterwards.

Demo accounts (core/seed.py): 3100000001 张伟, phone 13800138000, 浦东新区, arrears, an active
outage on 碧波路; 3100000002 李娜, phone 13900139000, 徐汇区, everything paid.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend_client import CoreClient
from bot.dialogue.verification import LOCK_MINUTES, MAX_VERIFY_FAILURES
from common.clock import utcnow
from common.money import money_text
from rasa_calls import DOMAIN, call

pytestmark = pytest.mark.asyncio(loop_scope="module")

ZHANG = {"account_number": "3100000001"}
ZHANG_VERIFIED = {"account_number": "3100000001", "verified_account": "3100000001"}


@pytest.fixture
def slot_names() -> set[str]:
    return set(DOMAIN["slots"])


async def test_the_server_serves_every_custom_action_of_the_starter_domain(action_server, http) -> None:
    async with http.get(action_server.url + "/actions") as r:
        served = {a["name"] for a in await r.json()}
    assert set(DOMAIN["actions"]) == served


async def test_an_unknown_action_and_a_request_without_a_body_are_refused(action_server, http) -> None:
    answer = await call(http, action_server, "action_does_not_exist")
    assert answer.status == 404 and answer.body["action_name"] == "action_does_not_exist"
    async with http.post(action_server.url + "/webhook", data=b"", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400


async def test_a_bill_is_never_shown_before_the_identity_check(action_server, http) -> None:
    answer = await call(http, action_server, "action_bill_query", slots=ZHANG, text="查一下电费", intent="bill_query")
    assert answer.status == 200
    assert answer.names == ["utter_ask_last4"]
    assert answer.responses[0]["account"] == "31******01"
    assert answer.has("active_loop", name="identity_form")
    assert answer.has("followup", name="action_listen")
    assert answer.slots()["requested_slot"] == "last4"
    assert answer.slots()["pending_action"] == "action_bill_query"
    text = " ".join(answer.texts(ZHANG))
    assert "元" not in text and "3100000001" not in text

    nobody = await call(http, action_server, "action_bill_query", text="查电费", intent="bill_query")
    assert nobody.names == ["utter_ask_account_number"]
    assert nobody.slots()["requested_slot"] == "account_number"


async def test_the_right_last_4_digits_verify_and_resume_the_request(action_server, http) -> None:
    slots = {**ZHANG, "last4": "8000", "pending_action": "action_bill_query"}
    answer = await call(http, action_server, "action_verify_identity", slots=slots, text="8000", intent="inform",
                        sender="verify-ok")
    assert answer.names == ["utter_verified"]
    assert answer.slots()["verified_account"] == "3100000001"
    assert answer.slots()["last4"] is None  # never kept
    assert answer.has("followup", name="action_bill_query")


async def test_wrong_digits_count_down_and_lock_after_powerbots_limit(action_server, http) -> None:
    wrong = {**ZHANG, "last4": "1234"}
    first = await call(http, action_server, "action_verify_identity", slots=wrong, text="1234", sender="guess-1")
    assert first.names == ["utter_verify_failed"]
    assert first.responses[0]["left"] == MAX_VERIFY_FAILURES - 1
    assert first.slots()["verify_failures"] == 1 and "verified_account" not in first.slots()
    assert first.slots()["requested_slot"] == "last4"

    now = utcnow()
    last = await call(http, action_server, "action_verify_identity", sender="guess-1", text="1234", slots={
        **wrong, "verify_failures": MAX_VERIFY_FAILURES - 1, "verify_failed_at": now.isoformat()})
    assert last.names == ["utter_verify_locked"]
    assert last.responses[0]["minutes"] == LOCK_MINUTES
    assert last.slots()["account_number"] is None

    # locked: even the right digits do not verify, and a bill stays hidden
    locked = {**ZHANG, "verify_failures": MAX_VERIFY_FAILURES, "verify_failed_at": (now - timedelta(minutes=5)).isoformat()}
    right = await call(http, action_server, "action_verify_identity", sender="guess-1", slots={**locked, "last4": "8000"})
    assert right.names == ["utter_verify_locked"] and "verified_account" not in right.slots()
    bill = await call(http, action_server, "action_bill_query", sender="guess-1", slots=locked, intent="bill_query")
    assert bill.names == ["utter_verify_locked"]

    # the lock lasts LOCK_MINUTES after the last wrong answer, then the check is open again
    later = {**locked, "verify_failed_at": (now - timedelta(minutes=LOCK_MINUTES + 1)).isoformat(), "last4": "8000"}
    opened = await call(http, action_server, "action_verify_identity", sender="guess-1", slots=later)
    assert opened.names == ["utter_verified"]
    assert opened.slots()["verified_account"] == "3100000001"


async def test_a_verified_customer_gets_the_bill_the_core_holds(action_server, http, core) -> None:
    answer = await call(http, action_server, "action_bill_query", slots=ZHANG_VERIFIED, text="这个月电费多少",
                        intent="bill_query")
    assert answer.names == ["utter_bill"]
    async with CoreClient(core.url) as client:
        latest = (await client.list_bills("3100000001"))[0]
        arrears = await client.get_arrears("3100000001")
    sent = answer.responses[0]
    assert sent["month"] == latest.month
    assert sent["amount"] == money_text(latest.amount)
    assert sent["owed"] == money_text(arrears.amount_owed)
    assert sent["account"] == "31******01"
    assert money_text(latest.amount) in answer.texts(ZHANG_VERIFIED)[0]


async def test_paying_tells_the_amount_owed_and_how_to_pay(action_server, http, core) -> None:
    answer = await call(http, action_server, "action_pay_bill", slots=ZHANG_VERIFIED, text="我要交电费", intent="pay_bill")
    async with CoreClient(core.url) as client:
        owed = (await client.get_arrears("3100000001")).amount_owed
    assert owed > 0
    assert answer.names == ["utter_how_to_pay"] and answer.responses[0]["amount"] == money_text(owed)
    paid_up = await call(http, action_server, "action_pay_bill", intent="pay_bill",
                         slots={"account_number": "3100000002", "verified_account": "3100000002"})
    assert paid_up.names == ["utter_no_arrears"]


async def test_a_repair_order_is_written_only_after_the_yes_to_what_it_shows(action_server, http, core) -> None:
    phone = "13912340001"
    slots = {"address": "徐汇区漕溪北路201弄3号", "contact_phone": phone, "description": "电表箱冒烟"}
    async with CoreClient(core.url) as client:
        before = await client.list_work_orders(contact_phone=phone)
    assert before == []

    shown = await call(http, action_server, "action_repair_request", slots=slots, text="电表箱冒烟了", intent="repair_request",
                       sender="repair-1")
    assert shown.names == ["utter_confirm_repair"]
    assert shown.responses[0]["address"] == slots["address"]
    key = shown.slots()["confirm_key"]
    assert key and shown.has("active_loop", name="confirm_form") and shown.slots()["requested_slot"] == "confirm"
    async with CoreClient(core.url) as client:
        assert await client.list_work_orders(contact_phone=phone) == []  # shown, not written

    # a yes to another draft (the address changed since) writes nothing: the new one is shown
    moved = {**slots, "address": "徐汇区漕溪北路1号", "confirm": True, "confirm_key": key}
    again = await call(http, action_server, "action_repair_request", slots=moved, text="是的", intent="affirm", sender="repair-1")
    assert again.names == ["utter_confirm_repair"] and again.slots()["confirm_key"] != key
    async with CoreClient(core.url) as client:
        assert await client.list_work_orders(contact_phone=phone) == []

    yes = {**slots, "confirm": True, "confirm_key": key}
    done = await call(http, action_server, "action_repair_request", slots=yes, text="是的", intent="affirm", sender="repair-1")
    assert done.names == ["utter_repair_created"]
    wid = done.responses[0]["work_order_id"]
    assert done.slots()["work_order_id"] == wid and done.slots()["confirm_key"] is None
    # Rasa retrying the same call (a timeout on its side) files nothing more
    retry = await call(http, action_server, "action_repair_request", slots=yes, text="是的", intent="affirm", sender="repair-1")
    assert retry.responses[0]["work_order_id"] == wid
    async with CoreClient(core.url) as client:
        orders = await client.list_work_orders(contact_phone=phone)
    assert [o.id for o in orders] == [wid]
    wo = orders[0]
    assert (wo.type, wo.address, wo.contact_phone, wo.description, wo.priority, wo.channel) == (
        "repair", slots["address"], phone, "电表箱冒烟", "normal", "rest")
    assert wo.account_number is None  # nobody verified: no account linked


async def test_a_no_writes_nothing_and_says_so(action_server, http, core) -> None:
    phone = "13912340002"
    slots = {"description": "营业厅工作人员态度很差，排队一个小时没人管", "contact_phone": phone}
    shown = await call(http, action_server, "action_complaint", slots=slots, intent="complaint", sender="complaint-1")
    assert shown.names == ["utter_confirm_complaint_details"]
    no = {**slots, "confirm": False, "confirm_key": shown.slots()["confirm_key"]}
    answer = await call(http, action_server, "action_complaint", slots=no, text="不用了", intent="deny", sender="complaint-1")
    assert answer.names == ["utter_cancelled"]
    async with CoreClient(core.url) as client:
        assert await client.list_work_orders(contact_phone=phone) == []


async def test_a_repair_asks_what_is_missing_one_question_at_a_time(action_server, http) -> None:
    where = await call(http, action_server, "action_repair_request", text="我要报修", intent="repair_request")
    assert where.names == ["utter_ask_address"]
    assert where.has("active_loop", name="repair_request_form") and where.slots()["requested_slot"] == "address"
    assert where.slots()["pending_action"] == "action_repair_request"
    phone = await call(http, action_server, "action_repair_request", slots={"address": "徐汇区漕溪北路201弄3号"})
    assert phone.names == ["utter_ask_contact_phone"] and phone.slots()["requested_slot"] == "contact_phone"


async def test_a_known_outage_is_explained_and_nothing_is_filed(action_server, http, core) -> None:
    slots = {"address": "浦东新区张江镇碧波路88弄5号", "contact_phone": "13912340003"}
    answer = await call(http, action_server, "action_report_outage", slots=slots, text="家里停电了", intent="report_outage")
    assert answer.names == ["utter_known_outage"]
    assert "碧波路" in answer.responses[0]["scope"]
    async with CoreClient(core.url) as client:
        assert await client.list_work_orders(contact_phone="13912340003") == []


async def test_planned_outages_of_a_district_named_in_pinyin(action_server, http, core) -> None:
    answer = await call(http, action_server, "action_outage_schedule", slots={"district": "huangpu"},
                        text="黄浦区最近有计划停电吗", intent="outage_schedule")
    async with CoreClient(core.url) as client:
        planned = [o for o in await client.list_outages(district="黄浦区", kind="planned") if o.status == "scheduled"]
    assert planned
    assert answer.names == ["utter_planned_outages"]
    assert planned[0].scope in answer.responses[0]["outages"]
    ask = await call(http, action_server, "action_outage_schedule", text="有计划停电吗", intent="outage_schedule")
    assert ask.names == ["utter_ask_district"] and ask.slots()["requested_slot"] == "district"


async def test_a_work_order_of_an_account_needs_its_check_one_filed_here_does_not(action_server, http, core) -> None:
    async with CoreClient(core.url) as client:  # an order of 李娜's account, filed elsewhere (the hotline)
        theirs = await client.create_work_order("repair", "门口路灯不亮", account_number="3100000002",
                                                contact_phone="13900139000", idempotency_key="hotline-li-1")
    hidden = await call(http, action_server, "action_work_order_status", slots={"work_order_id": theirs.id},
                        text=f"{theirs.id}进度", intent="work_order_status")
    assert hidden.names == ["utter_ask_last4"] and "utter_work_orders_open" not in hidden.names
    shown = await call(http, action_server, "action_work_order_status", intent="work_order_status",
                       slots={"work_order_id": theirs.id, "verified_account": "3100000002"})
    assert shown.names[0] in ("utter_work_orders_open", "utter_work_orders_none_open")
    assert theirs.id in str(shown.responses[0])
    filed_here = await call(http, action_server, "action_work_order_status",
                            slots={"work_order_id": theirs.id, "filed_orders": [theirs.id]})
    assert filed_here.names == ["utter_work_orders_open"] and theirs.id in filed_here.responses[0]["lines"]
    gone = await call(http, action_server, "action_work_order_status", slots={"work_order_id": "WO000000000000"})
    assert gone.names == ["utter_work_order_not_found"]


async def test_a_tariff_quote_is_the_cores(action_server, http, core) -> None:
    answer = await call(http, action_server, "action_tariff_consult", text="居民用电300度多少钱", intent="tariff_consult")
    async with CoreClient(core.url) as client:
        quote = await client.quote("residential", 300)
    assert answer.names == ["utter_quote"]
    assert answer.responses[0]["amount"] == money_text(quote.amount) and answer.responses[0]["kwh"] == "300"
    table = await call(http, action_server, "action_tariff_consult", text="电价是多少", intent="tariff_consult")
    assert table.names == ["utter_tariff"] and table.responses[0]["rows"]


async def test_a_confirmed_subscription_is_in_the_core(action_server, http, core) -> None:
    slots = {"account_number": "3100000002", "verified_account": "3100000002"}
    shown = await call(http, action_server, "action_subscribe_notifications", slots=slots, text="订阅停电通知",
                       intent="subscribe_notifications", channel="wechat", sender="o_rasa_li")
    assert shown.names == ["utter_confirm_subscribe"] and shown.slots()["topic"] == "outage"
    async with CoreClient(core.url) as client:
        assert await client.list_subscriptions("3100000002", channel="wechat", identity="o_rasa_li") == []
    yes = {**slots, "topic": "outage", "confirm": True, "confirm_key": shown.slots()["confirm_key"]}
    done = await call(http, action_server, "action_subscribe_notifications", slots=yes, text="好的", intent="affirm",
                      channel="wechat", sender="o_rasa_li")
    assert done.names == ["utter_subscribed_via"]
    async with CoreClient(core.url) as client:
        subs = await client.list_subscriptions("3100000002", channel="wechat", identity="o_rasa_li")
    assert [s.topic for s in subs] == ["outage"]


async def test_a_booking_is_made_after_the_yes(action_server, http, core) -> None:
    async with CoreClient(core.url) as client:
        hall = next(h for h in await client.list_halls() if h.district == "徐汇区")
        free = await client.list_slots(hall.id, only_available=True)
    slots = {"district": "徐汇区", "contact_name": "王小明", "contact_phone": "13912340004"}
    pick = await call(http, action_server, "action_book_appointment", slots=slots, text="预约徐汇营业厅",
                      intent="book_appointment", sender="book-1")
    assert pick.names == ["utter_choose_slot"] and pick.slots()["requested_slot"] == "slot_id"
    assert pick.slots()["offered"]["slot_id"][0] == free[0].id

    validated = await call(http, action_server, "validate_book_appointment_form", text="1", sender="book-1",
                           active_loop="book_appointment_form",
                           slots={**slots, "hall_id": float(hall.id), "requested_slot": "slot_id",
                                  "offered": pick.slots()["offered"]}, extracted={"slot_id": "1"})
    assert validated.slots()["slot_id"] == float(free[0].id)
    assert validated.slots()["requested_slot"] is None  # one question: the form ends, the action resumes

    chosen = {**slots, "hall_id": float(hall.id), "slot_id": float(free[0].id)}
    shown = await call(http, action_server, "action_book_appointment", slots=chosen, sender="book-1")
    assert shown.names == ["utter_confirm_appointment_details"]
    yes = {**chosen, "confirm": True, "confirm_key": shown.slots()["confirm_key"]}
    done = await call(http, action_server, "action_book_appointment", slots=yes, text="确认", intent="affirm", sender="book-1")
    assert done.names == ["utter_appointment_booked_at"]
    async with CoreClient(core.url) as client:
        appt = await client.get_appointment(int(done.responses[0]["appointment_id"]))
    assert (appt.slot_id, appt.contact_phone, appt.contact_name) == (free[0].id, "13912340004", "王小明")


async def test_form_validation_reads_phone_address_and_account_as_powerbot_does(action_server, http) -> None:
    phone = await call(http, action_server, "validate_repair_request_form", active_loop="repair_request_form",
                       text="+86 138 0013 8000", slots={"requested_slot": "contact_phone"}, extracted={"contact_phone": "+86 138 0013 8000"})
    assert phone.slots()["contact_phone"] == "13800138000" and phone.slots()["requested_slot"] is None
    bad = await call(http, action_server, "validate_repair_request_form", active_loop="repair_request_form",
                     text="12345", slots={"requested_slot": "contact_phone"}, extracted={"contact_phone": "12345"})
    assert bad.slots()["contact_phone"] is None and bad.names == ["utter_invalid_phone"]
    assert bad.slots()["requested_slot"] == "contact_phone"  # asked again

    place = await call(http, action_server, "validate_report_outage_form", active_loop="report_outage_form",
                       slots={"requested_slot": "address"}, extracted={"address": "我家在浦东新区张江路100号"})
    assert "张江路100号" in place.slots()["address"] and place.slots()["district"] == "浦东新区"
    not_a_place = await call(http, action_server, "validate_report_outage_form", active_loop="report_outage_form",
                             slots={"requested_slot": "address"}, extracted={"address": "快点来人"})
    assert not_a_place.slots()["address"] is None

    unknown = await call(http, action_server, "validate_identity_form", active_loop="identity_form",
                         slots={"requested_slot": "account_number"}, extracted={"account_number": "3199999999"})
    assert unknown.slots()["account_number"] is None and unknown.names == ["utter_account_not_found"]
    known = await call(http, action_server, "validate_identity_form", active_loop="identity_form",
                       slots={"requested_slot": "account_number"}, extracted={"account_number": "户号 3100 0000 02"})
    assert known.slots()["account_number"] == "3100000002" and known.slots()["account"] == "31******02"


async def test_every_response_sent_renders_from_the_starter_domain(action_server, http, slot_names) -> None:
    """Each action's responses exist in examples/rasa/domain.yml with every placeholder filled."""
    cases = [
        ("action_usage_query", ZHANG_VERIFIED, "上个月用了多少度", "usage_query"),
        ("action_new_connection", {"address": "闵行区七莘路100号", "contact_phone": "13912340005"}, "我要新装", "new_connection"),
        ("action_account_change", ZHANG_VERIFIED | {"contact_phone": "13912340006"}, "我要过户", "account_change"),
        ("action_unsubscribe_notifications", ZHANG_VERIFIED, "退订账单通知", "unsubscribe_notifications"),
        ("action_work_order_status", ZHANG_VERIFIED, "我的工单进度", "work_order_status"),
    ]
    for action, slots, text, intent in cases:
        answer = await call(http, action_server, action, slots=slots, text=text, intent=intent)
        assert answer.status == 200 and answer.responses, action
        assert set(answer.slots()) <= slot_names | {"requested_slot"}, action
        texts = answer.texts(slots)
        assert all(t and "{" not in t for t in texts), (action, texts)
