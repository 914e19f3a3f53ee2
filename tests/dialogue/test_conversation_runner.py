"""The conversation-test runner (bot/testing) on small fixtures of its own
(tests/dialogue/conversation_fixtures): conversations that must pass, conversations that must fail —
each for one reason, proof that every check can fail — the loader's errors, the report files,
the evaluation figures and the CLI's exit code.

The fixtures run once per module on the real embedded stack (core with demo data, gateway
with the trained NLU, SQLite), the clock pinned.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.testing import report as rep
from bot.testing import run as run_mod
from bot.testing.run import PINNED_NOW, ConversationResult, compare_rows, run
from bot.testing.spec import ExpectedRow, SpecError, date_values, load, load_file

FIXTURES = Path(__file__).resolve().parent / "conversation_fixtures"


@pytest.fixture(scope="module")
def results(interpreter) -> dict[str, ConversationResult]:  # type: ignore[no-untyped-def]
    convs = load([FIXTURES / "pass.yml", FIXTURES / "fail.yml"])
    out = run(convs, interpreter=interpreter)
    return {r.conversation.id: r for r in out}


# ------------------------------------------------------------------------------- running
def test_conversations_that_must_pass_pass(results) -> None:  # type: ignore[no-untyped-def]
    passing = [c.id for c in load_file(FIXTURES / "pass.yml")]
    failed = {i: rep.describe_failure(results[i]) for i in passing if not results[i].passed}
    assert not failed, json.dumps(failed, ensure_ascii=False, indent=1)


def test_every_check_can_fail(results) -> None:  # type: ignore[no-untyped-def]
    def turn_says(cid: str, text: str) -> bool:
        t = results[cid].first_failed_turn
        return t is not None and any(text in p for p in t.problems)

    assert turn_says("fail-wrong-text", "says_all: missing '这句话机器人不会说'")
    assert turn_says("fail-says-forbidden", "not_says: contains '95598'")
    assert turn_says("fail-regex", "matches: no match")
    assert turn_says("fail-no-reply", "expected no reply")

    r = results["fail-unexpected-work-order"]
    assert r.turns_ok and r.handoff_ok and r.wrong_write
    assert [row["type"] for row in r.core["work_orders"].unexpected] == ["repair"]

    r = results["fail-wrong-priority"]
    (m,) = r.core["work_orders"].mismatched
    assert m["problems"] == ["priority: expected 'low', got 'emergency'"] and r.wrong_write

    r = results["fail-missing-subscription"]
    assert r.core["subscriptions"].missing == [{"topic": "outage"}] and not r.wrong_write

    assert results["fail-missed-handoff"].handoff_actual is False
    assert results["fail-unwanted-handoff"].handoff_actual is True
    for cid in [c.id for c in load_file(FIXTURES / "fail.yml")]:
        assert not results[cid].passed and results[cid].error is None, cid


def test_each_conversation_starts_from_the_seeded_core_and_a_fresh_sender(results) -> None:  # type: ignore[no-untyped-def]
    # the same subscription twice: the second one is created again (the first was undone)
    assert results["fx-subscribe"].passed and results["fx-subscribe-again"].passed
    # a named sender used twice: the handoff of the first conversation is not the second's
    assert results["fx-sender-first"].handoff_actual is True
    assert results["fx-sender-second"].handoff_actual is False and results["fx-sender-second"].passed
    # a slot booked by the first conversation is free again for the second
    assert results["fx-appointment"].passed and results["fx-appointment-again"].passed
    # default senders are unique per conversation
    senders = [r.sender for r in results.values() if not r.conversation.sender]
    assert len(set(senders)) == len(senders)


def test_the_clock_is_pinned_and_placeholders_come_from_the_demo_data(results) -> None:  # type: ignore[no-untyped-def]
    r = results["fx-bill-zh-verify"]
    assert "2026-02 电费" in r.turns[-1].reply  # {last_month} of the pinned day, whatever today is
    assert r.turns[-1].expected["says_all"][1] == "2026-02"
    assert r.turns[-1].expected["matches"].startswith("2026\\-02 电费")  # escaped inside a regex
    assert PINNED_NOW.date() == date(2026, 3, 10)
    sms = results["fx-bill-sms"]
    assert sms.sender == "+8613900139000" and sms.passed


def test_sms_turns_go_through_the_signed_provider_callback(results) -> None:  # type: ignore[no-untyped-def]
    t = results["fx-bill-sms"].turns[0]
    assert t.replies >= 1 and "已结清" in t.reply


# ------------------------------------------------------------------------------- figures and report
def test_evaluation_figures(results) -> None:  # type: ignore[no-untyped-def]
    fail_ids = {c.id for c in load_file(FIXTURES / "fail.yml")}
    f = rep.figures([r for cid, r in results.items() if cid in fail_ids])
    assert f["conversations"] == 9 and f["task_success_rate"] == 0.0
    assert f["wrong_core_writes"] == 2  # the unexpected work order, the wrong priority
    assert (f["missed_handoffs"], f["unwanted_handoffs"]) == (1, 1)
    p = rep.figures([r for cid, r in results.items() if cid not in fail_ids])
    assert p["task_success_rate"] == 1.0 and p["wrong_core_writes"] == 0
    assert p["avg_turns_per_completed_task"] > 1


def test_report_files(results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rep.write_report(list(results.values()), tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert doc["summary"]["total"] == len(results) and doc["summary"]["failed"] == 9
    assert set(doc["summary"]["by_lang"]) == {"zh", "en"} and "bill_query" in doc["summary"]["by_intent"]
    one = next(c for c in doc["conversations"] if c["id"] == "fail-wrong-text")
    assert one["failed_turn"] == 1 and one["turns"][0]["problems"]
    failed_file = tmp_path / "failed_conversations.yml"
    text = failed_file.read_text(encoding="utf-8")
    assert "✗ turn 1 failed: says_all: missing '这句话机器人不会说'" in text
    assert "+ unexpected: {id: WO" in text and "✗ handoff: expected true, actual false" in text
    again = load([failed_file])  # the failed file is itself a conversation file
    assert {c.id for c in again} == {c.id for c in load_file(FIXTURES / "fail.yml")}


# ------------------------------------------------------------------------------- comparing rows
def test_rows_are_matched_as_a_whole_not_greedily() -> None:
    loose, strict = ExpectedRow(fields={"type": "repair"}), ExpectedRow(fields={"type": "repair", "priority": "high"})
    created = [{"type": "repair", "priority": "high"}, {"type": "repair", "priority": "low"}]
    assert compare_rows([loose, strict], created).ok  # greedy would give the high one to ``loose``
    d = compare_rows([strict], created)
    assert d.unexpected == [{"type": "repair", "priority": "low"}] and d.wrong_write
    d = compare_rows([ExpectedRow(fields={"amount": "12.3", "details": {"a": True}}, has=["address"])],
                     [{"amount": 12.30, "details": {"a": True, "b": 1}, "address": " "}])
    assert d.mismatched[0]["problems"] == ["address: expected a value, got ' '"]


def test_date_placeholders_cross_the_year() -> None:
    v = date_values(date(2027, 1, 1))
    assert (v["today"], v["yesterday"], v["tomorrow"]) == ("2027-01-01", "2026-12-31", "2027-01-02")
    assert (v["this_month"], v["last_month"], v["month_before_last"]) == ("2027-01", "2026-12", "2026-11")


# ------------------------------------------------------------------------------- loading
def _write(tmp_path: Path, body: str, name: str = "c.yml") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


GOOD = """version: "1"
conversations:
  - id: ok
    steps:
      - user: 你好
