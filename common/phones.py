"""Phone numbers, one rule for the whole product (built on Google's ``phonenumbers``).

An SMS identity — the sender of an inbound SMS, the recipient of a reply or a notice, an
opt-out, an ``sms`` subscription — is a number that can receive an SMS: a valid mobile number
(or a number its country does not tell apart from a mobile, as in North America), written in
E.164 (``+8613800138000``). A number without ``+`` or ``00`` is read as mainland Chinese. A
landline (``010-12345678``), a number too short or too long, or one written with letters or
another script's digits is not an SMS identity: SMS cannot reach it.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = ["sms_number"]

# what people put between digits; anything else (letters, full-width digits) is not a number
_WRITTEN = re.compile(r"\+?[0-9\s\-().]{5,30}", re.ASCII)
_SMS_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


# Mainland mobiles already in E.164 — how every SMS identity is stored — are checked against
# phonenumbers' own pattern for Chinese mobiles, without parsing: a notice fan-out meets tens of
# thousands of distinct numbers, each a ~25 µs parse (a third of the enqueue's time), and the
# answer is the same (tests/operations/test_phones.py compares the two).
_CN_E164 = re.compile(r"\+86(1\d{10})", re.ASCII)
_CN_MOBILE = re.compile(phonenumbers.PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern)


def sms_number(raw: object, region: str = "CN") -> str | None:
    """E.164 of a number that can receive an SMS, else None (see the module's rule)."""
    if not raw:
        return None
    text = str(raw).strip()
    m = _CN_E164.fullmatch(text)
    if m is not None and _CN_MOBILE.fullmatch(m.group(1)):
        return text
    return _sms_number(text, region)


@lru_cache(maxsize=65_536)  # parsing costs ~25 µs; a batch of notices meets the same numbers again
def _sms_number(text: str, region: str) -> str | None:
    if not _WRITTEN.fullmatch(text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in _SMS_TYPES:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
