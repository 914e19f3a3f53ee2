"""The value a form asked for, read from the customer's answer as typed.

``intents.entities`` extracts entities from any message for the NLU parse (on normalised,
lower-cased text, with offsets). A form needs something narrower: after "what is your account
number?" the answer "3100000001" or "2" (the second button) or "138xxxx5678" is read here, on the
raw text, even when the parse found no entity. The patterns deliberately differ from the NLU's
where the dialogue has always read differently:

- an account number is 10-13 digits not preceded by a letter ("WO…" codes are not accounts) —
  the NLU's excludes a decimal point instead; an 11-digit mobile is not an account;
- a mobile may carry +86/86 glued on, but no separators (the NLU's also reads "138-1234-5678");
- a work-order id is "WO" and 12 digits as a word, any case (the NLU's also reads "wo-…" and
  "工单号 2611…").
"""

from __future__ import annotations

import re

_ACCOUNT_RE = re.compile(r"(?<![\dA-Za-z])(\d{10,13})(?!\d)")
_MOBILE_RE = re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d{9})(?!\d)")
_LAST4_RE = re.compile(r"^\D{0,12}(\d{4})\D{0,6}$")
_WO_RE = re.compile(r"\b(WO\d{12})\b", re.I)
_KWH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:度|千瓦时|kwh|kw·h|units?)", re.I)
_NUMBER_RE = re.compile(r"(\d+(?:\.\d+)?)")
_CHOICE_RE = re.compile(r"^\D{0,6}(\d{1,2})\D{0,4}$")
_ISO_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_DIGIT_RE = re.compile(r"\d")
_NAME_PREFIX_RE = re.compile(r"^(我叫|我是|姓名[:：]?|my name is|i am)\s*", re.I)
_DISTRICT_RE = re.compile(r"([\u4e00-\u9fa5]{2,4}?(?:新区|区|县))")
_CITY_PREFIXES = ("上海市", "上海", "北京市", "市")


def has_account_digits(text: str) -> bool:
    """Whether a message has a run of digits as long as an account number (a mobile counts)."""
    return _ACCOUNT_RE.search(text) is not None


def account_number(text: str) -> str | None:
    """The account number a message gives: its first long run of digits, unless that is a mobile."""
    m = _ACCOUNT_RE.search(text)
    return m.group(1) if m and not _MOBILE_RE.fullmatch(m.group(1)) else None


def mobile(text: str | None) -> str | None:
    """The 11 digits of a mainland mobile number in ``text`` (a "+86" or "86" before it dropped)."""
    m = _MOBILE_RE.search(text or "")
    return m.group(1) if m else None


def last4(text: str) -> str | None:
    """Four digits given alone (with a few words around them): the phone's last 4 digits."""
    m = _LAST4_RE.match(text)
    return m.group(1) if m else None


def work_order_id(text: str) -> str | None:
    """A work order number ("WO" and 12 digits), upper-cased."""
    m = _WO_RE.search(text)
    return m.group(1).upper() if m else None


def kwh(text: str, *, bare_number: bool = False) -> str | None:
    """An amount of energy ("300度", "300 kWh"); with ``bare_number`` any number will do (the
    answer to "how many kWh?")."""
    m = _KWH_RE.search(text) or (_NUMBER_RE.search(text) if bare_number else None)
    return m.group(1) if m else None


def choice(text: str) -> int | None:
    """A number of one or two digits given alone: the position of an offered option ("2", "第2个")."""
    m = _CHOICE_RE.match(text)
    return int(m.group(1)) if m else None


def iso_date(text: str) -> str | None:
    m = _ISO_DATE_RE.search(text)
    return m.group(1) if m else None


def contact_name(text: str) -> str | None:
    """A name as the answer to "your name?": short, no digits, without "我叫"/"my name is"."""
    if 1 < len(text) <= 30 and not _DIGIT_RE.search(text):
        return _NAME_PREFIX_RE.sub("", text)
    return None


def district(text: str | None) -> str | None:
    """The district ("浦东新区", "闵行区", "崇明县") a free-text address names, city prefix dropped."""
    m = _DISTRICT_RE.search(text or "")
    if not m:
        return None
    d = m.group(1)
    for prefix in _CITY_PREFIXES:
        if d.startswith(prefix) and len(d) > len(prefix) + 1:
            d = d[len(prefix):]
    return d
