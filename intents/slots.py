"""The value a form asked for, read from the customer's answer as typed.

``intents.entities`` extracts entities from any message for the NLU parse (on normalised,
lower-cased text, with offsets). A form needs something narrower: after "what is your account
number?" the answer "3100000001" or "2" (the second button) or "138xxxx5678" is read here, on the
raw text, even when the parse found no entity. Digits are read as customers type them, as the
NLU reads them: full-width ("３１００…"), spelled out in Chinese digit by digit
("三一零零零零零零零一", "幺三八…", mixed "3100零零零零01"), and — for account numbers, mobiles
and the last 4 digits — in groups separated by spaces ("3100 0000 02", "138 0013 8000").
The patterns deliberately differ from the NLU's where the dialogue has always read differently:

- an account number is 10-13 digits not preceded by a letter ("WO…" codes are not accounts) —
  the NLU's excludes a decimal point instead; an 11-digit mobile is not an account;
- a mobile may carry +86/86 glued on and spaces between its groups, but no dashes (the NLU's
  also reads "138-1234-5678");
- a work-order id is "WO" and 12 digits, any case, the digits in one run or set apart in groups by
  single spaces, dashes or underscores as the NLU reads them ("WO 261205 000781",
  "wo-261203-000500", "WO 2612 0300 0123"); the NLU's also reads "工单号 2611…" without the WO.
"""

from __future__ import annotations

import re

from .normalize import normalize_chars
from .numbers import CN_NUM_CHARS, cn_to_number, digits_view, english_digits, grouped_numbers
from .places import normalize as shanghai_district

_MOBILE_RE = re.compile(r"(?<!\d)(?:\+?86 ?)?(1[3-9]\d(?: ?\d){8})(?!\d)")
_LAST4_RE = re.compile(r"^\D{0,24}(\d(?: ?\d){3})\D{0,16}$")
# as intents.entities.WO_RE: the customer copies the id from an SMS with its groups apart
_WO_RE = re.compile(r"(?<![a-z0-9])w ?[o0][-_ .]?(\d(?:[-_ .]?\d){11})(?!\d)", re.I)
_KWH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:度|千瓦时|kwh|kw·h|units?)", re.I)
_KWH_CN_RE = re.compile(f"([{CN_NUM_CHARS}]+)\\s*(?:度|千瓦时)")
_NUMBER_RE = re.compile(r"(\d+(?:\.\d+)?)")
_CN_NUMBER_RE = re.compile(f"[{CN_NUM_CHARS}]+")
_CHOICE_RE = re.compile(r"^\D{0,6}(\d{1,2})\D{0,4}$")
# "第二个", "选三", "二": an option's position in words
_CHOICE_CN_RE = re.compile(r"^(?:我)?(?:选择|选|要|就)?(?:第)?\s*([一二三四五六七八九十两]{1,3})\s*"
                           r"(?:个|号|项|条|种|位|家)?\s*[吧吗的呀啊。.!！]*$")
_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4,
             "4th": 4, "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "one": 1, "two": 2,
             "three": 3, "four": 4, "five": 5, "six": 6}
_CHOICE_EN_RE = re.compile(r"^(?:(?:i(?:'ll| will)? (?:take|choose|pick)|number|no\.?|option)\s*)?"
                           r"(?:the\s+)?(" + "|".join(_ORDINALS) + r")(?:\s+one)?\s*[.!]?$")
_ISO_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_DIGIT_RE = re.compile(r"\d")
_NAME_PREFIX_RE = re.compile(r"^(我叫|我是|姓名[:：]?|my name is|i am)\s*", re.I)
# a name given with its label ("Name: Chen Jie", "姓名：陈杰", "this is Mary"), or the label alone
# (a message split at its colon: "Name", "Chen Jie")
_NAME_LABEL_RE = re.compile(r"^\s*(?:my name is|name is|(?:full )?name|contact(?: person)?|this is|姓名|名字|联系人|预约人|我叫)"
                            r"(?:\s*[:：]\s*|\s+|$)", re.I)
