"""Build the starter Rasa project from powerbot's own training data.

    python examples/rasa/convert.py            # rewrite domain.yml and data/ next to this file
    python examples/rasa/convert.py --check    # exit 1 when they differ from what it would write

powerbot's ``training_data/`` is already Rasa 3.x YAML; what differs is how the conversation is
run. In powerbot its own engine runs every flow; in a Rasa assistant Rasa's policies pick the
next action and powerbot's action server (``powerbot rasa actions``) does the business. So:

- ``data/nlu.yml`` is powerbot's NLU data as it is (intents, examples, entity annotations);
- ``domain.yml`` keeps powerbot's intents, entities and responses (the brand placeholders
  ``{brand}``, ``{hotline}``... filled with powerbot's default brand settings, the
  ``utter_fragment_*`` pieces left to the action server, which renders them) and declares the
  slots, forms and actions the action server works with (``bot.rasa``);
- ``data/rules.yml`` maps each intent to what powerbot does for it: a response, or the action
  of the same business; each form ends in the action that opened it (``action_resume``; the
  identity check in ``action_verify_identity``);
- ``data/stories.yml`` holds the same conversations as stories (for TEDPolicy), one per intent
  rule, plus the confirmation round of each write.

Run it again after changing ``training_data/`` (a test fails while the files are stale).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRAINING = ROOT / "training_data"

# the action server's actions and validations (bot.rasa.actions / bot.rasa.validation)
CUSTOM_ACTIONS = [
    "action_verify_identity", "action_resume", "action_bill_query", "action_usage_query", "action_pay_bill",
    "action_report_outage", "action_repair_request", "action_outage_schedule", "action_complaint",
    "action_new_connection", "action_solar_connection", "action_ev_charging", "action_account_change",
    "action_work_order_status", "action_tariff_consult", "action_book_appointment",
    "action_subscribe_notifications", "action_unsubscribe_notifications",
    # a form's question asked again by the request's action (its words depend on the request)
    "action_ask_hall_id", "action_ask_slot_id", "action_ask_confirm",
]
# a form's question asked again with one of powerbot's responses (Rasa: utter_ask_<slot>)
ASK_ALIASES = {"utter_ask_description": "utter_ask_complaint"}
WRITE_ACTIONS = [
    "action_report_outage", "action_repair_request", "action_complaint", "action_new_connection",
    "action_solar_connection", "action_ev_charging", "action_account_change", "action_book_appointment",
    "action_subscribe_notifications", "action_unsubscribe_notifications",
]

# one question at a time: each form holds the slots its action may ask (bot.rasa.validation)
FORMS: dict[str, list[str]] = {
    "identity_form": ["account_number", "last4"],
    "report_outage_form": ["address", "contact_phone"],
    "repair_request_form": ["address", "contact_phone"],
    "complaint_form": ["description", "contact_phone"],
    "application_form": ["address", "contact_phone"],
    "outage_schedule_form": ["district"],
    "book_appointment_form": ["hall_id", "slot_id", "contact_name", "contact_phone"],
    "confirm_form": ["confirm"],
}
VALIDATED_FORMS = [f for f in FORMS if f != "confirm_form"]

# powerbot actions a Rasa assistant does with a response (or not at all, see README)
REPLACED = {"action_handoff": "utter_handoff", "action_fallback": "utter_default"}


def _asked_in(slot: str) -> list[dict[str, str]]:
    return [{"active_loop": form, "requested_slot": slot} for form, slots in FORMS.items() if slot in slots]


def _from_text(slot: str) -> dict[str, Any]:
    return {"type": "from_text", "conditions": _asked_in(slot)}


def _kept(kind: str, **extra: Any) -> dict[str, Any]:
    """A slot the actions set (no customer message sets it)."""
    return {"type": kind, "influence_conversation": False, "mappings": [{"type": "custom"}], **extra}


def slots() -> dict[str, Any]:
    text = {"type": "text", "influence_conversation": False}
    return {
        "language": {"type": "categorical", "values": ["zh", "en"], "initial_value": "zh",
                     "influence_conversation": False, "mappings": [{"type": "custom"}]},
        "account_number": {**text, "mappings": [{"type": "from_entity", "entity": "account_number"},
                                                _from_text("account_number")]},
        "last4": {**text, "mappings": [_from_text("last4")]},
        "contact_phone": {**text, "mappings": [{"type": "from_entity", "entity": "phone_number"},
                                               _from_text("contact_phone")]},
        "address": {**text, "mappings": [{"type": "from_entity", "entity": "address"}, _from_text("address")]},
        "district": {**text, "mappings": [{"type": "from_entity", "entity": "district"}, _from_text("district")]},
        "description": {**text, "mappings": [_from_text("description")]},
        "contact_name": {**text, "mappings": [_from_text("contact_name")]},
        "hall_id": {"type": "any", "influence_conversation": False, "mappings": [_from_text("hall_id")]},
        "slot_id": {"type": "any", "influence_conversation": False, "mappings": [_from_text("slot_id")]},
        "work_order_id": {**text, "mappings": [{"type": "from_entity", "entity": "work_order_id"}]},
        "month": {**text, "mappings": [{"type": "from_entity", "entity": "month"}]},
        "date": {**text, "mappings": [{"type": "from_entity", "entity": "date"}]},
        "topic": _kept("categorical", values=["outage", "bill", "work_order", "payment", "all"]),
        "kwh": _kept("text"),
        "confirm": {"type": "bool", "influence_conversation": False, "mappings": [
            {"type": "from_intent", "intent": "affirm", "value": True, "conditions": _asked_in("confirm")},
            {"type": "from_intent", "intent": "deny", "value": False, "conditions": _asked_in("confirm")},
        ]},
        "confirm_key": _kept("text"),
        "pending_action": _kept("text"),
        "verified_account": _kept("text"),
        "verify_failures": _kept("float", min_value=0.0, max_value=100.0),
        "verify_failed_at": _kept("text"),
        "account": _kept("text"),
        "filed_orders": _kept("list"),
        "offered": _kept("any"),
        "known_outage": _kept("any"),
    }


def _brand() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from bot.texts import brand_placeholders  # powerbot's default brand settings

    return brand_placeholders(None)


def _fill(value: Any, brand: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: brand.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, brand) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, brand) for k, v in value.items()}
    return value


def domain(src: dict[str, Any]) -> dict[str, Any]:
    brand = _brand()
    responses = {name: _fill(variants, brand) for name, variants in (src.get("responses") or {}).items()
                 if not name.startswith("utter_fragment_")}
    for alias, response in ASK_ALIASES.items():
        responses[alias] = responses[response]
    return {
        "version": "3.1",
        "session_config": src.get("session_config") or {"session_expiration_time": 60,
                                                       "carry_over_slots_to_new_session": True},
        "intents": list(src["intents"]),
        "entities": list(src["entities"]),
        "slots": slots(),
        "forms": {name: {"required_slots": list(req)} for name, req in FORMS.items()},
        "actions": CUSTOM_ACTIONS + [f"validate_{f}" for f in VALIDATED_FORMS],
        "responses": responses,
    }


def _intent_rules(src_rules: dict[str, Any], responses: set[str]) -> list[tuple[str, str]]:
    """(intent, action) of each of powerbot's rules that starts with an intent: its first
    action, or the business action a form of powerbot's led to."""
    pairs: dict[str, str] = {}
    for rule in src_rules.get("rules") or []:
        steps = rule.get("steps") or []
        if rule.get("condition") or not steps or "intent" not in steps[0]:
            continue
        intent = steps[0]["intent"]
        acts = [s["action"] for s in steps[1:] if "action" in s]
        if not acts:
            continue
        act = REPLACED.get(acts[0], acts[0])
        if act.endswith("_form"):
            act = f"action_{intent}"
        if act in CUSTOM_ACTIONS or act in responses:
            pairs.setdefault(intent, act)
    return list(pairs.items())


