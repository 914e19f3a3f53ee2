"""Which language to answer in: the one the customer writes in (Chinese first)."""

from __future__ import annotations

import re

_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """'en' when the text has Latin letters and no Chinese characters, else 'zh'."""
    if _HAN.search(text or ""):
        return "zh"
    return "en" if len(_LATIN.findall(text or "")) >= 2 else "zh"
