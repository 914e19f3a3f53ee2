"""Results of a conversation-test run: pass rates, the evaluation figures, the report files.

``failed_conversations.yml`` is like Rasa's ``failed_test_stories.yml``: the failed
conversations in the test format itself (so the file can be run again), each failing turn,
core row and handoff annotated in comments with what was expected and what happened.
``results.json`` holds every conversation's turns, replies, core diff and timing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from .run import ConversationResult, KindDiff
from .spec import Conversation


def _rate(passed: int, total: int) -> float:
    return round(passed / total, 4) if total else 0.0


def summary(results: list[ConversationResult]) -> dict[str, Any]:
    ran = [r for r in results if not r.skipped]
    passed = sum(r.passed for r in ran)

    def by(attr: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[ConversationResult]] = defaultdict(list)
        for r in ran:
            groups[getattr(r.conversation, attr)].append(r)
        return {k: {"total": len(v), "passed": sum(x.passed for x in v), "pass_rate": _rate(sum(x.passed for x in v), len(v))}
                for k, v in sorted(groups.items())}

    return {
        "total": len(ran), "passed": passed, "failed": len(ran) - passed,
        "errors": sum(r.error is not None for r in ran), "skipped": len(results) - len(ran),
        "pass_rate": _rate(passed, len(ran)), "by_intent": by("intent"), "by_lang": by("lang"),
        "seconds": round(sum(r.seconds for r in results), 2),
    }


def figures(results: list[ConversationResult]) -> dict[str, Any]:
    """The evaluation benchmark's figures (benchmarks/conversation_eval.py)."""
    ran = [r for r in results if not r.skipped]
    done = [r for r in ran if r.passed]
    turns = [len(r.conversation.steps) for r in done]
    return {
        "conversations": len(ran),
        "task_success_rate": _rate(len(done), len(ran)),
        "wrong_core_writes": sum(r.wrong_write for r in ran),
        "wrong_core_write_rate": _rate(sum(r.wrong_write for r in ran), len(ran)),
        "handoffs_expected": sum(r.handoff_expected for r in ran),
        "missed_handoffs": sum(r.handoff_expected and r.handoff_actual is False for r in ran),
        "unwanted_handoffs": sum((not r.handoff_expected) and r.handoff_actual is True for r in ran),
        "avg_turns_per_completed_task": round(sum(turns) / len(turns), 2) if turns else 0.0,
        "errors": sum(r.error is not None for r in ran),
    }


def _kind_json(d: KindDiff) -> dict[str, Any]:
    return {"ok": d.ok, "expected": d.expected, "created": d.created, "missing": d.missing,
            "unexpected": d.unexpected, "mismatched": d.mismatched}


def result_json(r: ConversationResult) -> dict[str, Any]:
    c = r.conversation
    failed = r.first_failed_turn
    return {
        "id": c.id, "file": c.file, "lang": c.lang, "intent": c.intent, "channel": c.channel, "sender": r.sender,
        "passed": r.passed, "skipped": r.skipped, "error": r.error, "postponed_turns": r.postponed,
        "seconds": round(r.seconds, 3),
        "failed_turn": failed.index if failed else None,
        "turns": [{"turn": t.index, "user": t.user, "reply": t.reply, "replies": t.replies, "expected": t.expected,
                   "ok": t.ok, "problems": t.problems, "seconds": round(t.seconds, 3)} for t in r.turns],
        "core": {k: _kind_json(d) for k, d in r.core.items()}, "wrong_core_write": r.wrong_write,
        "handoff": {"expected": r.handoff_expected, "actual": r.handoff_actual},
    }


def describe_failure(r: ConversationResult) -> list[str]:
    """Short lines saying why ``r`` failed (the CLI prints them)."""
    out = []
    if r.error:
        out.append(f"error: {r.error}")
    t = r.first_failed_turn
    if t is not None:
        out.append(f"turn {t.index} ({t.user!r}): {'; '.join(t.problems)}")
        out.append("  replied: " + (t.reply.replace("\n", " / ")[:300] or "(nothing)"))
    for kind, d in r.core.items():
        for m in d.mismatched:
            out.append(f"core.{kind}: wrong fields: {'; '.join(m['problems'])}")
        for row in d.missing:
            out.append(f"core.{kind}: missing {_flow(row)}")
        for row in d.unexpected:
            out.append(f"core.{kind}: unexpected {_flow(_short(row))}")
    if r.handoff_actual is not None and r.handoff_actual != r.handoff_expected:
        out.append("handoff: expected one, none open" if r.handoff_expected else "handoff: not expected, one is open")
    if r.postponed:
        out.append(f"the gateway postponed {r.postponed} turn(s) after an error (see the log)")
    return out


# ------------------------------------------------------------------------------- failed_conversations.yml
def _flow(value: Any) -> str:
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return json.dumps(value, ensure_ascii=False)  # JSON is YAML, on one line
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10_000, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _short(row: dict[str, Any]) -> dict[str, Any]:
    drop = {"created_at", "updated_at", "idempotency_key", "sla_due_at", "dispatched_at", "in_progress_at",
            "resolved_at", "closed_at", "cancelled_at", "paid_at"}
    return {k: v for k, v in row.items() if k not in drop}


