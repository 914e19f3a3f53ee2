"""Masking of personal data for the core's logs (phone 138****8000, account 31******01)."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d{10,13}")


def mask_phone(phone: str | None) -> str:
    if not phone:
        return ""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "*" * len(phone)


def mask_account(number: str | None) -> str:
    if not number:
        return ""
    return number[:2] + "*" * max(0, len(number) - 4) + number[-2:] if len(number) > 4 else "*" * len(number)


def mask_address(address: str | None, keep: int = 6) -> str:
    if not address:
        return ""
    return address[:keep] + ("…" if len(address) > keep else "")


def mask_text(text: str) -> str:
    """Mask every run of 10–13 digits (account numbers, phones) in a log line or a URL path."""

    def _sub(m: re.Match[str]) -> str:
        s = m.group(0)
        return mask_phone(s) if len(s) == 11 and s.startswith("1") else mask_account(s)

    return _DIGITS.sub(_sub, text)
