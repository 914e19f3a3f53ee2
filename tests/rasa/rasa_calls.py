"""Rasa's side of the action-server protocol, for the tests: the request Rasa posts to run an
action (``next_action``, ``sender_id``, ``tracker``, ``domain``, ``version``), the answer read as
Rasa reads it (``events``, ``responses``) and each response rendered from the starter project's
domain the way Rasa fills it (the values sent with it, else the tracker's slots)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

STARTER = Path(__file__).resolve().parents[2] / "examples" / "rasa"
DOMAIN: dict[str, Any] = yaml.safe_load((STARTER / "domain.yml").read_text(encoding="utf-8"))
RASA_VERSION = "3.6.21"  # what Rasa Open Source 3.6 sends as "version"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class ActionServer:
    url: str
    proc: Any
    log: Path


def action_call(action: str, *, slots: dict[str, Any] | None = None, text: str = "", intent: str | None = None,
                entities: list[dict[str, Any]] | None = None, sender: str = "rasa-test", channel: str = "rest",
                active_loop: str | None = None, extracted: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rasa's request to run ``action`` (the JSON Rasa's ``RemoteAction`` posts). ``extracted``:
    the slot candidates a form hands its validation (slot events at the end of the tracker)."""
    all_slots = {name: None for name in DOMAIN["slots"]} | {"language": "zh"} | (slots or {}) | (extracted or {})
    parse = {"text": text, "intent": {"name": intent, "confidence": 0.97} if intent else {},
             "entities": entities or [], "intent_ranking": [{"name": intent, "confidence": 0.97}] if intent else []}
    now = time.time()
    tracker = {
        "sender_id": sender,
        "slots": all_slots,
        "latest_message": parse,
        "latest_event_time": now,
        "followup_action": None,
        "paused": False,
        "events": [
            {"event": "action", "timestamp": now - 1, "name": "action_session_start"},
            {"event": "action", "timestamp": now - 1, "name": "action_listen"},
            {"event": "user", "timestamp": now, "text": text, "parse_data": parse, "input_channel": channel},
            *({"event": "slot", "timestamp": now, "name": k, "value": v} for k, v in (extracted or {}).items()),
        ],
        "latest_input_channel": channel,
        "active_loop": {"name": active_loop} if active_loop else {},
        "latest_action": {"action_name": "action_listen"},
        "latest_action_name": "action_listen",
    }
    return {"next_action": action, "sender_id": sender, "tracker": tracker, "domain": DOMAIN, "version": RASA_VERSION}


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.body["events"])

    @property
    def responses(self) -> list[dict[str, Any]]:
        return list(self.body["responses"])

    @property
    def names(self) -> list[str]:
        return [r["response"] for r in self.responses]

    def slots(self) -> dict[str, Any]:
        """The slots the events set (the last value of each)."""
        return {e["name"]: e["value"] for e in self.events if e["event"] == "slot"}

    def has(self, event: str, **fields: Any) -> bool:
        return any(e["event"] == event and all(e.get(k) == v for k, v in fields.items()) for e in self.events)

    def texts(self, slots: dict[str, Any] | None = None, lang: str = "zh") -> list[str]:
        return [render(r, slots or {}, lang) for r in self.responses]


async def call(http: aiohttp.ClientSession, server: ActionServer, action: str, **kwargs: Any) -> Answer:
    async with http.post(server.url + "/webhook", json=action_call(action, **kwargs),
                         timeout=aiohttp.ClientTimeout(total=20)) as r:
        return Answer(r.status, await r.json(content_type=None))


def render(message: dict[str, Any], slots: dict[str, Any], lang: str = "zh") -> str:
    """The text Rasa makes of a response the action sent: a variant of the starter domain's
    response for the language, every placeholder filled from the values sent with it or the
    slots — a placeholder left unfilled fails the test."""
    name = message["response"]
    variants = DOMAIN["responses"].get(name)
    assert variants, f"{name} is not a response of examples/rasa/domain.yml"
    for variant in variants:
        names = set(_PLACEHOLDER.findall(variant.get("text", "")))
        missing = {n for n in names if n not in message and n not in slots}
        assert not missing, f"{name}: placeholders {missing} are neither sent nor slots"
    chosen = [v for v in variants if not v.get("channel") and all(
        c.get("value") == lang for c in v.get("condition") or [] if c.get("name") == "language")]
    text = (chosen or variants)[0]["text"]
    values = {**slots, **message}
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
