"""Task-level evaluation of the assistant on the conversation tests (tests/conversations/*.yml).

Runs every conversation on the embedded default (real core with demo data, real gateway with
the trained NLU, SQLite, the clock pinned; bot/testing) and prints:

* task success rate — conversations that passed every check (each turn's texts, exactly the
  expected core rows, the expected handoff state);
* wrong core writes — conversations that created a core row nobody expected, or an expected
  kind of row with wrong fields (a missing row is a failed task, not a wrong write);
* missed handoffs (a handoff expected, none open at the end) and unwanted handoffs (one open,
  none expected);
* average turns per completed task (customer messages in the conversations that passed);
* the same per intent and per language, and the wrong writes per kind of row.

    python benchmarks/conversation_eval.py [FILES or DIRS...] [--report DIR] [--json]

``--report DIR`` also writes failed_conversations.yml and results.json (as ``powerbot test
conversations --report DIR`` does); ``--json`` prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.testing import report as rep  # noqa: E402
from bot.testing.run import PINNED_NOW, ConversationResult, run  # noqa: E402
from bot.testing.spec import load  # noqa: E402


def _group_figures(results: list[ConversationResult], attr: str) -> dict[str, dict[str, object]]:
    groups: dict[str, list[ConversationResult]] = defaultdict(list)
    for r in results:
        groups[getattr(r.conversation, attr)].append(r)
    return {k: rep.figures(v) for k, v in sorted(groups.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", default=[str(ROOT / "tests" / "conversations")])
    ap.add_argument("--report", type=Path, default=None, help="write failed_conversations.yml and results.json here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    logging.getLogger().addHandler(logging.NullHandler())  # the services' warnings are not figures
    logging.getLogger().setLevel(logging.ERROR)

    conversations = load(args.files)
    started = time.perf_counter()
    results = run(conversations)
    wall = time.perf_counter() - started
    ran = [r for r in results if not r.skipped]
    figures = rep.figures(results)
    wrong_kinds = Counter(kind for r in ran for kind, d in r.core.items() if d.wrong_write)
    out = {
        "pinned_now": PINNED_NOW.isoformat(), "wall_seconds": round(wall, 1), **figures,
        "wrong_core_writes_by_kind": dict(sorted(wrong_kinds.items())),
        "by_lang": _group_figures(ran, "lang"), "by_intent": _group_figures(ran, "intent"),
    }
    if args.report:
        rep.write_report(results, args.report, extra={"pinned_now": PINNED_NOW.isoformat()})
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    n = figures["conversations"]
    print(f"conversation eval: {n} conversations ({len(results) - n} skipped) in {wall:.1f}s, "
          f"clock pinned at {PINNED_NOW.isoformat()}")
    print(f"  task success rate              {figures['task_success_rate']:.1%}")
    print(f"  wrong core writes              {figures['wrong_core_writes']} ({figures['wrong_core_write_rate']:.1%})"
          + (f"  by kind: {dict(sorted(wrong_kinds.items()))}" if wrong_kinds else ""))
    print(f"  missed handoffs                {figures['missed_handoffs']} of {figures['handoffs_expected']} expected")
    print(f"  unwanted handoffs              {figures['unwanted_handoffs']} of {n - figures['handoffs_expected']} "
          "not expected")
    print(f"  avg turns per completed task   {figures['avg_turns_per_completed_task']:.2f}")
    print(f"  conversations with an error    {figures['errors']}")
    for title, groups in (("by language", out["by_lang"]), ("by intent", out["by_intent"])):
        print(f"{title + ':':<29}{'n':>4} {'success':>8} {'wrong':>6} {'missed':>7} {'unwanted':>9} {'turns':>6}")
        for k, f in groups.items():  # type: ignore[union-attr]
            print(f"  {k:<26} {f['conversations']:>4} {f['task_success_rate']:>8.1%} {f['wrong_core_writes']:>6} "
                  f"{f['missed_handoffs']:>7} {f['unwanted_handoffs']:>9} {f['avg_turns_per_completed_task']:>6.2f}")
    if args.report:
        print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
