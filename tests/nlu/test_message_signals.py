"""Signals read off a message's words where the classifier has little to go by (intents.signals)."""

from __future__ import annotations

import pytest

from intents import signals


@pytest.mark.parametrize("text,want", [
    ("抬头上海浦江餐饮有限公司 税号91310115MA1K4XYZ3Q 发到caiwu@pujiang-food.cn",
     {"title": "上海浦江餐饮有限公司", "tax_id": "91310115MA1K4XYZ3Q", "email": "caiwu@pujiang-food.cn"}),
    ("send it to lina.w@example.com please", {"email": "lina.w@example.com"}),
    ("确认", {}),
])
def test_invoice_details(text: str, want: dict) -> None:
    assert signals.invoice_details(text) == want


@pytest.mark.parametrize("text,want", [
    ("尾号我不知道啊 是原房主留的手机", True), ("不记得了 手机是我儿子当时办的", True),
    ("I don't know her phone number tbh", True), ("8000", False), ("尾号8000", False), ("我不知道户号在哪", False),
])
def test_cannot_verify(text: str, want: bool) -> None:
    assert signals.cannot_verify(text) is want


@pytest.mark.parametrize("text,want", [
    ("取消预约", True), ("刚才那个预约帮我取消掉吧", True), ("can you cancel my appointment", True),
    ("不取消预约了", False), ("预约明天上午", False), ("取消订阅", False),
])
def test_cancels_booking(text: str, want: bool) -> None:
    assert signals.cancels_booking(text) is want


@pytest.mark.parametrize("text,want", [
    ("wait, it's not B1, the meter is in the B2 electrical room", ("B1", "B2")), ("不是1202 是1203室", ("1202", "1203")),
    ("I am not at home, I am at work", None),
])
def test_replaced_piece(text: str, want) -> None:
    assert signals.replaced_piece(text) == want
    if want:
        assert signals.with_piece_replaced("浦东新区世纪大道1500号B1层", "not B1, it is B2") == "浦东新区世纪大道1500号B2层"


@pytest.mark.parametrize("text,want", [
    ("【国网上海电力】您的电费已逾期。回复TD退订 ——怎么又催了", "【国网上海电力】您的电费已逾期  ——怎么又催了"),
    ("TD", "TD"),
])
def test_notice_footer(text: str, want: str) -> None:
    assert signals.without_notice_footer(text) == want


@pytest.mark.parametrize("text,rest", [
    ("知道了 那先交钱吧", "那先交钱吧"), ("ok got it, then I'll pay first", "then I'll pay first"), ("好的", None), ("okay", None),
])
def test_after_acknowledgement(text: str, rest) -> None:
    assert signals.after_acknowledgement(text) == rest


@pytest.mark.parametrize("text,rest", [
    ("ok apply for me. account 3100000001, last four 8000, about 6 kW on our roof", "ok apply for me. about 6 kW on our roof"),
    ("想加到60千瓦 地址就是店里 联系电话13800138000", "想加到60千瓦 地址就是店里"),
    ("户号3100000001 尾号8000", ""),
])
def test_besides_identifiers(text: str, rest: str) -> None:
    assert signals.besides_identifiers(text) == rest
