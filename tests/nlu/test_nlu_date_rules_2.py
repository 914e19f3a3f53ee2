"""The extractor's rules added for the kinds of mistake the second dates development set showed
(intents.entities): month ends, weeks from now, "this morning", misspelt English days, the
traditional 後, "the 8th of this month", a day of the month as near behind as ahead, a bare month
named for a change to come, irregular past verbs next to a weekday, work-order digits in any
grouping, a remembered sum; and the form's reading of a work-order id (intents.slots).

The cases are written for the kind of mistake, not copied from the development set; each rule
has the look-alikes that must not match next to it.
"""

from __future__ import annotations

import datetime as dt

import pytest

from intents import slots
from intents.entities import ALL_CUES, EntityExtractor, toward_past

REF = dt.date(2026, 12, 7)  # a Monday
_X = EntityExtractor()


def _found(text: str, entity: str, intent: str | None = None) -> list:
    ents = _X.extract(text, REF)
    # the pre-checks never change the result
    assert ents == _X.extract(text, REF, cues=ALL_CUES), text
    if intent:
        toward_past(text, intent, ents, REF)
    return [(e["value"], text[e["start"]:e["end"]]) for e in ents if e["entity"] == entity]


# --- the end of a month: its last day ------------------------------------------------------
@pytest.mark.parametrize("text,value,span", [
    ("月底前能把发票开出来吗", "2026-12-31", "月底"),
    ("这个月底之前交清", "2026-12-31", "这个月底"),
    ("下月底到期", "2027-01-31", "下月底"),
    ("上个月底换的表", "2026-11-30", "上个月底"),
    ("本月末搬家", "2026-12-31", "本月末"),
    ("2月底能装好吗", "2027-02-28", "2月底"),
    ("pay it by the end of the month", "2026-12-31", "the end of the month"),
    ("end of next month is fine", "2027-01-31", "end of next month"),
])
def test_a_month_end_is_its_last_day(text: str, value: str, span: str) -> None:
    assert (value, span) in _found(text, "date"), _found(text, "date")


@pytest.mark.parametrize("text", ["每月底自动扣款", "每个月底都要抄表", "年底之前装好", "周末有人吗"])
def test_a_routine_or_a_year_end_is_no_month_end(text: str) -> None:
    assert _found(text, "date") == [], _found(text, "date")


# --- weeks counted from today --------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("一周后再来复查", "2026-12-14"),
    ("两个星期以后生效", "2026-12-21"),
    ("3周前报的修", "2026-11-16"),
    ("一个礼拜之后装表", "2026-12-14"),
])
def test_weeks_from_now(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "date")] == [value]


@pytest.mark.parametrize("text", ["第一周后半段", "这两周用电很高", "每周一检修", "一周两次"])
def test_weeks_without_after_or_before_are_no_date(text: str) -> None:
    assert _found(text, "date") == [], _found(text, "date")


# --- English days: parts of today, misspellings, possessives, "the 8th of this month" -------
@pytest.mark.parametrize("text,value", [
    ("no power since this morning", "2026-12-07"),
    ("it tripped this afternoon", "2026-12-07"),
    ("the socket sparked this evening", "2026-12-07"),
    ("power cut since tonite", "2026-12-07"),
    ("show me yesterday's usage", "2026-12-06"),
    ("show me yesterdays usage", "2026-12-06"),
    ("it went out yesterady", "2026-12-06"),
    ("it went out yestreday night", "2026-12-06"),
    ("can you come tomorow", "2026-12-08"),
    ("can you come tommorrw", "2026-12-08"),
    ("is there a cut on the 8th of this month", "2026-12-08"),
    ("the 3rd of next month works", "2027-01-03"),
])
def test_english_day_words(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "date")] == [value], _found(text, "date")


@pytest.mark.parametrize("text", ["yesteryear's prices", "tomatoes are cheap", "every morning the lights flicker",
                                  "the 8th of the building", "Tom called"])
def test_english_look_alikes_are_no_date(text: str) -> None:
    assert _found(text, "date") == [], _found(text, "date")


def test_traditional_hou_is_read_as_simplified() -> None:
    assert [v for v, _ in _found("後天上午能来吗", "date")] == ["2026-12-09"]
    assert [v for v, _ in _found("大後天", "date")] == ["2026-12-10"]
    assert _found("以後再说", "date") == []


def test_a_day_as_near_behind_as_ahead_is_the_coming_one() -> None:
    # 22 Nov and 22 Dec are both 15 days from 7 Dec
    assert [v for v, _ in _found("what about the 22nd?", "date")] == ["2026-12-22"]
    assert [v for v, _ in _found("the 8th", "date")] == ["2026-12-08"]  # nearest still wins


