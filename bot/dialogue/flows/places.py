"""Places in answers and in English addresses: districts' English names, "the nearest", streets.

The core names districts and halls in Chinese. English answers name a district by its pinyin
from the NLU's district table (``intents.places``: "静安区" → "Jing'an", "浦东新区" → "Pudong"),
so one district is always written the same way; "the nearest hall" is measured between rough
positions of the districts.
"""

from __future__ import annotations

import math

from intents.places import SHANGHAI

# rough centre (latitude, longitude) of each district, by its English name
POSITIONS: dict[str, tuple[float, float]] = {
    "Pudong": (31.22, 121.54), "Huangpu": (31.23, 121.48), "Xuhui": (31.19, 121.44), "Changning": (31.22, 121.42),
    "Jing'an": (31.26, 121.45), "Putuo": (31.25, 121.40), "Hongkou": (31.27, 121.50), "Yangpu": (31.26, 121.53),
    "Minhang": (31.11, 121.38), "Baoshan": (31.40, 121.49), "Jiading": (31.38, 121.27), "Jinshan": (30.74, 121.34),
    "Songjiang": (31.03, 121.23), "Qingpu": (31.15, 121.12), "Fengxian": (30.92, 121.47), "Chongming": (31.62, 121.40),
}


def english_name(district: str | None) -> str | None:
    """A Shanghai district's English name ("Jing'an"), or None for a name the table lacks."""
    for d in SHANGHAI:
        if district and district in (d.name, d.stem, *d.aliases):
            first, *rest = d.pinyin
            return first.capitalize() + "".join(("'" if s[:1] in "aoe" else "") + s for s in rest)
    return None


def district_label(district: str | None, lang: str) -> str:
    """A district as an answer names it: English in English answers when known."""
    if lang == "en":
        return english_name(district) or district or ""
    return district or ""


def distance(a: str | None, b: str | None) -> float:
    """How far apart two districts are (by name; unknown ones are far from everything)."""
    pa, pb = POSITIONS.get(english_name(a) or ""), POSITIONS.get(english_name(b) or "")
    if pa is None or pb is None:
        return 1e9
    return math.hypot(pa[0] - pb[0], (pa[1] - pb[1]) * math.cos(math.radians(31.2)))


def has_chinese(text: str | None) -> bool:
    """Whether a text has Chinese characters (an address the core can match street by street)."""
    return any(0x4E00 <= ord(ch) <= 0x9FFF for ch in text or "")


_STREET_WORDS = frozenset({"road", "rd", "street", "st", "avenue", "ave", "lane", "ln", "boulevard", "blvd", "highway"})


def names_street(text: str) -> bool:
    """Whether an English message names a street (not only "the building", "my flat"): the
    core's addresses are Chinese, so such an address is kept as the customer wrote it."""
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in text or "").split()
    return any(w in _STREET_WORDS for w in words)
