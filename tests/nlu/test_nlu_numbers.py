"""Chinese numerals as customers type them (intents.numbers, on cn2an)."""

from __future__ import annotations

import pytest

from intents.numbers import cn_to_number, to_int


@pytest.mark.parametrize("text,value", [
    ("一百二十", 120), ("两千五", 2500), ("一万二", 12000), ("三百零五", 305), ("十一", 11),
    ("二零二六", 2026), ("壹佰贰拾", 120), ("两百", 200), ("三万五千", 35000), ("12.5", 12.5),
    ("1,200", 1200), ("三点五", 3.5), ("九十九点九", 99.9), ("百", 100), ("千五", 1500), ("万", 10000),
])
def test_numerals_customers_type(text: str, value: float) -> None:
    assert cn_to_number(text) == value


@pytest.mark.parametrize("text", ["", "  ", "点五", "电费", "三块", "百百"])
def test_what_is_not_a_numeral(text: str) -> None:
    assert cn_to_number(text) is None


def test_to_int_only_for_whole_numbers() -> None:
    assert to_int("两千五") == 2500 and to_int("三点五") is None and to_int("abc") is None


# --- numbers read digit by digit, wherever the dialogue reads them ----------------------------
from intents import slots  # noqa: E402
from intents.entities import EntityExtractor  # noqa: E402
from intents.numbers import digits_view, grouped_numbers  # noqa: E402


@pytest.mark.parametrize("text,view", [
    ("三一零零零零零零零一", "3100000001"), ("幺三八零零幺三八零零零", "13800138000"),
    ("３１０００００００１", "3100000001"), ("3100零零零零01", "3100000001"), ("尾号八零零零", "尾号8000"),
    ("二零二六年", "2026年"), ("٣١٠١٢٣٤٥٦٧", "3101234567"),
    # numerals with units and short runs are not digit strings
    ("一百二十", "一百二十"), ("三四百", "三四百"), ("一一对应", "一一对应"), ("第三个", "第三个"),
])
def test_digits_view_is_length_preserving(text: str, view: str) -> None:
    assert digits_view(text) == view and len(digits_view(text)) == len(text)


def test_grouped_numbers() -> None:
    assert grouped_numbers("3100 0000 02", 10, 13) == [(0, 12, "3100000002")]
    assert grouped_numbers("138 0013 8000", 10, 13) == [(0, 13, "13800138000")]
    assert grouped_numbers("户号3100000001 12月", 10, 13) == [(2, 12, "3100000001")]
    assert grouped_numbers("2026-12-07 10", 10, 13) == []  # a date and a time
    assert grouped_numbers("3100000001.5", 10, 13) == []  # a decimal
    assert grouped_numbers("123456 654321", 10, 13) == []  # two 6-digit codes


_X = EntityExtractor()


@pytest.mark.parametrize("text,entity,value", [
    ("我的户号是三一零零零零零零零一", "account_number", "3100000001"),
    ("户号 3100 0000 02 的电费", "account_number", "3100000002"),
    ("户号３１０００００００１", "account_number", "3100000001"),
    ("户号3100零零零零01", "account_number", "3100000001"),
    ("电话幺三八零零幺三八零零零", "phone_number", "13800138000"),
    ("手机 138 0013 8000", "phone_number", "13800138000"),
    ("手机1380 0138 000", "phone_number", "13800138000"),
    ("交了两百五十块", "amount", 250.0),
])
def test_nlu_entities_read_every_form(text: str, entity: str, value) -> None:
    got = [(e["entity"], e["value"]) for e in _X.extract(text)]
    assert (entity, value) in got, got


