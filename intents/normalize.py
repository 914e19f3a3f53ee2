"""Text normalisation.

Two levels are kept apart on purpose:

* ``normalize_chars`` maps every character to exactly one character (full-width ASCII to
  half-width, ideographic space to space, lower case).  Entity extractors run on it so the
  character offsets they report are valid offsets into the *original* text.
* ``normalize_for_classifier`` additionally converts traditional to simplified Chinese and
  collapses whitespace; it may change the length and is only used for features.

Both run on every message, so each has a fast path that is exact by construction: the
per-character map is applied with ``str.translate`` over a memo of ``_map_char`` (the
definition), and zhconv's dictionary scan is skipped when the text contains nothing the
dictionary could change.  tests/nlu/test_nlu_fast_path.py checks both against the slow forms.
"""

from __future__ import annotations

import operator
import re
import unicodedata

import zhconv

from intents.numbers import cn_to_number

_WS_RE = re.compile(r"\s+")
_MAX_CLASSIFIER_CHARS = 512  # customer messages are short; bounds worst-case latency
_HAN_RE = re.compile("[\u4e00-\u9fff]")
_LATIN_RE = re.compile("[A-Za-z]")  # what `c.isascii() and c.isalpha()` accepts


def _map_char(ch: str) -> str:
    """The definition of the length-preserving map, one character at a time."""
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


class _CharMap(dict):
    """``str.translate`` table holding ``_map_char`` of every code point seen so far.

    Filled on demand because tabulating all 1.1M code points up front costs ~0.3 s at
    import; after warm-up every lookup is a C-level dict hit.  The memo stops growing at
    ``limit`` entries so hostile input with ever new characters cannot inflate memory.
    """

    def __init__(self, limit: int = 65_536) -> None:
        super().__init__()
        self._limit = limit

    def __missing__(self, code: int) -> str:
        mapped = _map_char(chr(code))
        if len(self) < self._limit:
            self[code] = mapped
        return mapped


_CHAR_MAP = _CharMap()


def normalize_chars(text: str) -> str:
    """Length-preserving normalisation (offsets stay valid)."""
    if text.isascii():
        return text.lower()
    return text.translate(_CHAR_MAP)


def _has_cjk(text: str) -> bool:
    return _HAN_RE.search(text) is not None


class _ConversionGate:
    """Tells, cheaply, whether ``zhconv.convert(text, "zh-cn")`` could change ``text``.

    zhconv replaces maximal dictionary matches; the result differs from the input only if
    the text contains a key whose value differs from it.  Such a key is either a single
    (traditional) character or a phrase; a phrase either contains one of those characters
    or is one of a few hundred all-simplified phrases ("反覆", "么九"), detected by their
    first two characters.  No hit means the conversion is the identity.  Built from
    zhconv's own table on first use, so it follows the installed dictionary.
    """

    def __init__(self) -> None:
        from zhconv import zhconv as impl  # the module; the package re-exports functions

        table = impl.getdict("zh-cn")
        changing = [k for k, v in table.items() if k != v and k]
        self.chars = frozenset(k for k in changing if len(k) == 1)
        phrases = [k for k in changing if len(k) > 1 and self.chars.isdisjoint(k)]
        self.phrase_starts = frozenset(p[0] for p in phrases)
        self.phrase_pairs = frozenset(p[:2] for p in phrases)

    def may_change(self, text: str) -> bool:
        if not self.chars.isdisjoint(text):
            return True
        if self.phrase_starts.isdisjoint(text):
            return False
        return not self.phrase_pairs.isdisjoint(map(operator.add, text, text[1:]))


class _AlwaysConvert:
    """Fallback when zhconv's table is not reachable (another zhconv version): no gate."""

    @staticmethod
    def may_change(text: str) -> bool:
        return True


_gate: _ConversionGate | _AlwaysConvert | None = None


def _conversion_gate() -> _ConversionGate | _AlwaysConvert:
    global _gate
    if _gate is None:
        try:
            _gate = _ConversionGate()
        except Exception:  # noqa: BLE001 - private zhconv API moved: stay exact, lose speed
            _gate = _AlwaysConvert()
    return _gate


def to_simplified(text: str) -> str:
    """Traditional → simplified; skipped when it provably changes nothing (cheap path)."""
    if not _has_cjk(text) or not _conversion_gate().may_change(text):
        return text
    return zhconv.convert(text, "zh-cn")


def normalize_for_classifier(text: str) -> str:
    """Normalisation for featurisation: chars, simplified Chinese, Chinese-numeral quantities
    as digits ("三百度" reads like "300度"), whitespace, bounded length."""
    text = normalize_chars(text[:_MAX_CLASSIFIER_CHARS])
    text = to_simplified(text)
    if _CN_QUANTITY_RE.search(text):
        text = _CN_QUANTITY_RE.sub(_quantity_digits, text)
    return _WS_RE.sub(" ", text).strip()


# a Chinese numeral of two characters or more before a unit of energy or money ("三百度",
# "两千五块"); "一度" alone stays (it is also "once"), and so does "几十度"
_CN_QUANTITY_RE = re.compile("(?<![几多数零〇一二三四五六七八九两十百千万点])"
                             "([零〇一二三四五六七八九两十百千万点]{2,}|[十百千万])(?=\\s*(?:度|千瓦时|元|块))")


def _quantity_digits(m: re.Match[str]) -> str:
    value = cn_to_number(m.group(1))
    if value is None:
        return m.group(1)
    return str(int(value)) if value == int(value) else str(value)


# one toneless pinyin syllable; a word of pinyin is a run of them ("guangfu", "tingdian")
_SYLLABLE = (r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?"
             r"(?:iang|iong|uang|ang|eng|ing|ong|uan|ian|iao|uai|ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ue|ui|er|a|o|e|i|u|v)")
_PINYIN_WORD_RE = re.compile(f"(?:{_SYLLABLE})+")
_WORD_RE = re.compile(r"[a-z']+")
# English words a pinyin sentence never holds (spelt like syllables: "in", "he", "long"...)
_ENGLISH_WORDS = frozenset(
    "the is are am was be my to you your what how can do does did please i it of for and on in at this that with "
    "no yes ok hi hello thanks bye not any who why when where which will would could should have has had get "
    "go we us our they them".split())


def is_pinyin(text: str) -> bool:
    """"guangfu bingwang zenme banli", "minhang mingtian tingdian ma": Chinese written in pinyin
    (three words at least, every one a run of syllables, none an English word; "Jing'an" is a name)."""
    words = _WORD_RE.findall(text.lower())
    return len(words) >= 3 and all(_PINYIN_WORD_RE.fullmatch(w) for w in words) and not _ENGLISH_WORDS.intersection(words)


def detect_language(text: str) -> str:
    """'zh' if the text has any Han characters, is pinyin, or has no Latin letters at all, else
    'en'."""
    head = text[:500]
    han = len(_HAN_RE.findall(head))
    latin = len(_LATIN_RE.findall(head))
    if han == 0 and latin > 0:
        return "zh" if is_pinyin(head) else "en"
    if han > 0 and latin > 3 * han + 10:
        return "en"
    return "zh"
