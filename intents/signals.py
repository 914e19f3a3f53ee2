"""Signals in a customer's words that steer the dialogue before (or besides) the classifier.

The intent classifier answers "what does the customer want"; these patterns answer questions
it is weak at or must never miss: a hazard (a fallen wire, a burning smell) preempts every
request, an angry complaint goes to an agent at once, "算了" cancels whatever form is open,
"匿名" is a violation report without a callback number. They run on the message as typed
(case-insensitive), are cheap, and are explainable in a review — which is why they are rules.
"""

from __future__ import annotations

import re

HAZARD_RE = re.compile(
    r"电线断|断线|掉下来|断落|冒火|着火|起火|火花|打火|冒烟|烧焦|焦糊|糊味|触电|电到人|漏电|爆炸|"
    r"burning smell|spark|fire|smoke|electrocut|fallen (?:power )?(?:wire|line)|live wire|wire (?:is )?down",
    re.I,
)
ANGRY_RE = re.compile(
    r"[!！]{2,}|太差|垃圾|气死|什么破|无能|不负责|第[二三四五]次|忍无可忍|受够|骂|媒体|曝光|12345|"
    r"terrible|worst|ridiculous|unacceptable|furious|angry|disgusting|useless",
    re.I,
)
CANCEL_RE = re.compile(r"^\s*(算了|取消|不办了|不用了|不要了|退出|cancel|stop|never ?mind|forget it)\s*[。.!！]?\s*$", re.I)
ANON_RE = re.compile(r"匿名|不留|不方便|anonymous|no contact", re.I)

# notification topics by the words that name them, in the order they are tried
TOPIC_WORDS = [
    ("outage", re.compile(r"停电|停送电|outage", re.I)),
    ("bill", re.compile(r"账单|电费|bill", re.I)),
    ("work_order", re.compile(r"工单|进度|work ?order|progress", re.I)),
    ("payment", re.compile(r"缴费|到账|payment", re.I)),
]

# "how much would N kWh cost": with an amount of energy, a question of price (a tariff), not a bill
_PRICE_RE = re.compile(r"多少钱|费用|电费|cost|price|how much", re.I)
# "那上个月呢": the month before the one just shown, not the calendar's last month
_PREVIOUS_MONTH_RE = re.compile(r"上个?月|前一个?月|last month|previous month|month before", re.I)
# the tariff category a question names
_COMMERCIAL_RE = re.compile(r"商业|工商|一般工商|commercial|business|shop", re.I)
_CATEGORY_NAMED_RE = re.compile(r"商业|居民|commercial|residential", re.I)
# digits, button payloads and codes ("WO202611280001") say nothing of the customer's language
_CODES_RE = re.compile(r"^/[a-z_]+|\bWO\d{6,}\b|\d+", re.I)
_LETTERS_RE = re.compile(r"[A-Za-z\u4e00-\u9fff]")
_NON_WORD_RE = re.compile(r"\W")


def is_hazard(text: str) -> bool:
    return HAZARD_RE.search(text) is not None


def is_angry(text: str) -> bool:
    return ANGRY_RE.search(text) is not None


def is_cancel(text: str) -> bool:
    return CANCEL_RE.match(text) is not None


def wants_anonymity(text: str) -> bool:
    return ANON_RE.search(text) is not None


def topic(text: str) -> str | None:
    """The notification topic a message names (``TOPIC_WORDS``), if any."""
    for name, rx in TOPIC_WORDS:
        if rx.search(text):
            return name
    return None


def asks_price(text: str) -> bool:
    return _PRICE_RE.search(text) is not None


def says_previous_month(text: str) -> bool:
    return _PREVIOUS_MONTH_RE.search(text) is not None


def tariff_category(text: str) -> str:
    """The tariff a question is about: commercial when it says so, residential otherwise."""
    return "commercial" if _COMMERCIAL_RE.search(text) else "residential"


def names_tariff_category(text: str) -> bool:
    """Whether a question names a category itself (else the customer's account decides)."""
    return _CATEGORY_NAMED_RE.search(text) is not None


def has_language(text: str) -> bool:
    """Whether a message says which language the customer writes: digits, button payloads and
    codes such as a work order number ("WO202611280001") do not."""
    if text.startswith("/"):  # a button payload ("/choose{...}")
        return False
    return _LETTERS_RE.search(_CODES_RE.sub("", text)) is not None


def word_chars(text: str) -> int:
    """How many letters and digits a message has (punctuation and spaces left out): a long
    enough first message is itself the description of a complaint or a report."""
    return len(_NON_WORD_RE.sub("", text))