def _comment(lines: list[str], indent: str) -> list[str]:
    return [f"{indent}# {line}" if line else f"{indent}#" for line in lines]


def _reply_lines(text: str) -> list[str]:
    return ["  " + line for line in (text.splitlines() or ["(no reply)"])]


def _conversation_yaml(c: Conversation) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id, "lang": c.lang, "intent": c.intent}
    if c.channel != "rest":
        out["channel"] = c.channel
    if c.sender:
        out["sender"] = c.sender
    if c.description:
        out["description"] = c.description
    if c.tags:
        out["tags"] = list(c.tags)
    return out


def failed_yaml(results: list[ConversationResult]) -> str:
    failed = [r for r in results if not r.skipped and not r.passed]
    lines = ['version: "1"', "# failed conversations: each failing turn, core row and handoff is annotated",
             "# (\"expected\" / \"actual\"); the file runs again as it is: powerbot test conversations THIS_FILE"]
    if not failed:
        lines.append("conversations: []")
        return "\n".join(lines) + "\n"
    lines.append("conversations:")
    for r in failed:
        c = r.conversation
        first = r.first_failed_turn
        where = f"turn {first.index}" if first else ("the core" if not r.core_ok else "the handoff" if r.handoff_actual is not None else "start")
        lines.append(f"# ---- {c.id} ({c.file}): failed at {where}")
        if r.error:
            lines.extend(_comment([f"error: {r.error}"], ""))
        head = _conversation_yaml(c)
        for i, (k, v) in enumerate(head.items()):
            lines.append(("- " if i == 0 else "  ") + f"{k}: {_flow(v)}")
        lines.append("  steps:")
        turns = {t.index: t for t in r.turns}
        for i, step in enumerate(c.steps, 1):
            lines.append(f"  - user: {_flow(step.user)}")
            if step.bot is not None:
                lines.append(f"    bot: {_flow(step.bot.as_dict())}")
            t = turns.get(i)
            if t is None:
                if r.turns and i == len(r.turns) + 1:
                    lines.extend(_comment(["not run (the conversation stopped with an error)"], "    "))
                continue
            if not t.ok:
                note = [f"✗ turn {i} failed: " + "; ".join(t.problems), "- expected: " + _flow(t.expected),
                        "+ actual:"] + _reply_lines(t.reply)
                lines.extend(_comment(note, "    "))
            else:
                lines.extend(_comment(["actual:"] + _reply_lines(t.reply), "    "))
        if c.core:
            lines.append("  core:")
            for kind, rows in c.core.items():
                lines.append(f"    {kind}: {_flow([row.as_dict() for row in rows])}")
        notes = []
        for kind, d in r.core.items():
            if d.ok:
                continue
            notes.append(f"✗ core.{kind}: expected {len(d.expected)} row(s), created {len(d.created)}")
            for m in d.mismatched:
                notes.append("  wrong fields: " + "; ".join(m["problems"]))
                notes.append("  - expected: " + _flow(m["expected"]))
                notes.append("  + actual:   " + _flow(_short(m["actual"])))
            for row in d.missing:
                notes.append("  - missing:    " + _flow(row))
            for row in d.unexpected:
                notes.append("  + unexpected: " + _flow(_short(row)))
        lines.extend(_comment(notes, "  "))
        lines.append(f"  handoff: {_flow(c.handoff)}")
        if r.handoff_actual is not None and r.handoff_actual != c.handoff:
            lines.extend(_comment([f"✗ handoff: expected {str(c.handoff).lower()}, actual {str(r.handoff_actual).lower()}"], "  "))
    return "\n".join(lines) + "\n"


def write_report(results: list[ConversationResult], directory: Path, *, extra: dict[str, Any] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "failed_conversations.yml").write_text(failed_yaml(results), encoding="utf-8")
    doc = {"summary": summary(results), "figures": figures(results), **(extra or {}),
           "conversations": [result_json(r) for r in results]}
    (directory / "results.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


def print_summary(results: list[ConversationResult], echo: Any = print, *, show_failures: bool = True) -> None:
    s = summary(results)
    echo(f"conversations: {s['total']} run, {s['passed']} passed, {s['failed']} failed "
         f"({s['errors']} errors), {s['skipped']} skipped — pass rate {s['pass_rate']:.1%} in {s['seconds']:.1f}s")
    echo("by language:")
    for k, v in s["by_lang"].items():
        echo(f"  {k:<6} {v['passed']:>4}/{v['total']:<4} {v['pass_rate']:.1%}")
    echo("by intent:")
    for k, v in s["by_intent"].items():
        echo(f"  {k:<28} {v['passed']:>4}/{v['total']:<4} {v['pass_rate']:.1%}")
    if show_failures:
        for r in results:
            if not r.skipped and not r.passed:
                echo(f"FAILED {r.conversation.id} ({r.conversation.file})")
                for line in describe_failure(r):
                    echo("  " + line)