def rules(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: list[dict[str, Any]] = [
        {"rule": f"{intent}: {action}", "steps": [{"intent": intent}, {"action": action}]} for intent, action in pairs
    ]
    for form in FORMS:
        after = "action_verify_identity" if form == "identity_form" else "action_resume"
        out.append({
            "rule": f"{form} answered: back to the request",
            "condition": [{"active_loop": form}],
            "steps": [{"action": form}, {"active_loop": None}, {"slot_was_set": [{"requested_slot": None}]},
                      {"action": after}],
            # the action that follows is the request's own (FollowupAction), not a listen
            "wait_for_user_input": False,
        })
    return {"version": "3.1", "rules": out}


def stories(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: list[dict[str, Any]] = [
        {"story": f"{intent}", "steps": [{"intent": intent}, {"action": action}]} for intent, action in pairs
    ]
    for action in WRITE_ACTIONS:
        intent = next((i for i, a in pairs if a == action), None)
        if intent is None:
            continue
        out.append({"story": f"{intent}, shown and confirmed", "steps": [
            {"intent": intent}, {"action": action}, {"active_loop": "confirm_form"},
            {"intent": "affirm"}, {"action": "confirm_form"}, {"active_loop": None},
            {"action": "action_resume"}, {"action": action},
        ]})
    return {"version": "3.1", "stories": out}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_Dumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]

HEADER = "# Generated by examples/rasa/convert.py from powerbot's training_data/. Do not edit by hand.\n"


def _dump(data: dict[str, Any]) -> str:
    return HEADER + yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=120)


def build() -> dict[Path, str]:
    src = yaml.safe_load((TRAINING / "domain.yml").read_text(encoding="utf-8"))
    src_rules = yaml.safe_load((TRAINING / "rules.yml").read_text(encoding="utf-8"))
    dom = domain(src)
    pairs = _intent_rules(src_rules, set(dom["responses"]))
    nlu = (TRAINING / "nlu.yml").read_text(encoding="utf-8")
    return {
        HERE / "domain.yml": _dump(dom),
        HERE / "data" / "nlu.yml": HEADER + nlu,
        HERE / "data" / "rules.yml": _dump(rules(pairs)),
        HERE / "data" / "stories.yml": _dump(stories(pairs)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in build().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
