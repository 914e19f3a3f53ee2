"""Small pure pieces of the console: score parsing, callback intent, masking of what agents see."""

from __future__ import annotations

import pytest

from bot.console.service import display_name, parse_score, wants_callback
from bot.console.summary import mask_name


@pytest.mark.parametrize(
    ("text", "score"),
    [("5", 5), (" 4分", 4), ("3 分。", 3), ("五星", 5), ("一分", 1), ("2 stars", 2), ("1!", 1),
     ("6", None), ("0", None), ("45", None), ("5月电费多少", None), ("我要投诉", None), ("", None)],
)
def test_parse_score(text: str, score: int | None) -> None:
    assert parse_score(text) == score


@pytest.mark.parametrize(("text", "yes"), [("回电", True), ("请给我回个电话，回电吧", True), ("callback please", True),
                                           ("Call me back", True), ("好的", False), ("还要等多久", False)])
def test_wants_callback(text: str, yes: bool) -> None:
    assert wants_callback(text) is yes


def test_display_masks_phone_and_mail() -> None:
    assert display_name("sms:+8613800138000") == "sms:138****8000"
    assert display_name("email:zhangwei@example.com") == "email:zh***@example.com"
    assert display_name("rest:web-1") == "rest:web-1"
    assert mask_name("张伟") == "张*" and mask_name("") == ""
