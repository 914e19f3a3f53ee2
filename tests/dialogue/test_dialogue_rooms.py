"""The dialogue package stays in rooms a newcomer can find their way through.

- no module of ``bot/dialogue`` grows past 600 lines (the engine was one 1,300-line class);
- the customer's words are read by ``intents`` (entities, signals, form answers, payloads): the
  dialogue package defines no pattern of its own, except the few listed below with the reason;
- the dialogue knows channels only by ``channels.base`` and nothing of the pipeline; only the
  tracker store and its tables touch SQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIALOGUE = ROOT / "bot" / "dialogue"
MAX_LINES = 600

# module -> the regular expressions it may use, and why they are not the NLU's business
REGEX_ALLOWED: dict[str, tuple[str, set[str]]] = {
    "bot/dialogue/domain.py": ("placeholders of the response templates of domain.yml", {r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}"}),
    "bot/dialogue/engine.py": ("masking short numbers in the turn log", {r"(?<!\d)\d{4,9}(?!\d)"}),
}
# the modules that may speak SQL: the tracker store and the tables it owns
SQL_ALLOWED = {"bot/dialogue/tracker_store.py", "bot/dialogue/store.py", "bot/dialogue/handoff.py"}


def _modules() -> list[Path]:
    return sorted(DIALOGUE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports, at the top or inside a function, relative ones resolved."""
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _regexes(path: Path) -> tuple[bool, list[str]]:
    """Whether a file imports ``re``, and the first argument of each ``re.<function>(...)`` call
    (the pattern, as source text when it is not a literal)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports_re = any(
        isinstance(n, ast.Import) and any(a.name == "re" or a.name.startswith(("re.", "regex")) for a in n.names)
        or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("re", "regex")
        for n in ast.walk(tree))
    patterns = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) \
                and n.func.value.id in ("re", "regex") and n.args:
            arg = n.args[0]
            patterns.append(arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg))
    return imports_re, patterns


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_dialogue_module_is_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_rel(path)} has {lines} lines: split it by concern"


def test_the_dialogue_defines_no_pattern_for_the_customers_words() -> None:
    found = []
    for path in _modules():
        imports_re, patterns = _regexes(path)
        allowed = REGEX_ALLOWED.get(_rel(path), ("", set()))[1]
        if imports_re and not allowed:
            found.append(f"{_rel(path)} imports re")
        found += [f"{_rel(path)}: {p!r}" for p in patterns if p not in allowed]
    assert not found, "entity and signal patterns belong in intents/ (slots, signals, payload):\n" + "\n".join(found)


def test_the_regex_allow_list_has_no_stale_entries() -> None:
    for rel, (_why, allowed) in REGEX_ALLOWED.items():
        assert allowed <= set(_regexes(ROOT / rel)[1]), rel


def test_the_dialogue_knows_neither_the_pipeline_nor_a_channel() -> None:
    found = [f"{_rel(p)} imports {name}" for p in _modules() for name in sorted(_imports(p))
             if _within(name, "bot.pipeline") or _within(name, "channels") and not _within(name, "channels.base")]
    assert found == []


def test_only_the_tracker_store_speaks_sql() -> None:
    found = [f"{_rel(p)} imports {name}" for p in _modules() if _rel(p) not in SQL_ALLOWED
             for name in sorted(_imports(p)) if _within(name, "sqlalchemy") or _within(name, "bot.db")]
    assert found == []


def test_the_import_checker_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "bot" / "dialogue" / "flows"
    pkg.mkdir(parents=True)
    src = pkg / "x.py"
    src.write_text("from ..forms import Stop\n\ndef later():\n    import sqlalchemy.orm\n", encoding="utf-8")
    assert {"bot.dialogue.forms", "bot.dialogue.forms.Stop", "sqlalchemy.orm"} <= _imports(src, tmp_path)


def test_every_business_intent_has_its_flow() -> None:
    from bot.dialogue import DialogueEngine
    from bot.dialogue.flows import BUSINESS_INTENTS

    from bot.dialogue.flows.appointments import CANCEL_FLOW
    from bot.dialogue.identity import ACCOUNT_CHECK

    engine = DialogueEngine(core=object(), interpreter=None, store=object())  # type: ignore[arg-type]
    # and the check of an account given alone, and cancelling a booked visit
    assert set(engine.flows) == BUSINESS_INTENTS | {ACCOUNT_CHECK, CANCEL_FLOW}
    assert all(callable(f) for f in engine.flows.values())


# ---------------------------------------------------------------- the extractors in intents/
def test_form_answers_are_read_as_the_dialogue_always_read_them() -> None:
    from intents import slots

    assert slots.account_number("户号3100000001") == "3100000001"
    assert slots.account_number("13812345678") is None  # a mobile is not an account
    assert slots.account_number("WO202611280001") is None and slots.has_account_digits("13812345678")
    assert slots.mobile("+8613812345678") == slots.mobile("8613812345678") == "13812345678"
    assert slots.mobile("138-1234-5678") is None
    assert slots.last4("尾号5678") == "5678" and slots.last4("12345") is None
    assert slots.work_order_id("进度 wo202611280001?") == "WO202611280001"
    assert slots.kwh("300度多少钱") == "300" and slots.kwh("300") is None and slots.kwh("300", bare_number=True) == "300"
    assert slots.choice("第2个") == 2 and slots.choice("123") is None
    assert slots.iso_date("2026-12-08 上午") == "2026-12-08"
    assert slots.contact_name("我叫张三") == "张三" and slots.contact_name("张三 138") is None
    assert slots.district("浦东新区张江路") == "浦东新区" and slots.district("市闵行区") == "闵行区"
    assert slots.district("no district") is None


def test_signals() -> None:
    from intents import signals

    assert signals.is_hazard("电线断了掉下来") and signals.is_hazard("I smell a burning smell")
    assert signals.is_angry("太差了！！") and not signals.is_angry("谢谢")
    assert signals.is_cancel(" 算了。") and not signals.is_cancel("算了吧我还是要交电费")
    assert signals.wants_anonymity("匿名举报")
    assert signals.topic("停电通知") == "outage" and signals.topic("hello") is None
    assert signals.asks_price("300度多少钱") and signals.says_previous_month("那上个月呢")
    assert signals.tariff_category("商业电价") == "commercial" and signals.tariff_category("电价") == "residential"
    assert signals.names_tariff_category("居民电价") and not signals.names_tariff_category("电价")
    assert not signals.has_language("WO202611280001") and not signals.has_language("/choose{}")
    assert signals.has_language("查电费") and signals.word_chars("a, b!") == 2


def test_payloads() -> None:
    from intents.payload import chosen_option, payload_entities, split_payload

    assert split_payload('/choose{"hall_id": 3}') == ("choose", '{"hall_id": 3}')
    assert split_payload("/greet") == ("greet", None) and split_payload("hello") is None
    assert payload_entities('{"account_number": "3100000001", "date": "2026-02-30", "district": "12", "x": [1]}') == [
        {"entity": "account_number", "value": "3100000001"}]
    assert payload_entities("[1]") == [] and payload_entities("{") == []
    assert chosen_option('/choose{"hall_id": 12}', "hall_id") == 12
    assert chosen_option('/choose{"account_choice": 123}', "account_choice", max_digits=2) is None
    assert chosen_option('/choose{"slot_id": 1}', "hall_id") is None
