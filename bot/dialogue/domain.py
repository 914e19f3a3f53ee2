"""Responses and rules from ``training_data/domain.yml`` / ``rules.yml`` (Rasa 3.x format).

Response variations are chosen like Rasa does: a variation whose ``condition`` (slot
``language``) matches and whose ``channel`` equals the message's channel wins over one without
a channel; among equals one is picked (stable per turn). Texts are formatted with ``{slot}``
placeholders (no Jinja), buttons are kept.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2] / "training_data"
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


@dataclass
class Rendered:
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)


def _load_yaml(path: Path) -> dict[str, Any]:
    """The parsed file, parsed once per process and file version (a pipeline, an engine and
    each channel's text service all build a ``Domain``). Callers must not mutate it."""
    stat = path.stat()
    return _parse_yaml(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _parse_yaml(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def _matches(variant: dict[str, Any], lang: str) -> bool:
    for cond in variant.get("condition") or []:
        if cond.get("type") == "slot" and cond.get("name") == "language" and cond.get("value") != lang:
            return False
    return True


class Domain:
    def __init__(self, domain_path: Path | None = None, rules_path: Path | None = None,
                 placeholders: Mapping[str, Any] | None = None) -> None:
        domain_path = domain_path or ROOT / "domain.yml"
        rules_path = rules_path or ROOT / "rules.yml"
        # values every response may use ({brand}, {hotline}, ...: ``bot.texts.brand_placeholders``;
        # by default from the environment's settings); a value passed to ``render`` wins
        if placeholders is None:
            from bot.texts import brand_placeholders

            placeholders = brand_placeholders(None)  # the brand settings of the environment
        self.placeholders: dict[str, Any] = dict(placeholders)
        self.data: dict[str, Any] = _load_yaml(domain_path)
        self.responses: dict[str, list[dict[str, Any]]] = self.data.get("responses") or {}
        self._pools: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.intents: list[str] = [i if isinstance(i, str) else next(iter(i)) for i in self.data.get("intents") or []]
        self.actions: list[str] = list(self.data.get("actions") or [])
        self.forms: dict[str, Any] = self.data.get("forms") or {}
        rules = _load_yaml(rules_path)
        self.intent_actions: dict[str, list[str]] = {}
        for rule in rules.get("rules") or []:
            steps = rule.get("steps") or []
            if rule.get("condition") or len(steps) < 2 or "intent" not in steps[0]:
                continue
            acts = [s["action"] for s in steps[1:] if "action" in s]
            if acts and len(acts) == len(steps) - 1:
                self.intent_actions.setdefault(steps[0]["intent"], acts)

    def has(self, name: str) -> bool:
        return name in self.responses

    def _pool(self, name: str, lang: str, channel: str) -> list[dict[str, Any]]:
        """The variants a response may take for a language and channel (chosen once per triple:
        the domain does not change while the process runs)."""
        key = (name, lang, channel)
        pool = self._pools.get(key)
        if pool is None:
            variants = self.responses.get(name) or []
            cands = [v for v in variants if _matches(v, lang)]
            if not cands:
                cands = [v for v in variants if _matches(v, "zh")] or variants
            specific = [v for v in cands if v.get("channel") == channel]
            generic = [v for v in cands if not v.get("channel")]
            pool = self._pools[key] = specific or generic or cands
        return pool

    def render(self, name: str, /, *, lang: str, channel: str, seed: str = "", **values: Any) -> Rendered:
        pool = self._pool(name, lang, channel)
        if not pool:
            return Rendered(text=name)
        v = pool[0] if len(pool) == 1 else pool[zlib.crc32(f"{seed}:{name}".encode()) % len(pool)]
        placeholders = self.placeholders

        def fill(m: re.Match[str]) -> str:
            key = m.group(1)
            val = values[key] if key in values else placeholders.get(key)  # a value passed wins
            return "" if val is None else str(val)

        text = _PLACEHOLDER.sub(fill, v.get("text", ""))
        buttons = [(_PLACEHOLDER.sub(fill, b.get("title", "")), b.get("payload", ""))
                   for b in v.get("buttons") or []]
        return Rendered(text=text, buttons=buttons)
