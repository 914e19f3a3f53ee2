"""The starter Rasa project (examples/rasa) is what a Rasa 3.x user can train: it is the
conversion of today's training_data/, its files are shaped as Rasa's schemas want them
(the keys Rasa's pykwalify schemas for domain and stories allow), every name it uses is
declared, and every custom action it names is served by ``powerbot rasa actions``.

Rasa itself (Python < 3.11) cannot run here, so ``rasa data validate`` is not run; these are
the checks it makes that matter for a project built from powerbot's data.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.rasa.server import action_names

STARTER = Path(__file__).resolve().parents[2] / "examples" / "rasa"
sys.path.insert(0, str(STARTER))
import convert  # noqa: E402  (examples/rasa/convert.py)


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((STARTER / name).read_text(encoding="utf-8"))


DOMAIN = _load("domain.yml")
RULES = _load("data/rules.yml")["rules"]
STORIES = _load("data/stories.yml")["stories"]
NLU = _load("data/nlu.yml")["nlu"]

# what Rasa 3.x defines itself (rasa/shared/core/constants.py: default intents and actions)
DEFAULT_INTENTS = {"restart", "back", "out_of_scope", "session_start", "nlu_fallback"}
DEFAULT_ACTIONS = {"action_listen", "action_restart", "action_session_start", "action_default_fallback",
                   "action_deactivate_loop", "action_revert_fallback_events", "action_default_ask_affirmation",
                   "action_default_ask_rephrase", "action_two_stage_fallback", "action_unlikely_intent",
                   "action_back", "action_extract_slots"}
SLOT_TYPES = {"text", "bool", "categorical", "float", "list", "any"}
MAPPING_TYPES = {"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"}


def _steps() -> list[dict[str, Any]]:
    return [s for item in RULES + STORIES for s in item.get("steps", []) + item.get("condition", [])]


def test_the_project_is_the_conversion_of_todays_training_data() -> None:
    built = convert.build()
    stale = [p.name for p, text in built.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"run python examples/rasa/convert.py: {stale} are stale"
    assert (STARTER / "data" / "nlu.yml").read_text(encoding="utf-8").endswith(
        (STARTER.parents[1] / "training_data" / "nlu.yml").read_text(encoding="utf-8"))


def test_config_and_endpoints_are_a_chinese_pipeline_and_the_action_server() -> None:
    config = _load("config.yml")
    assert config["language"] == "zh" and config["recipe"] == "default.v1"
    names = [c["name"] for c in config["pipeline"]]
    assert names[0] == "JiebaTokenizer" and "DIETClassifier" in names and names[-1] == "FallbackClassifier"
    assert any(c.get("analyzer") == "char_wb" for c in config["pipeline"])
    assert {p["name"] for p in config["policies"]} >= {"RulePolicy", "TEDPolicy"}
    assert _load("endpoints.yml")["action_endpoint"]["url"] == "http://localhost:5055/webhook"
    assert "rest" in _load("credentials.yml")


def test_the_domain_has_the_shape_rasas_schema_allows() -> None:
    assert set(DOMAIN) <= {"version", "intents", "entities", "actions", "responses", "slots", "forms", "config",
                           "session_config"}
    assert DOMAIN["version"] == "3.1"
    for name, slot in DOMAIN["slots"].items():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name)
        assert set(slot) <= {"influence_conversation", "type", "values", "min_value", "max_value", "initial_value",
                             "mappings"}, name
        assert slot["type"] in SLOT_TYPES, name
        assert slot["mappings"], f"{name}: Rasa 3 needs at least one mapping"
        if slot["type"] == "any":
            assert slot.get("influence_conversation") is False, name  # Rasa refuses a featurised 'any'
        if slot["type"] == "categorical":
            assert slot["values"], name
        for m in slot["mappings"]:
            assert set(m) <= {"type", "intent", "not_intent", "entity", "role", "group", "value", "action",
                              "conditions"}, name
            assert m["type"] in MAPPING_TYPES, name
            for cond in m.get("conditions") or []:
                assert set(cond) <= {"active_loop", "requested_slot"}
                assert cond["active_loop"] in DOMAIN["forms"], (name, cond)
                assert cond["requested_slot"] in DOMAIN["forms"][cond["active_loop"]]["required_slots"], (name, cond)
            if m["type"] == "from_entity":
                assert m["entity"] in DOMAIN["entities"], name
    for form in DOMAIN["forms"].values():
        assert set(form) <= {"required_slots", "ignored_intents"}
    assert set(DOMAIN["session_config"]) <= {"session_expiration_time", "carry_over_slots_to_new_session"}
    for name, variants in DOMAIN["responses"].items():
        assert name.startswith("utter_") and variants, name
        for v in variants:
            assert set(v) <= {"text", "buttons", "channel", "condition", "image", "custom", "attachment",
                              "quick_replies", "elements", "id"}, name


def test_the_stories_and_rules_have_the_shape_rasas_schema_allows() -> None:
    step_keys = {"intent", "user", "action", "bot", "active_loop", "slot_was_set", "checkpoint", "or", "entities"}
    for rule in RULES:
        assert set(rule) <= {"rule", "steps", "condition", "conversation_start", "wait_for_user_input", "metadata"}
    for story in STORIES:
        assert set(story) <= {"story", "steps", "metadata"}
    for step in _steps():
        assert len(step) == 1 and set(step) <= step_keys, step


def test_every_name_the_data_uses_is_declared() -> None:
    intents = set(DOMAIN["intents"]) | DEFAULT_INTENTS
    actions = set(DOMAIN["actions"]) | set(DOMAIN["responses"]) | set(DOMAIN["forms"]) | DEFAULT_ACTIONS
    for step in _steps():
        if "intent" in step:
            assert step["intent"] in intents, step
        if "action" in step:
            assert step["action"] in actions, step
        if step.get("active_loop"):
            assert step["active_loop"] in DOMAIN["forms"], step
        for item in step.get("slot_was_set") or []:
            name = next(iter(item)) if isinstance(item, dict) else item
            assert name in DOMAIN["slots"] or name == "requested_slot", step
    trained = {block["intent"] for block in NLU if "intent" in block}
    assert set(DOMAIN["intents"]) - {"out_of_scope"} <= trained  # every intent has examples
    assert trained <= set(DOMAIN["intents"])
    examples = "\n".join(b.get("examples", "") for b in NLU)
    annotated = set(re.findall(r"\]\((\w+)\)", examples)) | set(re.findall(r'"entity": ?"(\w+)"', examples))
    assert annotated and annotated <= set(DOMAIN["entities"])


def test_every_form_slot_is_declared_and_can_be_asked_again() -> None:
    for form, spec in DOMAIN["forms"].items():
        for slot in spec["required_slots"]:
            assert slot in DOMAIN["slots"], (form, slot)
            askers = {f"utter_ask_{form}_{slot}", f"utter_ask_{slot}", f"action_ask_{form}_{slot}", f"action_ask_{slot}"}
            assert askers & (set(DOMAIN["responses"]) | set(DOMAIN["actions"])), (form, slot)
        if form != "confirm_form":
            assert f"validate_{form}" in DOMAIN["actions"], form
        ends = [r for r in RULES if r.get("condition") == [{"active_loop": form}]]
        assert ends and ends[0]["steps"][-1]["action"] in ("action_resume", "action_verify_identity"), form


def test_responses_rasa_utters_by_itself_need_only_slots() -> None:
    """A response a rule or story utters (or a form asks) is filled by Rasa from the slots alone."""
    uttered = {s["action"] for s in _steps() if str(s.get("action", "")).startswith("utter_")}
    uttered |= {f"utter_ask_{slot}" for f in DOMAIN["forms"].values() for slot in f["required_slots"]}
    for name in uttered & set(DOMAIN["responses"]):
        for v in DOMAIN["responses"][name]:
            for placeholder in re.findall(r"\{(\w+)\}", v.get("text", "")):
                assert placeholder in DOMAIN["slots"], (name, placeholder)


@pytest.mark.parametrize("kind", ["custom actions", "form validations"])
def test_the_domains_custom_actions_are_the_ones_the_action_server_serves(kind: str) -> None:
    served = set(action_names())
    declared = set(DOMAIN["actions"])
    if kind == "custom actions":
        assert {a for a in declared if not a.startswith("validate_")} == {a for a in served if not a.startswith("validate_")}
    else:
        assert {a for a in declared if a.startswith("validate_")} == {a for a in served if a.startswith("validate_")}
