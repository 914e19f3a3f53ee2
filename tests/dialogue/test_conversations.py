"""The conversation suite (tests/conversations/*.yml, the format in its README.md) as part of
``make test``: every file must load (an unknown key, a duplicate id or placeholder fails this
test whatever the pass rate), then all conversations run on one embedded stack with the clock
pinned and the pass rate must reach tests/conversations/THRESHOLD (a one-line number, 0 to 1).
The report (failed_conversations.yml, results.json) is written to a temporary directory whose
path is printed; ``powerbot test conversations --report DIR`` writes the same files.
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.testing import report as rep
from bot.testing.run import run
from bot.testing.spec import load

SUITE = Path(__file__).resolve().parents[1] / "conversations"


def threshold() -> float:
    value = float((SUITE / "THRESHOLD").read_text(encoding="utf-8").strip())
    assert 0.0 <= value <= 1.0, f"tests/conversations/THRESHOLD must be between 0 and 1, not {value}"
    return value


def test_conversation_suite(interpreter, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    files = sorted(SUITE.glob("*.yml")) + sorted(SUITE.glob("*.yaml"))
    assert files, f"no conversation files in {SUITE}"
    conversations = load(files)  # a SpecError here fails the test: the suite must load
    assert conversations
    need = threshold()
    out = tmp_path_factory.mktemp("conversation-report")
    started = time.perf_counter()
    results = run(conversations, interpreter=interpreter)
    seconds = time.perf_counter() - started
    rep.write_report(results, out, extra={"wall_seconds": round(seconds, 2)})
    rep.print_summary(results, show_failures=False)
    s = rep.summary(results)
    print(f"{len(conversations)} conversations in {seconds:.1f}s; report: {out}")
    assert s["total"], "every conversation is skipped"
    assert s["pass_rate"] >= need, (
        f"pass rate {s['pass_rate']:.1%} is below tests/conversations/THRESHOLD ({need:.1%}); "
        f"failed conversations: {out / 'failed_conversations.yml'}")
