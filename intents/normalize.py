"""Text normalisation.

Two levels are kept apart on purpose:

* ``normalize_chars`` maps every character to exactly one character (full-width ASCII to
  half-width, ideographic space to space, lower case).  Entity extractors run on it so the
  character offsets they report are valid offsets into the *original* text.
* ``normalize_for_classifier`` additionally converts traditional to simplified Chinese and
  collapses whitespace; it may change the length and is only used for features.
"""

from __future__ import annotations

import re
import unicodedata

import zhconv

_WS_RE = re.compile(r"\s+")
# Characters that commonly appear in traditional text but never in simplified text; cheap
# pre-check so zhconv (a dictionary scan) only runs when it can change something.
_MAX_CLASSIFIER_CHARS = 512  # customer messages are short; bounds worst-case latency


def _map_char(ch: str) -> str:
    code = ord(ch)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII block
        return chr(code - 0xFEE0).lower()
    if code == 0x3000:
        return " "
    if ch in "\u3002\uff61":  # ideographic full stop stays (not a decimal point)
        return ch
    if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r":
        return " "
    return ch.lower() if len(ch.lower()) == 1 else ch


def normalize_chars(text: str) -> str:
    """Length-preserving normalisation (offsets stay valid)."""
    if text.isascii():
        return text.lower()
    return "".join(_map_char(c) for c in text)


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def to_simplified(text: str) -> str:
    """Traditional → simplified; skipped for text without CJK characters (cheap path)."""
    if not _has_cjk(text):
        return text
    return zhconv.convert(text, "zh-cn")


def normalize_for_classifier(text: str) -> str:
    """Normalisation for featurisation: chars, simplified Chinese, whitespace, bounded length."""
    text = normalize_chars(text[:_MAX_CLASSIFIER_CHARS])
    text = to_simplified(text)
    return _WS_RE.sub(" ", text).strip()


def detect_language(text: str) -> str:
    """'zh' if the text has any Han characters or no Latin letters at all, else 'en'."""
    han = sum(1 for c in text[:500] if "\u4e00" <= c <= "\u9fff")
    latin = sum(1 for c in text[:500] if c.isascii() and c.isalpha())
    if han == 0 and latin > 0:
        return "en"
    if han > 0 and latin > 3 * han + 10:
        return "en"
    return "zh"
