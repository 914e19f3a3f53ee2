"""The conversation-test format (version "1"): loading, validation and placeholders.

The format is described for authors in ``tests/conversations/README.md``. Loading is strict:
an unknown key, a duplicate key or id, a wrong type or an unknown placeholder is a
``SpecError`` naming the file, the conversation and the key, never a silently ignored line.

Scalars are read as text, the way the customer typed them: YAML 1.1's implicit numbers and
yes/no/on/off booleans are off (``- user: 0123`` is ``0123``, not the octal number 83;
``- user: yes`` is "yes"); ``true``/``false`` and ``null`` keep their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

VERSION = "1"
LANGS = ("zh", "en")
CHANNELS = ("rest", "sms")
CORE_KINDS = ("work_orders", "subscriptions", "appointments", "payments", "bindings")

CONVERSATION_KEYS = {"id", "lang", "intent", "channel", "sender", "steps", "core", "handoff",
                     "description", "tags", "skip"}
STEP_KEYS = {"user", "bot"}
BOT_KEYS = {"says_any", "says_all", "not_says", "matches", "no_reply"}
ROW_SPECIAL = {"has", "contains"}

# The fields a ``core:`` row may name, per kind: the core's columns (core/models.py) and, for
# appointments, the booked slot's and hall's (``date`` is the slot's day).
ROW_FIELDS: dict[str, set[str]] = {
    "work_orders": {"id", "type", "status", "priority", "account_number", "description", "channel",
                    "contact_phone", "address", "details", "sla_due_at"},
    "subscriptions": {"id", "account_number", "topic", "channel", "identity"},
    "appointments": {"id", "account_number", "contact_name", "contact_phone", "purpose", "status", "slot_id",
                     "date", "period", "starts_at", "ends_at", "hall_id", "hall_name", "hall_district"},
    "payments": {"id", "out_trade_no", "account_number", "amount", "channel", "status", "trade_no"},
    "bindings": {"id", "account_number", "channel", "identity"},
}



def _values_of_fields() -> dict[tuple[str, str], tuple[str, ...]]:
    """The values the core accepts for its enumerated fields: an expectation outside them can
    never hold, so it is an error in the file (``priority: urgent``), not a failed test."""
    from typing import get_args

    from core import schemas as sc

    return {
        ("work_orders", "type"): tuple(sc.WORK_ORDER_TYPES),
        ("work_orders", "priority"): get_args(sc.Priority),
        ("work_orders", "status"): get_args(sc.WorkOrderStatus),
        ("subscriptions", "topic"): get_args(sc.Topic),
        ("appointments", "period"): ("morning", "afternoon"),
        ("appointments", "status"): ("booked", "cancelled"),
        ("payments", "status"): ("pending", "paid"),
    }


FIELD_VALUES = _values_of_fields()
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\}")

# Fixed demo accounts (core/seed.py FIXED_ACCOUNTS): short name -> account number
DEMO_ACCOUNTS = {"zhang": "3100000001", "li": "3100000002", "shop": "3100000003"}
UNKNOWN_ACCOUNT = "3199999999"  # well-formed, not in the demo data (the runner checks it)
DATE_NAMES = ("today", "tomorrow", "yesterday", "day_after_tomorrow", "this_month", "last_month",
              "month_before_last")
PER_ACCOUNT = ("acct", "last4", "phone", "e164", "name", "address", "district", "street", "owed",
               "bill_last_month", "wo")


def placeholder_names() -> set[str]:
    names = {f"{kind}.{who}" for kind in PER_ACCOUNT for who in DEMO_ACCOUNTS}
    names |= {"acct.unknown", "sender", *DATE_NAMES}
    return names


PLACEHOLDERS = frozenset(placeholder_names())


class SpecError(ValueError):
    """A conversation file that does not follow the format."""


# ------------------------------------------------------------------------------- the model
@dataclass
class BotCheck:
    says_any: list[str] = field(default_factory=list)
    says_all: list[str] = field(default_factory=list)
    not_says: list[str] = field(default_factory=list)
    matches: str | None = None
    no_reply: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("says_any", "says_all", "not_says"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.matches is not None:
            out["matches"] = self.matches
        if self.no_reply is not None:
            out["no_reply"] = self.no_reply
        return out


@dataclass
class Step:
    user: str
    bot: BotCheck | None = None


@dataclass
class ExpectedRow:
    fields: dict[str, Any] = field(default_factory=dict)  # equality (``details``: a subset)
    has: list[str] = field(default_factory=list)  # non-empty
    contains: dict[str, str] = field(default_factory=dict)  # substring

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.fields)
        if self.has:
            out["has"] = list(self.has)
        if self.contains:
            out["contains"] = dict(self.contains)
        return out


@dataclass
class Conversation:
    id: str
    file: str
    steps: list[Step]
    lang: str = "zh"
    intent: str = "unknown"
    channel: str = "rest"
    sender: str | None = None
    core: dict[str, list[ExpectedRow]] = field(default_factory=dict)  # kinds omitted: none created
    handoff: bool = False
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    skip: str | None = None


# ------------------------------------------------------------------------------- YAML reading
class _TextLoader(yaml.SafeLoader):
    """SafeLoader without implicit ints/floats/timestamps (they stay text) and refusing duplicate keys."""


_TextLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers
         if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp",
                        "tag:yaml.org,2002:bool")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.2 booleans only: a customer answering ``yes``, ``no``, ``on`` or ``off`` typed text
_TextLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def _mapping(loader: _TextLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise SpecError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_TextLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_TextLoader)  # noqa: S506 - a SafeLoader
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None


# ------------------------------------------------------------------------------- validation
class _Where:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, msg: str) -> SpecError:
        return SpecError(f"{self.path}: {msg}")

    def at(self, more: str) -> _Where:
        return _Where(f"{self.path} {more}")


def _keys(where: _Where, data: Any, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise where.error(f"expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise where.error(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in data or data[key] is None:
            raise where.error(f"missing required key {key!r}")
    return data


def _text(where: _Where, value: Any, key: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise where.error(f"{key} must be text, got {type(value).__name__} {value!r}")
    if not allow_empty and not value.strip():
        raise where.error(f"{key} must not be empty")
    _check_placeholders(where, value, key)
    return value


def _texts(where: _Where, value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise where.error(f"{key} must be a non-empty list of texts")
    return [_text(where, v, key) for v in value]


def _bool(where: _Where, value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"{key} must be true or false, got {value!r}")
    return value


def _check_placeholders(where: _Where, value: str, key: str) -> None:
    for name in PLACEHOLDER.findall(value):
        if name not in PLACEHOLDERS:
            raise where.error(f"{key}: unknown placeholder {{{name}}} (see tests/conversations/README.md)")


def _bot_check(where: _Where, data: Any) -> BotCheck:
    data = _keys(where, data, BOT_KEYS)
    check = BotCheck()
    for key in ("says_any", "says_all", "not_says"):
        if data.get(key) is not None:
            setattr(check, key, _texts(where, data[key], key))
    if data.get("matches") is not None:
        check.matches = _text(where, data["matches"], "matches")
        try:
            re.compile(PLACEHOLDER.sub("x", check.matches))
        except re.error as exc:
            raise where.error(f"matches: not a regular expression: {exc}") from None
    if data.get("no_reply") is not None:
        check.no_reply = _bool(where, data["no_reply"], "no_reply")
        if check.no_reply and (check.says_any or check.says_all or check.matches):
            raise where.error("no_reply: true cannot be combined with says_any/says_all/matches")
    return check


def _value(where: _Where, value: Any, key: str) -> Any:
    if isinstance(value, str):
        _check_placeholders(where, value, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            _value(where, v, f"{key}.{k}")
    elif isinstance(value, list):
        for v in value:
            _value(where, v, key)
    return value


def _row(where: _Where, kind: str, data: Any) -> ExpectedRow:
    allowed = ROW_FIELDS[kind]
    data = _keys(where, data, allowed | ROW_SPECIAL)
    row = ExpectedRow()
    for key, value in data.items():
        if key == "has":
            names = _texts(where, value, "has")
            bad = sorted(set(names) - allowed)
            if bad:
                raise where.error(f"has: unknown field(s) {', '.join(bad)} (fields: {', '.join(sorted(allowed))})")
            row.has = names
        elif key == "contains":
            if not isinstance(value, dict) or not value:
                raise where.error("contains must be a mapping of field: text")
            bad = sorted(set(value) - allowed)
            if bad:
                raise where.error(f"contains: unknown field(s) {', '.join(bad)}")
            row.contains = {k: _text(where, v, f"contains.{k}") for k, v in value.items()}
        else:
            if key == "details" and not isinstance(value, dict):
                raise where.error("details must be a mapping (the expected subset of the work order's details)")
            allowed_values = FIELD_VALUES.get((kind, key))
            if allowed_values and isinstance(value, str) and not PLACEHOLDER.search(value) \
                    and value not in allowed_values:
                raise where.error(f"{key}: {value!r} is not one of the core's values ({', '.join(allowed_values)})")
            row.fields[key] = _value(where, value, key)
    return row


def _conversation(where: _Where, data: Any, file: str) -> Conversation:
    data = _keys(where, data, CONVERSATION_KEYS, required=("id", "steps"))
    cid = _text(where, data["id"], "id")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", cid):
        raise where.error(f"id {cid!r}: use letters, digits, '-', '_', '.', ':'")
    where = _Where(f"{file}: conversation {cid!r}")
    conv = Conversation(id=cid, file=file, steps=[])
    if data.get("lang") is not None:
        conv.lang = _text(where, data["lang"], "lang")
        if conv.lang not in LANGS:
            raise where.error(f"lang must be one of {', '.join(LANGS)}, got {conv.lang!r}")
    if data.get("intent") is not None:
        conv.intent = _text(where, data["intent"], "intent")
    if data.get("channel") is not None:
        conv.channel = _text(where, data["channel"], "channel")
        if conv.channel not in CHANNELS:
            raise where.error(f"channel must be one of {', '.join(CHANNELS)}, got {conv.channel!r}")
    if data.get("sender") is not None:
        conv.sender = _text(where, data["sender"], "sender")
        if "{sender}" in conv.sender:
            raise where.error("sender cannot use the {sender} placeholder")
    if conv.channel == "sms":
        if conv.sender is None:
            raise where.error("channel: sms needs a sender (an E.164 phone number, e.g. \"{e164.zhang}\")")
        if not PLACEHOLDER.search(conv.sender) and not E164.match(conv.sender):
            raise where.error(f"channel: sms needs an E.164 sender like +8613800138000, got {conv.sender!r}")
    if data.get("description") is not None:
        conv.description = _text(where, data["description"], "description", allow_empty=True)
    if data.get("tags") is not None:
        conv.tags = _texts(where, data["tags"], "tags")
    if data.get("skip") is not None:
        conv.skip = _text(where, data["skip"], "skip")
    steps = data["steps"]
    if not isinstance(steps, list) or not steps:
        raise where.error("steps must be a non-empty list")
    for i, raw in enumerate(steps, 1):
        at = where.at(f"step {i}")
        raw = _keys(at, raw, STEP_KEYS, required=("user",))
        step = Step(user=_text(at, raw["user"], "user"))
        if raw.get("bot") is not None:
            step.bot = _bot_check(at, raw["bot"])
        conv.steps.append(step)
    if data.get("core") is not None:
        core = _keys(where.at("core"), data["core"], set(CORE_KINDS))
        for kind, rows in core.items():
            at = where.at(f"core.{kind}")
            if rows is None:
                rows = []
            if not isinstance(rows, list):
                raise at.error("must be a list of expected rows ([] for none)")
            conv.core[kind] = [_row(at.at(f"#{j}"), kind, r) for j, r in enumerate(rows, 1)]
    if data.get("handoff") is not None:
        conv.handoff = _bool(where, data["handoff"], "handoff")
    return conv


def load_file(path: Path) -> list[Conversation]:
    data = read_yaml(path)
    where = _Where(str(path))
    data = _keys(where, data, {"version", "conversations"}, required=("version", "conversations"))
    if str(data["version"]) != VERSION:
        raise where.error(f"version must be \"{VERSION}\", got {data['version']!r}")
    items = data["conversations"]
    if not isinstance(items, list):
        raise where.error("conversations must be a list")
    return [_conversation(where.at(f"conversation #{i}"), item, str(path)) for i, item in enumerate(items, 1)]


def expand(paths: list[Path | str]) -> list[Path]:
    """Files and directories (their ``*.yml``/``*.yaml``, sorted) in the order given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yml", ".yaml") and q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise SpecError(f"{p}: no such file or directory")
    return out


