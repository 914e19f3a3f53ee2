"""Chinese numerals (一百二十, 两千五, 一万二, 三点五, 十一, 二零二六) read by ``cn2an``.

``cn2an``'s "normal" mode reads the colloquial short forms a customer types (两千五 = 2500,
一万二 = 12000) that a hand-written digit-and-unit fold gets wrong, and refuses what is not a
numeral.  English sums said in words ("two hundred and fifty") are read here too
(``EN_SUM_WORDS``, ``en_words_to_number``): the entity extractor needs them for amounts.
"""

from __future__ import annotations

import re
import unicodedata

import cn2an

# the characters a Chinese numeral is written with (entity extraction scans for runs of them)
_DIGITS = "零〇一二三四五六七八九两壹贰叁肆伍陆柒捌玖"
_UNITS = "十拾百佰千仟万亿"
CN_NUM_CHARS = _DIGITS + _UNITS + "点"
CN_DIGIT_CHARS = _DIGITS
CN_MAGNITUDE_CHARS = "十拾百佰千仟万"  # a numeral with one of these is a quantity, not a digit string


def cn_to_number(s: str) -> float | None:
    """Parse a Chinese or Arabic numeral string; None when it is not a number."""
    s = s.strip()
    if not s:
        return None
    try:
        return float(s.replace(",", ""))
    except ValueError:
        pass
    if s[0] in _UNITS:  # a bare unit counts one of it: 百 = 100, 千五 = 1500
        s = "一" + s
    try:
        return float(cn2an.cn2an(s, "normal"))
    except (ValueError, KeyError, IndexError):
        return None


# --- English numbers in words: "two hundred and fifty", "twelve hundred", "one thousand two
# hundred", "eighty-five".  A sum said in words has a hundred, a thousand or a tens word in it;
# "one", "two" alone are far more often counts ("pay two bills"), so they are not matched.
_EN_UNIT = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_EN_TEEN = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
            "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_EN_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
            "eighty": 80, "ninety": 90}
_EN_WORD_VALUE = {**_EN_UNIT, **_EN_TEEN, **_EN_TENS, "a": 1}
_U, _T, _D = ("|".join(d) for d in (_EN_UNIT, _EN_TEEN, _EN_TENS))
_BELOW_100 = rf"(?:(?:{_D})(?:[\s-]?(?:{_U}))?|{_T}|{_U})"
_HUNDREDS = rf"(?:a|{_U}|{_T})\s+hundred(?:\s+(?:and\s+)?{_BELOW_100})?"
# a sum in words (see above), as a regular expression without groups
EN_SUM_WORDS = (rf"(?:(?:a|{_BELOW_100})\s+thousand(?:\s+(?:and\s+)?(?:{_HUNDREDS}|{_BELOW_100}))?"
                rf"|{_HUNDREDS}|(?:{_D})(?:[\s-]?(?:{_U}))?)")
_EN_WORD_RE = re.compile(r"[a-z]+")


def en_words_to_number(s: str) -> int | None:
    """The value of an English number in words that ``EN_SUM_WORDS`` matched; None otherwise."""
    total = cur = 0
    for w in _EN_WORD_RE.findall(s.lower()):
        if w == "and":
            continue
        if w == "hundred":
            cur = (cur or 1) * 100
        elif w == "thousand":
            total, cur = total + (cur or 1) * 1000, 0
        elif w in _EN_WORD_VALUE:
            cur += _EN_WORD_VALUE[w]
        else:
            return None
    return total + cur or None


# --- sums in 块 and 毛 (元 and 角): "12块5" = 12.5, "九十九块九" = 99.9, "一块二毛三" = 1.23,
# "八毛八" = 0.88, "5毛" = 0.5.  The digit after 块 counts tenths (毛), the one after 毛 hundredths
# (分); "一块零五" = 1.05 (零: no 毛, the digit is 分).
def yuan_jiao_fen(yuan: str | None, jiao: str | None, fen: str | None = None,
                  zero: bool = False) -> float | None:
    """The sum of ``yuan`` 元 (any numeral), ``jiao`` 角 and ``fen`` 分 (one digit each, Chinese
    or Arabic); with ``zero`` (a 零 after 块) the one digit given as ``jiao`` is the 分.  None
    when a part is not a numeral or a 角/分 part is not a single digit 0-9."""
    total = 0.0
    if yuan:
        y = cn_to_number(yuan)
        if y is None:
            return None
        total += y
    if zero and fen is None:
        jiao, fen = None, jiao
    for part, scale in ((jiao, 10), (fen, 100)):
        if part:
            d = cn_to_number(part)
            if d is None or d != int(d) or not 0 <= d <= 9:
                return None
            total += d / scale
    return round(total, 2)


def to_int(s: str) -> int | None:
    v = cn_to_number(s)
    return None if v is None or v != int(v) else int(v)


# --- digits as customers type them in numbers that are read digit by digit ------------------
# An account or phone number is read out digit by digit: "三一零零零零零零零一", "幺三八…"
# (幺 is how 1 is said in phone numbers), "３１００…" (full-width), "3100零零零零01" (mixed).
# ``digits_view`` rewrites those digits to ASCII one character for one character, so every
# offset into the text stays valid; numerals with units (一百二十, 两千五) are left to
# ``cn_to_number``.
_SPELLED = {"零": "0", "〇": "0", "○": "0", "洞": "0", "一": "1", "幺": "1", "壹": "1",
            "二": "2", "两": "2", "贰": "2", "三": "3", "叁": "3", "四": "4", "肆": "4",
            "五": "5", "伍": "5", "六": "6", "陆": "6", "七": "7", "柒": "7", "八": "8",
            "捌": "8", "九": "9", "玖": "9"}