"""


@pytest.mark.parametrize(("body", "message"), [
    (GOOD.replace("  - id: ok", "  - id: ok\n    colour: red"), "unknown key(s) colour"),
    (GOOD + "        bot: {say_any: [x]}\n", "unknown key(s) say_any"),
    (GOOD + "        robot: {}\n", "unknown key(s) robot"),
    (GOOD + "    core: {orders: []}\n", "unknown key(s) orders"),
    (GOOD + "    core:\n      work_orders:\n        - {kind: repair}\n", "unknown key(s) kind"),
    (GOOD + "    core:\n      work_orders:\n        - {has: [colour]}\n", "has: unknown field(s) colour"),
    (GOOD + "    core:\n      work_orders:\n        - {priority: urgent}\n", "priority: 'urgent' is not one of"),
    (GOOD + "    core:\n      subscriptions:\n        - {topic: bills}\n", "topic: 'bills' is not one of"),
    (GOOD + "  - id: ok\n    steps: [{user: x}]\n", "duplicate conversation id 'ok'"),
    (GOOD.replace("      - user: 你好", "      - user: 你好\n        user: again"), "duplicate key 'user'"),
    (GOOD.replace("你好", "'{acct.wang}'"), "unknown placeholder {acct.wang}"),
    (GOOD.replace("  - id: ok", "  - id: ok\n    lang: fr"), "lang must be one of zh, en"),
    (GOOD.replace("  - id: ok", "  - id: ok\n    channel: sms"), "channel: sms needs a sender"),
    (GOOD.replace("  - id: ok", "  - id: ok\n    channel: sms\n    sender: '13800138000'"), "E.164"),
    (GOOD.replace("  - id: ok", "  - id: ok\n    channel: fax"), "channel must be one of rest, sms"),
    (GOOD + "        bot: {matches: '(unclosed'}\n", "not a regular expression"),
    (GOOD + "        bot: {no_reply: true, says_all: [x]}\n", "cannot be combined"),
    (GOOD + "    handoff: maybe\n", "handoff must be true or false"),
    (GOOD.replace("你好", "true"), "user must be text"),
    (GOOD.replace('version: "1"', 'version: "2"'), 'version must be "1"'),
    ('version: "1"\nconversations:\n  - id: x\n', "missing required key 'steps'"),
    ('version: "1"\nconversations:\n  - id: x\n    steps: []\n', "steps must be a non-empty list"),
    ("version: [\n", "not valid YAML"),
])
def test_loader_errors_are_clear(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        load([_write(tmp_path, body)])
    assert message in str(exc.value) and "c.yml" in str(exc.value)


def test_ids_are_unique_across_files(tmp_path: Path) -> None:
    a = _write(tmp_path, GOOD, "a.yml")
    b = _write(tmp_path, GOOD, "b.yml")
    with pytest.raises(SpecError, match=r"b\.yml: duplicate conversation id 'ok' \(also in .*a\.yml\)"):
        load([a, b])


def test_what_the_customer_types_stays_text(tmp_path: Path) -> None:
    body = GOOD.replace("      - user: 你好", "      - user: yes\n      - user: 0123\n      - user: no\n      - user: 8000")
    (conv,) = load([_write(tmp_path, body)])
    assert [s.user for s in conv.steps] == ["yes", "0123", "no", "8000"]
    assert conv.handoff is False and conv.channel == "rest" and conv.lang == "zh"


def test_directories_load_their_yml_files_in_order(tmp_path: Path) -> None:
    _write(tmp_path, GOOD.replace("id: ok", "id: second"), "b.yml")
    _write(tmp_path, GOOD.replace("id: ok", "id: first"), "a.yml")
    _write(tmp_path, "not a conversation file", "README.md")
    assert [c.id for c in load([tmp_path])] == ["first", "second"]


# ------------------------------------------------------------------------------- the CLI
def _fake_results(passed: int, failed: int) -> list[ConversationResult]:
    conv = load([FIXTURES / "fail.yml"])[0]
    out = []
    for i in range(passed + failed):
        r = ConversationResult(conversation=conv, sender=f"s{i}", handoff_actual=False)
        if i >= passed:
            r.error = "boom"
        out.append(r)
    return out


def test_cli_min_pass_and_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.cli import main

    monkeypatch.setattr(run_mod, "run", lambda convs, **kw: _fake_results(3, 1))
    cli = CliRunner()
    out = cli.invoke(main, ["test", "conversations", str(FIXTURES / "fail.yml"), "--report", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "pass rate 75.0%" in out.output and "by intent:" in out.output and "by language:" in out.output
    assert (tmp_path / "failed_conversations.yml").exists() and (tmp_path / "results.json").exists()
    out = cli.invoke(main, ["test", "conversations", str(FIXTURES / "fail.yml"), "--min-pass", "0.8"])
    assert out.exit_code == 1 and "below --min-pass" in out.output


def test_cli_refuses_a_broken_file(tmp_path: Path) -> None:
    from bot.cli import main

    bad = _write(tmp_path, GOOD.replace("  - id: ok", "  - id: ok\n    colour: red"))
    out = CliRunner().invoke(main, ["test", "conversations", str(bad)])
    assert out.exit_code != 0 and "unknown key(s) colour" in out.output


# ------------------------------------------------------------------------------- isolation
def test_the_core_is_put_back_after_each_conversation(interpreter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What a conversation may write through the core's API — a paid payment settling bills, a
    work order moved on, a new subscription, a binding removed — is undone by ``restore``."""
    import asyncio

    import time_machine

    from bot.testing.run import embedded_stack

    api = "/api/v1"

    async def scenario() -> None:
        async with embedded_stack(tmp_path, interpreter) as stack:
            state = stack.core_state
            before = {name: dict(rows) for name, rows in state.base.items()}
            http, core = stack.http, stack.core_url
            owed = await (await http.get(f"{core}{api}/accounts/3100000001/arrears")).json()
            assert float(owed["amount_owed"]) > 0
            pay = {"out_trade_no": "ct-restore-1", "account_number": "3100000001",
                   "amount": owed["amount_owed"], "channel": "alipay"}
            assert (await http.post(f"{core}{api}/payments", json=pay)).status in (200, 201)
            r = await http.post(f"{core}{api}/payments/ct-restore-1/confirm",
                                json={"trade_no": "T1", "total_amount": owed["amount_owed"]})
            assert r.status == 200, await r.text()
            path = ["created", "dispatched", "in_progress", "resolved", "closed"]
            wo, row = next((k, v) for k, v in before["work_orders"].items() if v["status"] != "closed")
            step = path[path.index(row["status"]) + 1]
            r = await http.post(f"{core}{api}/work-orders/{wo}/transitions", json={"status": step})
            assert r.status == 200, await r.text()
            r = await http.post(f"{core}{api}/subscriptions", json={"account_number": "3100000002", "topic": "bill",
                                                                 "channel": "sms", "identity": "+8613900139000"})
            assert r.status in (200, 201), await r.text()
            created = await state.created()
            assert [p["out_trade_no"] for p in created["payments"]] == ["ct-restore-1"]
            assert len(created["subscriptions"]) == 1
            settled = await (await http.get(f"{core}{api}/accounts/3100000001/arrears")).json()
            assert float(settled["amount_owed"]) == 0

            await state.restore()
            await state.snapshot()  # read again: the same as seeded
            assert state.base == before
            again = await (await http.get(f"{core}{api}/accounts/3100000001/arrears")).json()
            assert again["amount_owed"] == owed["amount_owed"]

    with time_machine.travel(PINNED_NOW, tick=True):
        asyncio.run(scenario())