def load(paths: list[Path | str]) -> list[Conversation]:
    """Every conversation of ``paths``; ids unique across all files."""
    seen: dict[str, str] = {}
    out: list[Conversation] = []
    for path in expand(paths):
        for conv in load_file(path):
            if conv.id in seen:
                raise SpecError(f"{path}: duplicate conversation id {conv.id!r} (also in {seen[conv.id]})")
            seen[conv.id] = str(path)
            out.append(conv)
    return out


# ------------------------------------------------------------------------------- placeholders
def date_values(today: date) -> dict[str, str]:
    def month(d: date, back: int) -> str:
        y, m = d.year, d.month - back
        while m <= 0:
            y, m = y - 1, m + 12
        return f"{y:04d}-{m:02d}"

    return {
        "today": today.isoformat(),
        "tomorrow": (today + timedelta(days=1)).isoformat(),
        "yesterday": (today - timedelta(days=1)).isoformat(),
        "day_after_tomorrow": (today + timedelta(days=2)).isoformat(),
        "this_month": month(today, 0),
        "last_month": month(today, 1),
        "month_before_last": month(today, 2),
    }


class Resolver:
    """Fills placeholders from a table of values (``Resolver.values``), per conversation."""

    def __init__(self, values: dict[str, str]) -> None:
        missing = PLACEHOLDERS - set(values) - {"sender"}
        if missing:
            raise SpecError(f"placeholders without a value: {', '.join(sorted(missing))}")
        self.values = values

    def text(self, value: str, sender: str = "", *, regex: bool = False) -> str:
        def sub(m: re.Match[str]) -> str:
            v = sender if m.group(1) == "sender" else self.values[m.group(1)]
            return re.escape(v) if regex else v

        return PLACEHOLDER.sub(sub, value)

    def value(self, value: Any, sender: str = "") -> Any:
        if isinstance(value, str):
            return self.text(value, sender)
        if isinstance(value, dict):
            return {k: self.value(v, sender) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, sender) for v in value]
        return value
