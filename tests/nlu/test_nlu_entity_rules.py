"""The extractor's rules for sums without a unit, spaced work-order ids, weekends and the tense of
a bare weekday (intents.entities): what must be read, and the look-alikes that must not.

The cases are written for the kinds of mistake the second entity development set showed, not
copied from it; each rule has its negatives next to it (kWh, floors, counts, times, years,
account, phone and order numbers).
"""

from __future__ import annotations

import datetime as dt

import pytest

from intents.entities import ALL_CUES, EntityExtractor, toward_past
from intents.numbers import EN_SUM_WORDS, digits_view, en_words_to_number

REF = dt.date(2026, 12, 7)  # a Monday
_X = EntityExtractor()


def _found(text: str, entity: str) -> list:
    ents = _X.extract(text, REF)
    # the pre-checks never change the result (tests/nlu/test_nlu_fast_path.py checks the corpus)
    assert ents == _X.extract(text, REF, cues=ALL_CUES), text
    return [(e["value"], text[e["start"]:e["end"]]) for e in ents if e["entity"] == entity]


# --- sums without a unit ------------------------------------------------------------------
@pytest.mark.parametrize("text,value,span", [
    # a word of money right before, in the same clause
    ("这个月电费三百二，怎么这么贵", 320.0, "三百二"),
    ("9月电费455", 455.0, "455"),
    ("账单上显示欠费76.4", 76.4, "76.4"),
    ("余额只剩下15了", 15.0, "15"),
    ("退款180什么时候能到", 180.0, "180"),
    ("充值成功但只到账50", 50.0, "50"),
    ("押金是不是两千", 2000.0, "两千"),
    ("电费比上个月多了一百", 100.0, "一百"),
    # after a verb of paying, with the sentence's comma after it
    ("我缴了800，怎么还欠费", 800.0, "800"),
    ("在窗口交的两千五，系统里只有两千", 2500.0, "两千五"),
    ("充值200送20", 200.0, "200"),
    # a weak word, in a message about money
    ("两笔电费加起来一千多", 1000.0, "一千"),
    ("扣款重复了，每次88.8", 88.8, "88.8"),
    # a price after 要/花/收 where the clause ends; the sum before the word of money
    ("换个电表要三百吗", 300.0, "三百"),
    ("师傅上门收了两百，合理吗", 200.0, "两百"),
    ("装表要交1000押金", 1000.0, "1000"),
    ("交三百多块", 300.0, "三百多块"),
    # English
    ("the bill came to 415 this month", 415.0, "415"),
    ("my balance shows 32.5", 32.5, "32.5"),
    ("is the fee really 60?", 60.0, "60"),
    ("amount: 275", 275.0, "275"),
    ("they deducted 1,380 from my account", 1380.0, "1,380"),
    ("the bank took 640 from my card", 640.0, "640"),
    ("I paid three hundred and twenty by mistake", 320.0, "three hundred and twenty"),
    ("top up 2k please", 2000.0, "2k"),
    ("will the repair cost over 150", 150.0, "150"),
    ("I want 300 compensation for the spoiled food", 300.0, "300"),
    ("it charged me 99.9 both times", 99.9, "99.9"),
    ("the deposit of one thousand, can I get it back", 1000.0, "one thousand"),
    ("alert me when the bill goes over eighty", 80.0, "eighty"),
    ("it's usually around 250 a month on my bill", 250.0, "250"),
])
def test_a_sum_without_a_unit_next_to_a_word_of_money(text: str, value: float, span: str) -> None:
    assert (value, span) in _found(text, "amount"), _found(text, "amount")


@pytest.mark.parametrize("text", [
    # energy, floors, counts, times, durations, dates, years
    "电费这么高，一个月用了300度", "我家住5楼，电费怎么查", "电费一共交了3次", "电费每个月15号扣",
    "电费12:30之前交", "账单周期是30天", "欠费3个月了", "电费2026年怎么算", "电费8月份交的",
    "查一下2026.10的账单", "11.30交的电费",
    # identifiers and readings
    "退款单号12345", "账单上写本期示数23456", "户号3100234567电费多少", "电费阶梯第2档怎么算",
    # "交一下", "a little", a menu answer, a range, a duration after 要
    "交一下电费", "交了一点", "我要2", "要3到5天吗", "需要2个工作日",
    # English look-alikes
    "pay two bills", "pay 2 bills at once", "my bill for 2 months", "the bill is 2 months overdue",
    "it took 3 tries to pay", "the fee is 5% higher", "I owe 2 months", "it cost me 3 days of work",
    "bill number 12345", "charging pile number 12 is broken", "it's 5 pm", "paid at 10am",
    "my bill is 2x last month", "2 kWh used overnight", "the bill is for 3 households",
    "total 3 outages this week",
])
def test_numbers_that_are_no_sum(text: str) -> None:
    assert _found(text, "amount") == []


