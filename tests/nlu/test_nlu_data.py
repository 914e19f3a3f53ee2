"""Structure checks: training_data/nlu.yml must be strictly valid Rasa 3.x NLU YAML.

Rasa itself is not installable next to this project, so the rules its YAML reader and
schema enforce are re-stated here (top-level keys, block types, ``examples: |`` lists,
annotation grammar) together with the project's own data-quality rules (below).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from intents.loader import ENTITY_RE, load_nlu_file, parse_example

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "training_data" / "nlu.yml"
TEST = ROOT / "tests" / "data" / "nlu_test.yml"
TAXONOMY = """greet goodbye thank affirm deny request_human bill_query usage_query pay_bill
payment_issue report_outage outage_schedule repair_request complaint feedback report_violation
work_order_status new_connection solar_connection ev_charging account_change tariff_consult
invoice_request book_appointment subscribe_notifications unsubscribe_notifications bind_account
inform""".split()
ENTITIES = {"account_number", "phone_number", "work_order_id", "amount", "date", "month",
            "address", "district"}


def _is_english(text: str) -> bool:
    return not any("\u4e00" <= c <= "\u9fff" for c in text) and any(c.isalpha() for c in text)


@pytest.mark.parametrize("path", [TRAIN, TEST], ids=["training", "test"])
def test_rasa_3_structure(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    assert "\t" not in raw
    doc = yaml.safe_load(raw)
    assert set(doc) <= {"version", "nlu"}
    assert doc["version"] == "3.1" and isinstance(doc["version"], str)
    assert isinstance(doc["nlu"], list) and doc["nlu"]
    for item in doc["nlu"]:
        kinds = [k for k in ("intent", "synonym", "regex", "lookup") if k in item]
        assert len(kinds) == 1, item
        assert set(item) <= {kinds[0], "examples", "metadata"}, item
        ex = item["examples"]
        assert isinstance(ex, str), f"{item[kinds[0]]}: examples must be a block string"
        lines = [ln for ln in ex.splitlines() if ln.strip()]
        assert lines and all(ln.startswith("- ") for ln in lines), item[kinds[0]]
        if kinds[0] == "regex":
            for ln in lines:
                re.compile(ln[2:])
        if kinds[0] == "intent":
            for ln in lines:
                text = ln[2:]
                for m in ENTITY_RE.finditer(text):
                    if m.group("entity_dict"):
                        spec = json.loads("{" + m.group("entity_dict") + "}")
                        assert spec["entity"] in ENTITIES
                    else:
                        assert m.group("entity") in ENTITIES, ln
                plain, _ = parse_example(text)
                # Stray brackets would be read as (broken) annotations by Rasa.
                assert "[" not in plain and "]" not in plain, ln


def test_taxonomy_and_volume() -> None:
    data = load_nlu_file(TRAIN)
    counts = Counter(e.intent for e in data.examples)
    assert set(counts) == set(TAXONOMY) | {"out_of_scope"}
    for intent in TAXONOMY:
        assert counts[intent] >= 60, (intent, counts[intent])
    assert counts["out_of_scope"] >= 100
    english = sum(_is_english(e.text) for e in data.examples) / len(data.examples)
    assert english >= 0.20, english


def test_no_example_in_two_intents_and_no_duplicates() -> None:
    data = load_nlu_file(TRAIN)
    seen: dict[str, set[str]] = defaultdict(set)
    per_intent: Counter[tuple[str, str]] = Counter()
    for e in data.examples:
        key = e.text.strip().lower()
        seen[key].add(e.intent)
        per_intent[(e.intent, key)] += 1
    clashes = {k: v for k, v in seen.items() if len(v) > 1}
    assert not clashes
    assert not [k for k, n in per_intent.items() if n > 1]


def test_entities_synonyms_regex_lookup_present() -> None:
    data = load_nlu_file(TRAIN)
    annotated = Counter(ent["entity"] for e in data.examples for ent in e.entities)
    for name in ("account_number", "phone_number", "work_order_id", "amount", "date", "month",
                 "district", "address"):
        assert annotated[name] >= 5, (name, annotated[name])
    assert data.synonyms.get("浦东") == "浦东新区"
    assert {"account_number", "phone_number", "work_order_id"} <= set(data.regexes)
    assert len(data.lookups["district"]) >= 50


def test_hard_pairs_are_labelled_as_specified() -> None:
    data = load_nlu_file(TRAIN)
    label = {e.text: e.intent for e in data.examples}
    assert label["停电了"] == "report_outage"
    assert label["明天停电吗"] == "outage_schedule"
    assert label["交了钱还是欠费"] == "payment_issue"
    assert label["点费多少"] == "bill_query"


def test_test_set_is_independent_and_large_enough() -> None:
    train = {e.text.strip().lower() for e in load_nlu_file(TRAIN).examples}
    test = load_nlu_file(TEST)
    counts = Counter(e.intent for e in test.examples)
    assert all(counts[i] >= 10 for i in TAXONOMY)
    assert counts["out_of_scope"] >= 30
    assert not [e.text for e in test.examples if e.text.strip().lower() in train]
