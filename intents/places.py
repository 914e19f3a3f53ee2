"""Shanghai's districts as customers write them, normalised to the core's district names.

One table, used by the NLU's ``district`` entity (``intents.entities``) and by the dialogue's
reading of a form answer (``intents.slots.district``): all 16 districts in Chinese with or
without 区/新区 and with a 上海/上海市 prefix, in English ("Jing'an", "Pudong New Area",
"Minhang District") and in pinyin with or without tones and spaces ("jing an qu"), plus the
former districts merged into today's (闸北 → 静安区, 卢湾 → 黄浦区, 南汇 → 浦东新区, 崇明县 →
崇明区) and a few common typos (闽行). ``training_data/nlu.yml`` carries the same names as Rasa
synonyms and a lookup table (tests/nlu/test_nlu_places.py keeps the two in step).

``find`` runs on lower-cased text (``normalize_chars``) and returns offsets into it.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple


class District(NamedTuple):
    name: str  # the core's name
    stem: str  # the Chinese name without 区/新区
    pinyin: tuple[str, ...]  # syllables
    aliases: tuple[str, ...] = ()  # other Chinese names (former districts, typos)


SHANGHAI: tuple[District, ...] = (
    District("黄浦区", "黄浦", ("huang", "pu"), ("卢湾", "南市")),
    District("徐汇区", "徐汇", ("xu", "hui")),
    District("长宁区", "长宁", ("chang", "ning")),
    District("静安区", "静安", ("jing", "an"), ("闸北",)),
    District("普陀区", "普陀", ("pu", "tuo")),
    District("虹口区", "虹口", ("hong", "kou")),
    District("杨浦区", "杨浦", ("yang", "pu")),
    District("闵行区", "闵行", ("min", "hang"), ("闽行",)),
    District("宝山区", "宝山", ("bao", "shan")),
    District("嘉定区", "嘉定", ("jia", "ding")),
    District("浦东新区", "浦东", ("pu", "dong"), ("南汇",)),
    District("金山区", "金山", ("jin", "shan")),
    District("松江区", "松江", ("song", "jiang")),
    District("青浦区", "青浦", ("qing", "pu")),
    District("奉贤区", "奉贤", ("feng", "xian")),
    District("崇明区", "崇明", ("chong", "ming")),
)
NAMES: tuple[str, ...] = tuple(d.name for d in SHANGHAI)

# A short name followed by these is something else: the river, the island of 普陀山, a road
# of another district (宝山路 is in 静安区), software (金山词霸).
_NOT_AFTER = {"黄浦": "江", "普陀": "山", "宝山": "路", "金山": "词|毒|软|办|云"}

_CN_PREFIX = r"(?:上海市|上海|沪)?"
_CN_SUFFIX = r"(?:新区|区|县|岛)?"
_EN_SEP = r"[\s'’\-]?"
_EN_SUFFIX = r"(?:[\s\-]?(?:new[\s\-]?area|new[\s\-]?district|district|xin[\s\-]?qu|qu)(?![a-z]))?"
_EN_PREFIX = r"(?:shanghai[\s,]*)?"


def _chinese_pattern(d: District) -> str:
    names = [d.stem, *d.aliases]
    alt = "|".join(sorted(names, key=len, reverse=True))
    guard = f"(?!{_NOT_AFTER[d.stem]})" if d.stem in _NOT_AFTER else ""
    if d.stem == "浦东":  # "浦东新区", "浦东区", "浦东新" (cut short), "浦东"
        return f"{_CN_PREFIX}(?:{alt})(?:新区|区|新(?!村|城|路))?"
    return f"{_CN_PREFIX}(?:{alt}){guard}{_CN_SUFFIX if d.stem != '崇明' else '(?:区|县|岛)?'}"


def _latin_pattern(d: District) -> str:
    # letters, not \b: a Han character next to the name is a boundary too ("住在minhang")
    return rf"(?<![a-z]){_EN_PREFIX}{_EN_SEP.join(d.pinyin)}{_EN_SUFFIX}(?![a-z])"


# one named group per district: the match's ``lastgroup`` tells which
_ANY = re.compile("|".join(f"(?P<d{i}>{_chinese_pattern(d)}|{_latin_pattern(d)})"
                           for i, d in enumerate(SHANGHAI)))

# pinyin with tone marks, one character for one (offsets stay valid)
_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹ", "aaaaeeeeiiiioooouuuuvvvvvnnn")
_CN_NAMES = tuple(n for d in SHANGHAI for n in (d.stem, *d.aliases))
# every Latin spelling starts with its first syllable
_LATIN_HEADS = tuple(sorted({d.pinyin[0] for d in SHANGHAI}))


def find(text: str) -> list[tuple[int, int, str]]:
    """(start, end, core name) of every Shanghai district named in lower-cased ``text``; a
    Latin name one slip away counts too ("xuhiu", "minhnag", "jingann")."""
    scan = text if text.isascii() else text.translate(_TONES)
    # ``_ANY`` is tried at every position (its branches start with optional prefixes); most
    # messages name no district, and a substring test of the names says so ten times faster
    found: list[tuple[int, int, str]] = []
    if any(name in scan for name in _CN_NAMES) or any(head in scan for head in _LATIN_HEADS):
        found = [(m.start(), m.end(), NAMES[int(m.lastgroup[1:])]) for m in _ANY.finditer(scan)]
    for m in _LATIN_WORD_RE.finditer(scan):
        name = _misspelt(m.group(0))
        if name and not any(s <= m.start() < e for s, e, _n in found):
            found.append((m.start(), m.end(), name))
    return sorted(found)


_LATIN_WORD_RE = re.compile(r"(?<![a-z])[a-z]{5,10}(?![a-z])")
_LATIN_NAMES = {"".join(d.pinyin): NAMES[i] for i, d in enumerate(SHANGHAI)}
# English words one slip from a district's name
_ENGLISH_NEAR_NAMES = frozenset({"changing", "jading"})


@functools.lru_cache(maxsize=4096)
def _misspelt(word: str) -> str | None:
    """The district whose Latin name ``word`` is one slip from (a letter wrong, missing, added,
    or two swapped), when it is not the name itself."""
    if word in _ENGLISH_NEAR_NAMES:
        return None
    for latin, name in _LATIN_NAMES.items():
        if word != latin and abs(len(word) - len(latin)) <= 1 and word[0] == latin[0] and _one_slip(word, latin):
            return name
    return None


def _one_slip(a: str, b: str) -> bool:
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


_AROUND_DISTRICT_RE = re.compile(r"[\s,，。.!！]|上海市?|新区|区|县|那边|这边|那里|这里|的|附近|一带|\b(?:in|the|area|district|shanghai)\b")


def only_district(text: str | None) -> bool:
    """Whether ``text`` names a district and nothing more of a place ("浦东新区", "in Xuhui"): where,
    roughly, but no address a crew or an application can use."""
    t = (text or "").lower()
    hits = find(t)
    if not hits:
        return False
    for s, e, _ in reversed(hits):
        t = t[:s] + " " + t[e:]
    return not _AROUND_DISTRICT_RE.sub("", t)


def normalize(text: str | None) -> str | None:
    """The core's name of the first Shanghai district ``text`` names, or None."""
    hits = find((text or "").lower())
    return hits[0][2] if hits else None


