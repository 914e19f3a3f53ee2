"""Chinese numeral parsing (一百二十, 两千五, 三点五, 十一) — small and dependency-free."""

from __future__ import annotations

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
           "六": 6, "七": 7, "八": 8, "九": 9, "壹": 1, "贰": 2, "叁": 3, "肆": 4,
           "伍": 5, "陆": 6, "柒": 7, "捌": 8, "玖": 9}
_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
CN_NUM_CHARS = "".join(_DIGITS) + "".join(_UNITS) + "万亿点"


def _int_part(s: str) -> int | None:
    if not s:
        return 0
    if "亿" in s:
        hi, _, lo = s.partition("亿")
        a, b = _int_part(hi), _int_part(lo)
        return None if a is None or b is None else a * 100_000_000 + b
    if "万" in s:
        hi, _, lo = s.partition("万")
        a, b = _int_part(hi), _int_part(lo)
        return None if a is None or b is None else a * 10_000 + b
    total, cur = 0, None
    for ch in s:
        if ch in _DIGITS:
            cur = _DIGITS[ch] if cur is None else cur * 10 + _DIGITS[ch]
        elif ch in _UNITS:
            total += (1 if cur is None else cur) * _UNITS[ch]
            cur = None
        else:
            return None
    if cur is not None:
        total += cur
    return total


def cn_to_number(s: str) -> float | None:
    """Parse a Chinese or Arabic numeral string; None when it is not a number."""
    s = s.strip()
    if not s:
        return None
    try:
        return float(s.replace(",", ""))
    except ValueError:
        pass
    if "点" in s:
        ip, _, fp = s.partition("点")
        i = _int_part(ip)
        if i is None or not fp or any(c not in _DIGITS for c in fp):
            return None
        return float(f"{i}." + "".join(str(_DIGITS[c]) for c in fp))
    v = _int_part(s)
    return None if v is None else float(v)


def to_int(s: str) -> int | None:
    v = cn_to_number(s)
    return None if v is None or v != int(v) else int(v)
