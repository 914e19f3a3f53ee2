"""Logging setup with customer PII masked before anything reaches a handler."""

from __future__ import annotations

import logging
import re
import sys

_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ACCOUNT = re.compile(r"(?<![\dA-Za-z])(\d{2})(\d{6,9})(\d{2})(?!\d)")


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "")
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 7 else "***"


def mask_account(account: str) -> str:
    return f"{account[:2]}{'*' * (len(account) - 4)}{account[-2:]}" if len(account) > 4 else "***"


def mask_address(address: str) -> str:
    """Keep the district-level prefix only: enough to debug, not enough to find a door."""
    if not address:
        return ""
    for marker in ("区", "县", "市"):
        i = address.find(marker)
        if 0 <= i < 12:
            return address[: i + 1] + "***"
    return address[:4] + "***"


def mask_text(text: str) -> str:
    """Mask phone numbers and account numbers (10–13 digits) inside free text."""
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _ACCOUNT.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


class PiiFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        record.msg, record.args = mask_text(msg), None
        return True


def setup_logging(level: str = "INFO", json_format: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = (
        '{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if json_format
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(PiiFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