_HAN_NAME_RE = re.compile("[\u4e00-\u9fff]+")
_STREET_SUFFIX_RE = re.compile(r"(?:路|街|大道|公路|支路|巷|弄)$")


def street_written(english: str, street: str) -> bool:
    """Whether an address written in English or pinyin ("12 Bibo Road, Pudong") names the
    Chinese ``street`` ("碧波路"): the street's name in toneless pinyin ("bibo") among the
    address's letters. The core's outages name their streets in Chinese only."""
    return name_written(english, _STREET_SUFFIX_RE.sub("", street))


def name_written(english: str, name: str) -> bool:
    """Whether an English or pinyin text ("the Zhangjiang hall") writes the Chinese ``name``
    ("张江") in toneless pinyin."""
    from pypinyin import lazy_pinyin  # its dictionaries load on first use, not with the NLU

    if len(name) < 2 or not _HAN_NAME_RE.fullmatch(name):
        return False
    spelled = "".join(lazy_pinyin(name))
    letters = re.sub(r"[^a-z]", "", (english or "").lower())
    return bool(spelled) and spelled in letters


_EN_STREET_SUFFIX = (("公路", "Highway"), ("大道", "Avenue"), ("支路", "Branch Road"), ("路", "Road"), ("街", "Street"),
                     ("巷", "Lane"), ("弄", "Lane"))
