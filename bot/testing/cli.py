"""``powerbot test conversations [FILES...] --report DIR`` (Rasa's ``rasa test e2e``)."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

DEFAULT_FILES = ("tests/conversations",)


@click.group("test")
def test() -> None:
    """Test the assistant with conversations written in YAML (tests/conversations/README.md)."""


@test.command("conversations")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write failed_conversations.yml and results.json here.")
@click.option("--min-pass", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Exit 1 when the pass rate is below this (0 to 1; 0: report only).")
@click.option("--only", "only", multiple=True, help="Run only conversations with this id (repeatable).")
@click.option("--now", "now", default=None,
              help="Pin the clock here instead of the default moment (ISO 8601 with offset).")
@click.option("--quiet", "-q", is_flag=True, help="Do not list each failed conversation.")
@click.option("--verbose", "-v", is_flag=True, help="Show the services' log on stderr (else: REPORT/services.log).")
def conversations(files: tuple[Path, ...], report_dir: Path | None, min_pass: float, only: tuple[str, ...],
                  now: str | None, quiet: bool, verbose: bool) -> None:
    """Run conversation tests (default: tests/conversations) against the embedded default:
    a real core with the demo data and a real gateway with the trained NLU, on SQLite, the
    clock pinned. Prints the pass rate, per intent and per language."""
    from .report import print_summary, write_report
    from .run import PINNED_NOW, run
    from .spec import SpecError, load

    try:
        convs = load(list(files or DEFAULT_FILES))
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    if only:
        convs = [c for c in convs if c.id in set(only)]
    if not convs:
        raise click.ClickException("no conversations to run")
    moment = PINNED_NOW
    if now:
        moment = datetime.fromisoformat(now)
        if moment.tzinfo is None:
            raise click.BadParameter("give an offset, e.g. 2026-03-10T10:00:00+08:00", param_hint="--now")
    try:
        import time_machine  # noqa: F401
    except ImportError:
        raise click.ClickException("conversation tests pin the clock with time-machine: pip install -e '.[dev]'") from None

    _route_logs(report_dir, verbose)
    click.echo(f"running {len(convs)} conversations (clock pinned at {moment.isoformat()}) ...", err=True)
    started = time.perf_counter()
    n = [0]

    def progress(_result: object) -> None:
        n[0] += 1
        if sys.stderr.isatty():
            click.echo(f"\r{n[0]}/{len(convs)}", nl=False, err=True)

    results = run(convs, now=moment, progress=progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    print_summary(results, click.echo, show_failures=not quiet)
    click.echo(f"wall time {time.perf_counter() - started:.1f}s")
    if report_dir is not None:
        write_report(results, report_dir, extra={"pinned_now": moment.isoformat()})
        click.echo(f"report: {report_dir / 'failed_conversations.yml'}, {report_dir / 'results.json'}")
    ran = [r for r in results if not r.skipped]
    rate = sum(r.passed for r in ran) / len(ran) if ran else 0.0
    if rate < min_pass:
        click.echo(f"pass rate {rate:.1%} is below --min-pass {min_pass:.1%}", err=True)
        sys.exit(1)


def _route_logs(report_dir: Path | None, verbose: bool) -> None:
    """The core's and the gateway's warnings (a postponed turn's traceback...) go to
    ``REPORT/services.log``, not between the results; ``--verbose`` shows them."""
    import logging

    root = logging.getLogger()
    if verbose:
        logging.basicConfig(level=logging.WARNING)
        return
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(report_dir / "services.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler.setLevel(logging.WARNING)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