@pytest.mark.parametrize("fn,text,value", [
    (slots.account_number, "三一零零零零零零零一", "3100000001"),
    (slots.account_number, "3100 0000 02", "3100000002"),
    (slots.account_number, "３１０００００００１", "3100000001"),
    (slots.account_number, "3100零零零零01", "3100000001"),
    (slots.account_number, "13800138000 3100000001", "3100000001"),
    (slots.mobile, "138 0013 8000", "13800138000"),
    (slots.mobile, "幺三八零零幺三八零零零", "13800138000"),
    (slots.mobile, "１３８００１３８０００", "13800138000"),
    (slots.mobile, "+86 138 0013 8000", "13800138000"),
    (slots.last4, "８０００", "8000"),  # full-width: the same 4 digits, never a wrong try
    (slots.last4, "八零零零", "8000"),
    (slots.last4, "尾号是幺三八零", "1380"),
    (slots.last4, "8 0 0 0", "8000"),
    (slots.kwh, "三百度多少钱", "300"),
    (slots.kwh, "用了３００度", "300"),
    (slots.choice, "第二个", 2),
    (slots.choice, "２", 2),
    (slots.choice, "选三", 3),
    (slots.choice, "the second one", 2),
    (slots.work_order_id, "ＷＯ２０２６１１２８０００１", "WO202611280001"),
    (slots.iso_date, "２０２６-１２-０８", "2026-12-08"),
])
def test_form_answers_read_every_form(fn, text: str, value) -> None:
    assert fn(text) == value


def test_form_answers_not_misread() -> None:
    assert slots.choice("我一会儿再说") is None and slots.choice("一样") is None
    assert slots.last4("12345") is None and slots.account_number("13812345678") is None
    assert slots.account_number("+8613812345678") is None and slots.account_number("86 138 1234 5678") is None
    assert slots.kwh("三百") is None and slots.kwh("三百", bare_number=True) == "300"


# --- sums in 块 and 毛, with a magnitude, compared, on a document (the third dates dev set) -----
from intents.entities import ALL_CUES  # noqa: E402
from intents.numbers import yuan_jiao_fen  # noqa: E402


def test_yuan_jiao_fen() -> None:
    assert yuan_jiao_fen("7", "3") == 7.3 and yuan_jiao_fen("二十", "五") == 20.5
    assert yuan_jiao_fen("四", "三", "二") == 4.32 and yuan_jiao_fen(None, "两", "五") == 0.25
    assert yuan_jiao_fen("三", "五", zero=True) == 3.05  # 三块零五: the digit after 零 is 分
    assert yuan_jiao_fen("三", "十") is None and yuan_jiao_fen("电", "五") is None


def _amounts(text: str) -> list[float]:
    ents = _X.extract(text)
    assert ents == _X.extract(text, cues=ALL_CUES), text  # the pre-checks never change the result
    return [e["value"] for e in ents if e["entity"] == "amount"]


@pytest.mark.parametrize("text,value", [
    ("还差6块8就交清了", 6.8), ("一共二十块五", 20.5), ("四块三毛二怎么扣的", 4.32), ("找我三块零五", 3.05),
    ("账上就剩七毛了", 0.7), ("只欠两毛五", 0.25), ("余额3毛", 0.3), ("差3角5分", 0.35), ("两毛钱也要交吗", 0.2),
    ("本季度电费2.3万", 23000.0), ("想预交3k电费", 3000.0), ("账单怎么有1.1万", 11000.0),
    ("水费八十怎么交", 80.0), ("帮我开个两千五的收据", 2500.0), ("开600的发票", 600.0),
])
def test_sums_customers_write_without_a_decimal_point(text: str, value: float) -> None:
    assert _amounts(text) == [value], _amounts(text)


def test_the_earlier_sum_of_a_comparison() -> None:
    assert _amounts("本月电费三百六，上月才一百八") == [360.0, 180.0]
    assert _amounts("电费四百多了，以前只有80") == [400.0, 80.0]
    assert _amounts("上个月才200度电费就这么高") == []  # energy
    assert _amounts("电费怎么上个月才3天就出了") == []  # a count of days


@pytest.mark.parametrize("text", [
    "没毛病", "三角插头松了", "插座是三角的", "一毛不拔", "九牛一毛", "毛巾烧了个洞",  # 毛 / 角 that are no money
    "年用电1.2万度电费多少", "装个7千瓦的充电桩多少钱", "小区有1.5万户",  # a magnitude of energy, power, homes
    "电费怎么几百块", "每个月都要交好几百块",  # several hundred: no sum
    "1202的电费怎么这么高",  # a room's bill
])
def test_money_look_alikes_are_no_sum(text: str) -> None:
    assert _amounts(text) == [], _amounts(text)


def test_a_magnitude_sum_is_never_a_date() -> None:
    ents = _X.extract("上个月电费2.4k，太离谱")
    assert [(e["entity"], e["value"]) for e in ents if e["entity"] != "month"] == [("amount", 2400.0)]
    assert [e["entity"] for e in _X.extract("年用电1.2万度")] == []