def test_a_month_word_then_a_word_of_one_is_no_day() -> None:
    assert _found("11月一共用了多少度", "date") == []
    assert [v for v, _ in _found("11月一共用了多少度", "month")] == ["2026-11"]
    assert _found("3月一直没人来抄表", "date") == []
    assert [v for v, _ in _found("12月10停电吗", "date")] == ["2026-12-10"]  # a bare day still is one


# --- a bare month: the coming one where a change takes effect then -------------------------
@pytest.mark.parametrize("text,value", [
    ("switch me to time-of-use pricing from March", "2027-03"),
    ("starting February please", "2027-02"),
    ("change the tariff from January", "2027-01"),
    ("my bill from January was high", "2026-01"),  # a bill: the one gone by
    ("I changed to tiered pricing from March", "2026-03"),  # done already
    ("what was my March bill", "2026-03"),
])
def test_a_bare_month_named_for_a_change_is_the_coming_one(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "month")] == [value]


# --- the tense of a bare weekday: irregular past verbs and "-ed" a few words before ---------
@pytest.mark.parametrize("text", [
    "we lost power on Saturday evening", "I topped up 100 yuan on Saturday and it vanished",
    "the box got damaged in the storm on Thursday",
])
def test_past_words_a_few_words_before_a_weekday(text: str) -> None:
    assert all(v < REF.isoformat() for v, _ in _found(text, "date", "repair_request")), _found(text, "date")


@pytest.mark.parametrize("text", [
    "I need it installed on Saturday", "I wanted to book a visit on Saturday", "please come on Saturday",
])
def test_future_requests_keep_the_coming_weekday(text: str) -> None:
    assert all(v >= REF.isoformat() for v, _ in _found(text, "date", "repair_request")), _found(text, "date")


# --- work-order digits in any grouping; a remembered sum ----------------------------------
@pytest.mark.parametrize("text", ["wo 2612 0300 0123", "WO-261203-000123", "WO 261203 000123", "wo261203000123",
                                  "WO_2612_0300_0123"])
def test_work_order_digits_in_groups(text: str) -> None:
    assert [v for v, _ in _found(text, "work_order_id")] == ["WO261203000123"]


# another system's (or a misremembered) number after "WO", or 13–14 digits named as an order: the
# order the customer means (looked up, and said not found), never an account number
@pytest.mark.parametrize("text,value", [("工单号WO-2026-000318什么进度", "WO2026000318"),
                                        ("any update on work order WO-2026-000777?", "WO2026000777"),
                                        ("查一下工单2026112800045", "WO2026112800045"),
                                        ("ticket 2026120100012 status?", "WO2026120100012")])
def test_other_order_numbers(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "work_order_id")] == [value]
    assert not _found(text, "account_number")


@pytest.mark.parametrize("text", ["wo 2612 03", "two 261203000123", "WO261203000123456"])
def test_not_a_work_order(text: str) -> None:
    assert _found(text, "work_order_id") == []


def test_a_remembered_sum_after_the_bill() -> None:
    assert [v for v, _ in _found("上个月电费，我记得好像是两百三", "amount")] == [230.0]
    assert [v for v, _ in _found("电费我记得是一百五十六", "amount")] == [156.0]
    assert _found("我记得好像是三百多度", "amount") == []  # energy
    assert _found("电费我记得好像是8号交的", "amount") == []  # a day
    assert _found("我记得好像是一百多户", "amount") == []  # no word of money at all


@pytest.mark.parametrize("text,value", [
    ("WO261205000781", "WO261205000781"),
    ("wo261205000781", "WO261205000781"),
    ("WO 261205 000781", "WO261205000781"),
    ("WO-261203-000500", "WO261203000500"),
    ("wo 2612 0300 0123", "WO261203000123"),
    ("我的单号是WO261205000781的那个", "WO261205000781"),
    ("ＷＯ２０２６１１２８０００１", "WO202611280001"),
])
def test_form_reads_a_work_order_id_as_the_extractor_does(text: str, value: str) -> None:
    assert slots.work_order_id(text) == value


@pytest.mark.parametrize("text", ["WO12345", "two 261205000781", "3100000001", "WO 2612 0500"])
def test_form_reads_no_work_order_id(text: str) -> None:
    assert slots.work_order_id(text) is None


# --- the third dates dev set: Shanghainese day and month words, compact and day-first dates, ----
# the week before last, festivals gone by, English past after the weekday, landlines, glued months
@pytest.mark.parametrize("text,value", [
    ("前日夜里跳闸了", "2026-12-05"), ("后日上门好伐", "2026-12-09"), ("大后日再讲", "2026-12-10"),
    ("上上周五报的修", "2026-11-27"), ("上只礼拜二来抄过表", "2026-12-01"),
    ("账单日期20261130", "2026-11-30"), ("20261215检修吗", "2026-12-15"),
])
def test_more_day_words_and_notations(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "date")] == [value], _found(text, "date")