_EN_DIRECTION = {"东": "East", "西": "West", "南": "South", "北": "North", "中": "Middle"}


def street_english(street: str) -> str:
    """A Chinese street name as English answers write it, the way Shanghai's signs do: the
    name in pinyin, its direction and its kind in English ("彭江路" → "Pengjiang Road", "南京西路"
    → "Nanjing West Road", "浦星公路" → "Puxing Highway"). A name that is not Chinese is kept."""
    from pypinyin import lazy_pinyin

    if not _HAN_NAME_RE.fullmatch(street or ""):
        return street
    town, sep, rest = street.partition("镇")
    if sep and town and rest:  # "城桥镇南门路": the town, then its street
        return f"{''.join(lazy_pinyin(town)).capitalize()} Town {street_english(rest)}"
    name, kind = street, ""
    for suffix, english in _EN_STREET_SUFFIX:
        if name.endswith(suffix) and len(name) > len(suffix):
            name, kind = name[: -len(suffix)], english
            break
    direction = ""
    if kind and len(name) >= 3 and name[-1] in _EN_DIRECTION:
        name, direction = name[:-1], _EN_DIRECTION[name[-1]]
    words = ["".join(lazy_pinyin(name)).capitalize(), direction, kind]
    return " ".join(w for w in words if w)


# a Chinese address of the usual shape: district, town, street, lane, number, then a room or a floor
# ("闵行区七莘路318弄12号", "浦东新区张江镇碧波路88弄5号1202室", "浦东新区世纪大道1500号B1层")
_CN_ADDRESS_RE = re.compile(r"^(?:上海市)?(?P<district>[\u4e00-\u9fff]{1,3}(?:新区|区))?(?P<town>[\u4e00-\u9fff]{1,4}镇)?"
                            r"(?P<street>[\u4e00-\u9fff]{2,8}?(?:大道|公路|支路|路|街))(?:(?P<lane>\d+)弄)?(?P<number>\d+)号"
                            r"(?:(?P<room>\d+)室|(?P<floor>[A-Za-z]?\d+)(?:层|楼))?$")
_HOURS_WORDS = (("周一", "Mon"), ("周二", "Tue"), ("周三", "Wed"), ("周四", "Thu"), ("周五", "Fri"), ("周六", "Sat"),
                ("周日", "Sun"), ("至", "-"), ("法定节假日", "public holidays"), ("休息", "closed"), ("，", "; "))


def address_parts(address: str) -> dict[str, str | None] | None:
    """District, town, street, lane, number, room and floor of a Chinese address of the usual
    shape (those it names), else None."""
    m = _CN_ADDRESS_RE.match((address or "").strip())
    return m.groupdict() if m else None


def hours_english(hours: str) -> str:
    """Opening hours in English ("周一至周日 09:00-17:00" → "Mon-Sun 09:00-17:00")."""
    for zh, en in _HOURS_WORDS:
        hours = hours.replace(zh, en)
    return hours


_BEFORE_NUMBER_RE = re.compile(r"^[^\d]*")
_PLACE_PREFIX_RE = re.compile(r"^.*(?:新区|区|县|镇|街道|市)")


def street_name(address: str) -> str | None:
    """The street of a Chinese address ("浦东新区张江镇碧波路88弄5号" → "碧波路"), or None."""
    head = _BEFORE_NUMBER_RE.match(address or "").group(0)
    name = _PLACE_PREFIX_RE.sub("", head)
    return name if _STREET_SUFFIX_RE.search(name) and _HAN_NAME_RE.fullmatch(name) else None


_STREET_MENTION_RE = re.compile(r"([\u4e00-\u9fff]{2,4}?(?:大道|公路|路|街))")


def street_mentioned(text: str) -> str | None:
    """A Chinese street a message names in passing ("那世纪大道呢 我店在那" → "世纪大道"), or None."""
    m = _STREET_MENTION_RE.search(_PLACE_PREFIX_RE.sub("", text or "") if "区" in (text or "") else text or "")
    return m.group(1).lstrip("那在到去") if m else None
