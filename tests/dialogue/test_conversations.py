"""The conversation suites as part of ``make test`` (the format in tests/conversations/README.md):
tests/conversations/ and tests/conversations_holdout/ (a second set, written later by another
writer who saw neither the first set nor the code). Every file must load (an unknown key, a
duplicate id or placeholder fails this test whatever the pass rate), then all conversations
run on one embedded stack with the clock pinned, no conversation may write anything wrong into
the core, and each suite's pass rate must reach its THRESHOLD (a one-line number, 0 to 1).
The report (failed_conversations.yml, results.json) is written to a temporary directory whose
path is printed; ``powerbot test conversations --report DIR`` writes the same files.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.testing import report as rep
from bot.testing.run import run
from bot.testing.spec import load

TESTS = Path(__file__).resolve().parents[1]


def threshold(suite: Path) -> float:
    value = float((suite / "THRESHOLD").read_text(encoding="utf-8").strip())
    assert 0.0 <= value <= 1.0, f"{suite}/THRESHOLD must be between 0 and 1, not {value}"
    return value


@pytest.mark.parametrize("name", ["conversations", "conversations_holdout"])
def test_conversation_suite(name, interpreter, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    SUITE = TESTS / name
    files = sorted(SUITE.glob("*.yml")) + sorted(SUITE.glob("*.yaml"))
    assert files, f"no conversation files in {SUITE}"
    conversations = load(files)  # a SpecError here fails the test: the suite must load
    assert conversations
    need = threshold(SUITE)
    out = tmp_path_factory.mktemp("conversation-report")
    started = time.perf_counter()
    results = run(conversations, interpreter=interpreter)
    seconds = time.perf_counter() - started
    rep.write_report(results, out, extra={"wall_seconds": round(seconds, 2)})
    rep.print_summary(results, show_failures=False)
    s = rep.summary(results)
    print(f"{len(conversations)} conversations in {seconds:.1f}s; report: {out}")
    assert s["total"], "every conversation is skipped"
    wrong = [r.conversation.id for r in results if r.wrong_write]
    assert wrong == [], f"conversations that wrote something wrong into the core: {wrong}"
    assert s["pass_rate"] >= need, (
        f"pass rate {s['pass_rate']:.1%} is below {SUITE}/THRESHOLD ({need:.1%}); "
        f"failed conversations: {out / 'failed_conversations.yml'}")