_PHONE_LABEL_RE = re.compile(r"[,，]?\s*(?:my )?(?:phone|mobile|tel|cell|number|电话|手机|联系方式)"
                             r"(?: number| no\.?)?\s*(?:is)?\s*[:：]?\s*$", re.I)
# A district outside Shanghai ("北京市朝阳区", "我住在海淀区"): a short name ending in 区/县 right
# after a city, a separator or "在/住", that is not a common word ending in 区 (小区, 市区…)
_DISTRICT_RE = re.compile(r"(?:^|(?<=[省市\s,，、:：;；在住是]))((?:(?![省市在住是])[\u4e00-\u9fa5]){2,3}?(?:新区|区|县))")
_NOT_DISTRICT = re.compile(r"[我你他她这那哪个的一每本该某各全整新老]|^(?:小区|社区|园区|校区|景区|市区|城区|"
                           r"郊区|地区|山区|片区|辖区|开发区|商业区|工业区|住宅区|生活区|服务区|保税区|学区)$")


def _digits(text: str | None) -> str:
    """The text with every digit as an ASCII digit (full-width, spelled out in Chinese)."""
    return digits_view(normalize_chars(text or ""))


def _long_numbers(t: str) -> list[tuple[int, int, str]]:
    """Runs (or space/dash-separated groups) of 10-13 digits not preceded by a letter."""
    return [(s, e, d) for s, e, d in grouped_numbers(t, 10, 13)
            if not (s and t[s - 1].isascii() and t[s - 1].isalpha())]


def _is_mobile(digits: str) -> bool:
    """11 digits of a mainland mobile, or the same with the country code 86 before them."""
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def has_account_digits(text: str) -> bool:
    """Whether a message has a run of digits as long as an account number (a mobile counts)."""
    return bool(_long_numbers(_digits(text)))


def account_number(text: str) -> str | None:
    """The account number a message gives: its first long run of digits that is not a mobile."""
    return next((d for _, _, d in _long_numbers(_digits(text)) if not _is_mobile(d)), None)


def mobile(text: str | None) -> str | None:
    """The 11 digits of a mainland mobile number in ``text`` (a "+86" or "86" before it dropped)."""
    m = _MOBILE_RE.search(_digits(text))
    return m.group(1).replace(" ", "") if m else None


def last4(text: str) -> str | None:
    """Four digits given alone (with a few words around them): the phone's last 4 digits."""
    m = _LAST4_RE.match(_digits(english_digits(text or "")).strip())
    return m.group(1).replace(" ", "") if m else None


def lone_four_digits(text: str) -> str | None:
    """The one number of a message when it is 4 digits ("sorry, it's my boss's phone, 8000")."""
    runs = re.findall(r"\d+", _digits(english_digits(text or "")))
    return runs[0] if len(runs) == 1 and len(runs[0]) == 4 else None


def bare_last4(text: str) -> str | None:
    """A message that is nothing but 4 digits ("9000")."""
    t = _digits(english_digits(text or "")).strip(" 。.,，!！")
    return t if re.fullmatch(r"\d{4}", t) else None


def work_order_id(text: str) -> str | None:
    """A work order number ("WO" and 12 digits), upper-cased, its digits run together: the
    form stores the id in the one spelling the work-order system looks up."""
    m = _WO_RE.search(_digits(text))
    return "WO" + re.sub(r"\D", "", m.group(1)) if m else None


def _number_text(value: float | None) -> str | None:
    if value is None or value <= 0:
        return None
    return str(int(value)) if value == int(value) else str(value)


