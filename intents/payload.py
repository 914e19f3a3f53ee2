"""Rasa-style payloads: ``/intent`` or ``/intent{json}`` — what a button sends, or anyone types.

A payload names its intent outright, so it bypasses the classifier; its entities are checked
for their kind as strictly as extracted text would be (``payload_entities``).
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

_PAYLOAD_RE = re.compile(r"^/([a-z_]+)(\{.*\})?$", re.S)

# the form an entity's value must have; an entity not listed is taken as given (trimmed)
PAYLOAD_ENTITY = {
    "account_number": re.compile(r"\d{10,13}"),
    "phone_number": re.compile(r"(?:\+?86)?1[3-9]\d{9}"),
    "work_order_id": re.compile(r"WO\d{12}", re.I),
    "amount": re.compile(r"\d{1,9}(?:\.\d{1,2})?"),
    "month": re.compile(r"\d{4}-(?:0[1-9]|1[0-2])"),
}


def split_payload(text: str) -> tuple[str, str | None] | None:
    """``(intent, raw json or None)`` of a payload; None for any other text."""
    m = _PAYLOAD_RE.match(text)
    return (m.group(1), m.group(2)) if m else None


def payload_entities(raw: str) -> list[dict[str, Any]]:
    """Entities of a Rasa-style ``/intent{json}`` message (a button's payload, or typed by
    anyone): only an object's scalar values, each checked for its kind like extracted text —
    a number where an address belongs or a date that does not exist is dropped, not passed
    to a flow that would fail on it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    ents = []
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        value = str(value).strip()[:200]
        rule = PAYLOAD_ENTITY.get(name)
        if rule is not None and not rule.fullmatch(value):
            continue
        if name == "date":
            try:
                value = date.fromisoformat(value).isoformat()
            except ValueError:
                continue
        elif name in ("address", "district") and (len(value) < 2 or value.isdigit()):
            continue
        if value:
            ents.append({"entity": name, "value": value})
    return ents


def chosen_option(text: str, slot: str, *, max_digits: int | None = None) -> int | None:
    """The number a ``/choose{"<slot>": N}`` button answers with (N of at most ``max_digits``)."""
    digits = rf"\d{{1,{max_digits}}}" if max_digits else r"\d+"
    m = re.fullmatch(rf'/choose\{{"{re.escape(slot)}":\s*({digits})\}}', text)
    return int(m.group(1)) if m else None