@pytest.mark.parametrize("text", [
    "以后日子还长", "提前日期通知我", "目前日均用电多少", "日后再说", "表号20261345", "电表编号20261130", "19991231那次",
    "周一到周五都营业吗", "we're open monday to friday", "电表显示10.25", "meter reads 11.3 now",
])
def test_day_look_alikes_are_no_date(text: str) -> None:
    assert _found(text, "date") == [], _found(text, "date")


def test_a_day_word_before_a_place_is_no_address() -> None:
    ents = _X.extract("后日侬小区检修伐", REF)
    assert [(e["entity"], e["value"]) for e in ents] == [("date", "2026-12-09")]


def test_a_week_range_with_its_week_named_is_dates() -> None:
    assert [v for v, _ in _found("下周一到周五停电", "date")] == ["2026-12-14", "2026-12-18"]


def test_day_first_when_the_writer_says_so() -> None:
    assert [v for v, _ in _found("I write dates day first, so 3/12 suits me", "date")] == ["2026-12-03"]
    assert [v for v, _ in _found("dd/mm: 4/1/2027", "date")] == ["2027-01-04"]
    assert [v for v, _ in _found("so 3/12 suits me", "date")] != ["2026-12-03"]  # month first by default


@pytest.mark.parametrize("text,value", [
    ("大上个月的账单", "2026-10"), ("上只月用了几度电", "2026-11"), ("下下个月搬走", "2027-02"),
    ("迭个月电费", "2026-12"),
])
def test_more_month_words(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "month")] == [value], _found(text, "month")


@pytest.mark.parametrize("text,intent,value", [
    ("今年国庆节那天跳闸了", "inform", "2026-10-01"),  # a year named with it
    ("去年圣诞节也停过", "complaint", "2025-12-25"),
    ("双11那天电费扣了两次", "payment_issue", "2026-11-11"),  # past in its clause
    ("劳动节那天停了一天电，投诉", "complaint", "2026-05-01"),
    ("妇女节当天用电多少", "usage_query", "2026-03-08"),  # a question about the past
    ("元旦会停电吗", "outage_schedule", "2027-01-01"),  # a schedule: the coming one
    ("元旦那天能来装表吗", "work_order_status", "2027-01-01"),  # asks ahead, whatever the intent
    ("is there a cut on Christmas Day?", "work_order_status", "2026-12-25"),
    ("last Christmas the lights went out", "complaint", "2025-12-25"),
])
def test_a_festival_goes_back_a_year_when_the_sentence_is_about_the_past(text: str, intent: str,
                                                                         value: str) -> None:
    assert [v for v, _ in _found(text, "date", intent)] == [value], _found(text, "date", intent)


@pytest.mark.parametrize("text,value", [
    ("Tuesday my meter stopped working", "2026-12-01"),
    ("on Thursday we paid twice", "2026-12-03"),
    ("the fitter was meant to come Friday and nobody turned up", "2026-12-04"),
    ("Friday I'll be in", "2026-12-11"),
    ("can you come Friday and check the box", "2026-12-11"),
])
def test_an_english_weekday_with_the_past_after_it(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "date", "inform")] == [value], _found(text, "date")


@pytest.mark.parametrize("text,value", [
    ("座机号码010-87654321", "01087654321"), ("打(021)52341234找我", "02152341234"),
    ("店里电话0755-2345678", "07552345678"), ("固话02164001234", "02164001234"),
])
def test_a_landline_is_a_phone_number(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "phone_number")] == [value], _found(text, "phone_number")
    assert _found(text, "account_number") == []


@pytest.mark.parametrize("text", ["2026-12-07停电", "010-123", "021-0123456", "0.5-12345678"])
def test_no_landline(text: str) -> None:
    assert _found(text, "phone_number") == []


def test_an_account_with_a_month_glued_to_it() -> None:
    assert [v for v, _ in _found("户号31009988773月用了多少", "account_number")] == ["3100998877"]
    assert [v for v, _ in _found("户号31009988773月用了多少", "month")] == ["2026-03"]
    assert [v for v, _ in _found("户号310099887712月账单", "month")] == ["2026-12"]
    assert [v for v, _ in _found("户号310099887766", "account_number")] == ["310099887766"]  # no month
    assert [v for v, _ in _found("户号310099887713月", "account_number")] == ["310099887713"]  # no 13th month


@pytest.mark.parametrize("text", ["快递单号YT9876543210", "订单GD20240315001"])
def test_a_number_glued_to_letters_is_no_account(text: str) -> None:
    assert _found(text, "account_number") == []
    assert [v for v, _ in _found("acct3100234567", "account_number")] == ["3100234567"]
