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
