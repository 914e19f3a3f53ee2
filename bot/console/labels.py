"""Readable names, for agents, of the NLU's intents, slots and entities (zh and en), and the
console's other agent-facing words (channel names, system lines, a few API errors).

They live in ``labels.yml`` beside this module: agent-facing, not customer texts (those are
responses of training_data/domain.yml). An unknown intent or slot is shown as itself; the
console script picks the agent's language (``/console/api/labels``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_DATA: dict[str, Any] = yaml.safe_load(Path(__file__).with_name("labels.yml").read_text(encoding="utf-8"))

INTENTS: dict[str, tuple[str, str]] = {k: (v[0], v[1]) for k, v in _DATA["intents"].items()}
SLOTS: dict[str, tuple[str, str]] = {k: (v[0], v[1]) for k, v in _DATA["slots"].items()}
CHANNELS: dict[str, str] = dict(_DATA["channels"])
TEXT: dict[str, str] = dict(_DATA["text"])

LANGS = ("zh", "en")


def label(table: dict[str, tuple[str, str]], name: str, lang: str) -> str:
    pair = table.get(name)
    if pair is None:
        return name
    return pair[1] if lang == "en" else pair[0]


def text(key: str, **values: str) -> str:
    return TEXT[key].format(**values)


def all_labels() -> dict[str, Any]:
    """{"intents": {name: {"zh": …, "en": …}}, "slots": {…}}: what the console's script reads."""
    return {
        "intents": {k: {"zh": zh, "en": en} for k, (zh, en) in INTENTS.items()},
        "slots": {k: {"zh": zh, "en": en} for k, (zh, en) in SLOTS.items()},
    }
