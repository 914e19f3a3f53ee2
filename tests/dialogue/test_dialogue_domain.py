"""domain.yml / rules.yml are consistent Rasa 3.x data and cover what the engine says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.dialogue.domain import Domain

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ACTIONS = {"action_listen", "action_restart", "action_default_fallback", "action_deactivate_loop",
                   "action_revert_fallback_events", "action_two_stage_fallback", "action_back", "action_session_start"}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "training_data" / name).read_text(encoding="utf-8"))


def test_domain_intents_cover_nlu_and_taxonomy():
    domain = load("domain.yml")
    assert str(domain["version"]) == "3.1"
    nlu_intents = {e["intent"] for e in load("nlu.yml")["nlu"] if "intent" in e}
    assert nlu_intents <= set(domain["intents"])
    assert "out_of_scope" in domain["intents"]


def test_rules_reference_known_intents_actions_and_forms():
    domain = load("domain.yml")
    known = set(domain["responses"]) | set(domain["actions"]) | set(domain["forms"]) | DEFAULT_ACTIONS
    intents = set(domain["intents"]) | {"nlu_fallback"}
    rules = load("rules.yml")
    assert str(rules["version"]) == "3.1"
    for rule in rules["rules"]:
        for step in rule["steps"]:
            if "intent" in step:
                assert step["intent"] in intents, rule["rule"]
            if "action" in step:
                assert step["action"] in known, (rule["rule"], step["action"])
            if step.get("active_loop"):
                assert step["active_loop"] in domain["forms"]
    for form in domain["forms"].values():
        for slot in form["required_slots"]:
            assert slot in domain["slots"], slot


def test_every_response_the_engine_uses_exists_in_zh_and_en():
    src = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "bot" / "dialogue").rglob("*.py")))
    used = set(re.findall(r'"(utter_[a-z_]+)"', src)) | {f"utter_materials_{f}" for f in
                                                         ("new_connection", "solar_connection", "ev_charging", "account_change")}
    d = Domain()
    for name in used:
        if name.startswith("utter_fragment_"):  # a piece of a sentence or a label (a prefix of labels)
            names = [n for n in d.responses if n == name or n.startswith(name + "_")]
            assert names, name
            for n in names:
                langs = {c["value"] for v in d.responses[n] for c in v.get("condition") or []}
                assert langs == {"zh", "en"}, n
            continue
        assert d.has(name), name
        zh = d.render(name, lang="zh", channel="rest").text
        en = d.render(name, lang="en", channel="rest").text
        assert re.search(r"[\u4e00-\u9fff]", zh), name
        assert zh != en and len(re.findall(r"[A-Za-z]{2,}", en)) >= 2, name  # place/app names may stay Chinese


def test_channel_variants_are_picked_by_channel():
    d = Domain()
    assert len(d.render("utter_greet", lang="zh", channel="wechat").text) < len(d.render("utter_greet", lang="zh", channel="email").text)