# "洞" (0 in radio talk) only counts inside a run that has other digits; a run must be this
# long (Chinese and Arabic digits together) to be read as a number spelled out digit by digit
_MIN_SPELLED_RUN = 4
_UNIT_CHARS = frozenset(_UNITS + "点")
_SPELLED_RUN_RE = re.compile(f"[0-9{''.join(_SPELLED)}]+")


def _ascii_digit(m: re.Match[str]) -> str:
    """A Unicode decimal digit (full-width, Arabic-Indic, mathematical bold…) as ASCII."""
    d = unicodedata.decimal(m.group(0), None)
    return str(d) if d is not None else m.group(0)


def digits_view(text: str) -> str:
    """``text`` with every decimal digit in ASCII and digit-by-digit Chinese numbers as digits.

    Length-preserving (one character for one character). A run of Chinese digits (Arabic
    digits may be mixed in) is converted when it is at least four characters long, holds a
    Chinese digit besides "洞", and touches no unit (十百千万亿点): "三一零零零零零零零一"
    → "3100000001", "幺三八零零幺三八零零零" → "13800138000", "二零二六年" → "2026年",
    while "一百二十" and "三四百" stay as they are.  A lone Chinese digit at either end of a run,
    next to an Arabic digit, is left out of it: in "…5678一直收不到" it begins the word 一直.
    """
    if text.isascii():
        return text
    out = _NON_ASCII_DIGIT_RE.sub(_ascii_digit, text)
    if _SPELLED_CHARS.isdisjoint(out):
        return out
    chars = list(out)
    for m in _SPELLED_RUN_RE.finditer(out):
        s, e = m.span()
        # "…5678一直收不到", "一直13912345678": one Chinese digit stuck to an Arabic run is
        # the first character of a word (一直, 一下, 一共), not a digit of the number
        if e - s >= 2 and out[e - 1] in _SPELLED and out[e - 2].isdigit():
            e -= 1
        if e - s >= 2 and out[s] in _SPELLED and out[s + 1].isdigit():
            s += 1
        run = out[s:e]
        if e - s < _MIN_SPELLED_RUN or not any(c in _SPELLED and c != "洞" for c in run):
            continue
        if (s > 0 and out[s - 1] in _UNIT_CHARS) or (e < len(out) and out[e] in _UNIT_CHARS):
            continue
        for i in range(s, e):
            chars[i] = _SPELLED.get(chars[i], chars[i])
    return "".join(chars)


_SPELLED_CHARS = frozenset(_SPELLED)
_NON_ASCII_DIGIT_RE = re.compile(r"(?![0-9])\d")  # \d of a str pattern: every Unicode digit


# Numbers written in groups: "3100 0000 02", "138 0013 8000", "3100-0000-01".
_GROUPED_RE = re.compile(r"(?<![\d.])\d+(?:[ \-]\d+)*")
_PART_RE = re.compile(r"\d+")


def grouped_numbers(t: str, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(start, end, digits) of every number of ``lo``–``hi`` digits in ``t`` (ASCII digits, as
    ``digits_view`` gives), written as one run or in groups separated by one space or dash.

    Groups are joined only when each has 2–4 digits, none is a whole number by itself and
    together they do not read as a date ("2026-12-07 10"); otherwise each run counts alone.
    A decimal ("3100000001.5") is not a number of digits.
    """
    found: list[tuple[int, int, str]] = []
    for m in _GROUPED_RE.finditer(t):
        end = m.end()
        parts = list(_PART_RE.finditer(m.group(0)))
        digits = "".join(p.group(0) for p in parts)
        if (len(parts) > 1 and lo <= len(digits) <= hi
                and all(2 <= len(p.group(0)) <= 4 for p in parts)
                and not _date_like([p.group(0) for p in parts])):
            if not (end + 1 < len(t) and t[end] == "." and t[end + 1].isdigit()):
                found.append((m.start(), end, digits))
                continue
        base = m.start()
        for p in parts:
            s, e = base + p.start(), base + p.end()
            if lo <= e - s <= hi and not (e + 1 < len(t) and t[e] == "." and t[e + 1].isdigit()):
                found.append((s, e, p.group(0)))
    return found


def _date_like(parts: list[str]) -> bool:
    return len(parts[0]) == 4 and parts[0][:2] in ("19", "20") and len(parts) > 1 and int(parts[1]) <= 12


_EN_DIGIT = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
             "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_EN_DIGIT_RUN_RE = re.compile(r"\b(?:(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine)[\s-]+){3,}"
                              r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine)\b", re.I)


def english_digits(text: str) -> str:
    """Digits read out in English ("nine zero zero zero", "eight oh oh oh") as digits; fewer than
    four words in a row are left as words ("one or two")."""
    return _EN_DIGIT_RUN_RE.sub(lambda m: "".join(_EN_DIGIT[w.lower()] for w in re.split(r"[\s-]+", m.group(0))), text)