def kwh(text: str, *, bare_number: bool = False) -> str | None:
    """An amount of energy ("300度", "三百度", "300 kWh"); with ``bare_number`` any number will do
    (the answer to "how many kWh?": "300", "三百")."""
    t = _digits(text)
    m = _KWH_RE.search(t)
    if m:
        return m.group(1)
    for m in _KWH_CN_RE.finditer(t):
        if (v := _number_text(cn_to_number(m.group(1)))) is not None:
            return v
    if not bare_number:
        return None
    m = _NUMBER_RE.search(t)
    if m:
        return m.group(1)
    for m in _CN_NUMBER_RE.finditer(t):
        if (v := _number_text(cn_to_number(m.group(0)))) is not None:
            return v
    return None


def choice(text: str) -> int | None:
    """A number of one or two digits given alone: the position of an offered option ("2",
    "第2个", "第二个", "the second one")."""
    t = _digits(text).strip()
    m = _CHOICE_RE.match(t)
    if m:
        return int(m.group(1))
    m = _CHOICE_CN_RE.match(t)
    if m:
        n = cn_to_number(m.group(1))
        return int(n) if n is not None and n == int(n) and 0 < n < 100 else None
    m = _CHOICE_EN_RE.match(t)
    return _ORDINALS[m.group(1)] if m else None


def iso_date(text: str) -> str | None:
    m = _ISO_DATE_RE.search(_digits(text))
    return m.group(1) if m else None


# a Chinese name (up to 8 characters, "·" in a transcribed one, "先生"/"女士" after a surname) or
# up to four Latin words (letters, "'", "-", ".")
_NAME_SHAPE_RE = re.compile(r"[\u4e00-\u9fff·•]{1,8}|[A-Za-z][A-Za-z.'\-]*(?: [A-Za-z][A-Za-z.'\-]*){0,3}")
# words said while thinking, which are nobody's name ("wait, no, make it…")
_NOT_NAMES = frozenset({"wait", "no", "ok", "okay", "yes", "sorry", "hmm", "um", "uh", "actually", "hi", "hello",
                        "thanks", "well", "oh", "ah", "等等", "等一下", "不对", "好的", "是的", "嗯", "哦", "那个"})


def contact_name(text: str) -> str | None:
    """A name as the answer to "your name?": short, no digits, without "我叫"/"my name is"; a
    sentence ("哎呀明天去不了了，刚才那个…") is nobody's name (``looks_like_name``)."""
    if text.strip(" ,，.!！?？").lower() in _NOT_NAMES:
        return None
    if 1 < len(text) <= 30 and not _DIGIT_RE.search(text):
        return _NAME_PREFIX_RE.sub("", text)
    return None


def looks_like_name(text: str) -> bool:
    """Whether a name answer has a name's shape rather than a sentence's."""
    return _NAME_SHAPE_RE.fullmatch(text.strip(" ,，.。!！")) is not None


def after_name_label(text: str) -> str | None:
    """The words after a name's label ("Name: Chen Jie" → "Chen Jie"; "Name" alone → ""), or
    None when the text starts with no such label."""
    m = _NAME_LABEL_RE.match(text)
    return text[m.end():].strip() if m else None


def without_phone(text: str) -> str:
    """A clause with the phone number it gives, and that number's label, taken out
    ("Chen Jie, phone 13988887777" → "Chen Jie")."""
    rest = "".join(ch for ch in text if not ch.isdigit() and ch != "+")
    return _PHONE_LABEL_RE.sub("", rest).strip(" ,，:：")


def district(text: str | None) -> str | None:
    """The district a free-text answer or address names, as the core names it: any spelling of
    a Shanghai district ("上海市浦东新区", "浦东", "Jing'an", "minhang qu" → "浦东新区", "静安区",
    "闵行区"), else a district of another city written out ("北京市朝阳区" → "朝阳区"); None
    when the text names none (the text itself is never returned)."""
    if not text:
        return None
    found = shanghai_district(text)
    if found:
        return found
    t = normalize_chars(text)
    for m in _DISTRICT_RE.finditer(t):
        d = m.group(1)
        if not _NOT_DISTRICT.search(d):
            return d
    return None
