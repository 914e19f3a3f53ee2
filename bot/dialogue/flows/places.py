"""Places in answers and in English addresses: districts' English names, "the nearest", streets.

The core names districts and halls in Chinese. English answers name a district by its pinyin
from the NLU's district table (``intents.places``: "静安区" → "Jing'an", "浦东新区" → "Pudong"),
so one district is always written the same way; "the nearest hall" is measured between rough
positions of the districts.
"""

from __future__ import annotations

import math
from typing import Any

from intents.places import SHANGHAI, address_parts, hours_english, street_english, street_name

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


def address_for(address: str | None, lang: str) -> str:
    """An address as an answer shows it: as the core writes it, or in English for English
    answers when it reads as district, street and number ("黄浦区西藏南路1200号" → "1200 Xizang
    South Road, Huangpu"); one it cannot read is kept as written."""
    parts = address_parts(address or "") if lang == "en" else None
    if not parts:
        return address or ""
    district = english_name(parts["district"]) if parts["district"] else None
    if parts["district"] and not district:
        return address or ""
    road = street_english(parts["street"])
    place = f"No. {parts['number']}, Lane {parts['lane']}, {road}" if parts["lane"] else f"{parts['number']} {road}"
    if parts["room"]:
        place = f"Room {parts['room']}, {place}"
    elif parts["floor"]:
        place = f"Floor {parts['floor']}, {place}"
    town = street_english(parts["town"][:-1]).strip() + " Town" if parts["town"] else None
    return ", ".join(p for p in (place, town, district) if p)


def street_of(address: str | None, lang: str) -> str:
    """The street of an address as an answer names it ("碧波路", "Bibo Road"); "" if none."""
    name = street_name(address or "")
    return (street_english(name) if lang == "en" else name) if name else ""


def hours_for(hours: str | None, lang: str) -> str:
    """Opening hours as an answer shows them ("周一至周日 09:00-17:00" → "Mon-Sun 09:00-17:00")."""
    return hours_english(hours) if lang == "en" and hours else hours or ""


def outage_area(outage: Any, lang: str) -> str:
    """Where an outage is, as an answer says it. The core writes its scope in Chinese; English
    answers name its streets and district in English instead ("Pengjiang Road, Wanhangdu Road
    (Jing'an)")."""
    if lang != "en":
        return outage.scope or outage.district or ""
    district = district_label(outage.district, lang)
    streets = ", ".join(street_english(s) for s in outage.streets or [])
    return f"{streets} ({district})" if streets and district else streets or district


def outage_cause(outage: Any, lang: str) -> str | None:
    """An outage's cause if the answer's language can show it (the core writes it in Chinese)."""
    cause = outage.cause or None
    return None if cause and lang == "en" and has_chinese(cause) else cause


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
