"""Which language to answer in: the one the customer writes in (Chinese first)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def request_language(headers: Mapping[str, str]) -> str:
    """'en' for a caller whose Accept-Language starts with English, else 'zh' (pages and
    refusals that have no customer text to go by)."""
    return "en" if headers.get("Accept-Language", "").lower().startswith("en") else "zh"


def detect_language(text: str) -> str:
    """'en' when the text has Latin letters and no Chinese characters, else 'zh'."""
    if _HAN.search(text or ""):
        return "zh"
    return "en" if len(_LATIN.findall(text or "")) >= 2 else "zh"
