"""Masking of customer personal data for logs, console views and messages.

One set of rules for the gateway and the core: resident ID numbers, phone numbers, account
numbers, e-mail addresses and street addresses are hidden, keeping just enough (a prefix, the
last digits, the district) to debug with.
"""

from __future__ import annotations

import re

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ACCOUNT = re.compile(r"(?<![\dA-Za-z])(\d{2})(\d{6,9})(\d{2})(?!\d)")
_ID_CARD = re.compile(r"(?<![\dA-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![\dA-Za-z])")  # resident ID: region kept
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\b")
# A street address: optional province/city/district prefix, a road, lane, estate or building,
# then house, building and room numbers. The prefix is kept (where, roughly), the rest hidden.
_ADDRESS_ZH = re.compile(
    r"((?:[\u4e00-\u9fa5]{1,8}?(?:省|市|自治区))?(?:[\u4e00-\u9fa5]{1,6}?(?:新区|区|县))?)"
    r"[\u4e00-\u9fa5A-Za-z0-9]{1,20}?(?:路|街|大道|巷|弄|村|小区|花园|新村|公寓|大厦|家园|苑)"
    r"(?:\d+(?:号楼|号院|号|栋|幢|单元|室|楼|层|弄|巷)|[东西南北]区|[A-Za-z]座)*"
)
_ADDRESS_EN = re.compile(
    r"\b\d+[A-Za-z]?(?:\s+[A-Z][a-z]+){1,4}\s+(?:Road|Rd|Street|St|Avenue|Ave|Lane|Ln|Boulevard|Blvd|Drive|Dr)\b\.?"
)


def mask_phone(phone: str | None) -> str:
    digits = re.sub(r"\D", "", phone or "")
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 7 else "***"


def mask_account(account: str | None) -> str:
    account = account or ""
    return f"{account[:2]}{'*' * (len(account) - 4)}{account[-2:]}" if len(account) > 4 else "***"


def mask_address(address: str | None) -> str:
    """Keep the district-level prefix only: enough to debug, not enough to find a door."""
    if not address:
        return ""
    for marker in ("区", "县", "市"):
        i = address.find(marker)
        if 0 <= i < 12:
            return address[: i + 1] + "***"
    return address[:4] + "***"


def _mask_zh_address(m: re.Match[str]) -> str:
    # a road named without a number ("沿线") is a place, not a door: only numbered ones go
    return m.group(1) + "***" if re.search(r"\d", m.group(0)) or len(m.group(0)) - len(m.group(1)) > 6 else m.group(0)


def mask_text(text: str) -> str:
    """Mask personal data inside free text: resident ID numbers, phone numbers, account
    numbers (10–13 digits), e-mail addresses and street addresses."""
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}********{m.group(2)[-1]}", text)
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _ACCOUNT.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _ADDRESS_EN.sub("*** (address)", text)
    return _ADDRESS_ZH.sub(_mask_zh_address, text)