def test_english_sums_in_words() -> None:
    import re

    rx = re.compile(rf"\b({EN_SUM_WORDS})\b")
    assert [en_words_to_number(rx.search(t).group(1)) for t in (
        "two hundred and fifty", "twelve hundred", "one thousand two hundred", "eighty-five",
        "a hundred", "three thousand and five")] == [250, 1200, 1200, 85, 100, 3005]
    # counts ("two", "one") are not sums in words
    assert rx.search("pay two bills") is None and rx.search("one or two") is None


# --- work-order ids and phones as customers copy them ---------------------------------------
@pytest.mark.parametrize("text,value", [
    ("工单 WO 261120 004411 有进展吗", "WO261120004411"), ("ticket wo-261118-000093 status", "WO261118000093"),
    ("WO_261101_000002", "WO261101000002"), ("单号 261205-000781", "WO261205000781"),
])
def test_spaced_work_order_ids(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "work_order_id")] == [value]


def test_a_digit_word_after_a_number_is_a_word() -> None:
    # "一直", "一下" right after a phone number: not its twelfth digit
    assert [v for v, _ in _found("验证码发到+86 136 5555 1234一直没收到", "phone_number")] == ["13655551234"]
    assert digits_view("5678一直") == "5678一直" and digits_view("一直13912345678") == "一直13912345678"
    assert digits_view("3100零零零零01") == "3100000001"  # mixed runs are still digits


# --- weekends ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("这周末停电吗", "2026-12-12"), ("这个周末能上门吗", "2026-12-12"), ("下周末有检修吗", "2026-12-19"),
    ("下个周末", "2026-12-19"), ("上周末停了一次电", "2026-12-05"), ("is there work this weekend", "2026-12-12"),
    ("next weekend any outage?", "2026-12-19"), ("last weekend the power went off", "2026-12-05"),
])
def test_qualified_weekends_are_that_saturday(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "date")] == [value]


@pytest.mark.parametrize("text", ["周末你们上班吗", "营业厅周末开门吗", "every weekend the lights flicker",
                                  "are you open on weekends"])
def test_any_weekend_is_no_date(text: str) -> None:
    assert _found(text, "date") == []


# --- bare weekday abbreviations ----------------------------------------------------------------
@pytest.mark.parametrize("text,found", [
    ("usage on Sat looks odd", True), ("can you come Wed?", True), ("since Sun no power", True),
    ("I sat on the meter box", False), ("the sun is out", False), ("we wed in June", False),
])
def test_day_abbreviations_after_on_since_or_before_a_question_mark(text: str, found: bool) -> None:
    assert bool(_found(text, "date")) == found


# --- which way a bare weekday goes, by the words of its own clause ------------------------------
def _dated(text: str, intent: str = "repair_request") -> list[str]:
    ents = _X.extract(text, REF)
    toward_past(text, intent, ents, REF)
    return [e["value"] for e in ents if e["entity"] == "date"]


@pytest.mark.parametrize("text", [
    "the technicians who came on Friday broke my gate", "no power since Thursday",
    "the meter stopped on Wednesday", "it was cut on Friday and nobody came",
    "自从周四电压就不稳", "周四开始电表就不走了", "周五来的师傅没修好", "周四换了表以后就老跳闸",
])
def test_past_words_next_to_a_weekday_mean_the_last_one(text: str) -> None:
    assert _dated(text)[0] < REF.isoformat(), _dated(text)


@pytest.mark.parametrize("text,intent", [
    ("I need the receipt by Friday", "invoice_request"),  # an intent about the past, a deadline
    ("will there be an outage on Thursday", "complaint"),
    ("the new meter will be installed on Thursday", "repair_request"),
    ("I need it fixed on Thursday", "repair_request"),
    ("周四之前能开好发票吗", "invoice_request"),
    ("周五发了工资再交", "bill_query"),
    ("从周三改到周五", "book_appointment"),
])
def test_future_words_keep_the_coming_weekday(text: str, intent: str) -> None:
    assert all(v >= REF.isoformat() for v in _dated(text, intent)), _dated(text, intent)


def test_a_request_about_the_past_still_means_the_last_weekday() -> None:
    assert _dated("周五用了多少电", "usage_query") == ["2026-12-04"]
    assert _dated("周五用了多少电", "book_appointment") == ["2026-12-04"]  # 用了: past by its words
    assert _dated("周五能来吗", "book_appointment") == ["2026-12-11"]


def test_a_bare_day_of_the_month_goes_back_only_where_its_clause_says_past() -> None:
    assert _dated("20号那次停电以后电压就不稳") == ["2026-11-20"]
    assert _dated("20号能来装表吗") == ["2026-12-20"]
    assert _dated("能不能15号发工资了再交", "bill_query") == ["2026-12-15"]
