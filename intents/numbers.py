"""Chinese numerals (一百二十, 两千五, 一万二, 三点五, 十一, 二零二六) read by ``cn2an``.

``cn2an``'s "normal" mode reads the colloquial short forms a customer types (两千五 = 2500,
一万二 = 12000) that a hand-written digit-and-unit fold gets wrong, and refuses what is not a
numeral.
"""

from __future__ import annotations

import cn2an

# the characters a Chinese numeral is written with (entity extraction scans for runs of them)
_DIGITS = "零〇一二三四五六七八九两壹贰叁肆伍陆柒捌玖"
_UNITS = "十拾百佰千仟万亿"
CN_NUM_CHARS = _DIGITS + _UNITS + "点"


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


def to_int(s: str) -> int | None:
    v = cn_to_number(s)
    return None if v is None or v != int(v) else int(v)
