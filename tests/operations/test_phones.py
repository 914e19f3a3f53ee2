"""One phone rule for every SMS identity (common.phones, on Google's phonenumbers)."""

from __future__ import annotations

import pytest

from common.phones import sms_number


@pytest.mark.parametrize("raw", [
    "13800138000", "138 0013 8000", "138-0013-8000", "+8613800138000", "+86 138-0013-8000",
    "+86-13800138000", "8613800138000", "86-13800138000", "008613800138000", "0086 138 0013 8000",
    " 13800138000 ", 13800138000,
])
def test_a_mainland_mobile_however_written_is_one_e164_number(raw: object) -> None:
    assert sms_number(raw) == "+8613800138000"


@pytest.mark.parametrize("raw,e164", [
    ("+85291234567", "+85291234567"),  # Hong Kong mobile
    ("+1 650-253-0000", "+16502530000"),  # North America: mobile and landline look alike, allowed
    ("00852 9123 4567", "+85291234567"),
])
def test_numbers_of_other_countries_that_take_sms(raw: str, e164: str) -> None:
    assert sms_number(raw) == e164


@pytest.mark.parametrize("raw", [
    None, "", "   ", "abc", "12345", "95598", "12345678901",  # 11 digits but no mobile prefix
    "010-12345678", "01012345678", "+861012345678", "+44 20 7946 0000",  # landlines: SMS cannot reach them
    "1380013800x", "1-800-FLOWERS", "１３８００１３８０００",  # letters, another script's digits
    "+86 138 0013 8000 1234",
])
def test_what_sms_cannot_reach_is_refused(raw: object) -> None:
    assert sms_number(raw) is None


def test_the_sms_channel_and_the_notifications_agree() -> None:
    """Both use the one rule: what one accepts as an SMS identity, the other does too."""
    from bot.notify import api, producer
    from channels import sms

    assert sms.sms_number is producer.sms_number is api.sms_number is sms_number
    assert not hasattr(sms, "normalize_phone") and not hasattr(producer, "normalize_phone")


def test_the_e164_fast_path_agrees_with_phonenumbers() -> None:
    """Numbers already in mainland E.164 skip the parse: over every 3- and 4-digit mobile prefix
    (assigned or not) the answer is the one phonenumbers gives."""
    import random

    from common.phones import _sms_number

    rng = random.Random(7)
    checked = 0
    for prefix in range(1000, 2000):
        for _ in range(3):
            text = f"+86{prefix}{rng.randrange(10**7):07d}"
            assert sms_number(text) == _sms_number(text, "CN"), text
            checked += 1
    assert checked == 3000
    assert sms_number("+8613800138000") == "+8613800138000"
    assert sms_number("+8612000000000") is None  # no such mobile range
