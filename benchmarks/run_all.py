"""Run every benchmark of this directory one after another with short arguments, and print
their figures (each benchmark's own output) and a summary: ``make bench``.

    .venv/bin/python benchmarks/run_all.py [--only nlu,dialogue] [--pg URL | --no-pg] [--list]

The arguments are chosen to finish in a few minutes on a small box, not to give the figures of
record: run a benchmark on its own, with its defaults, for those. Benchmarks that need
PostgreSQL run on ``--pg`` (default POWERBOT_TEST_DATABASE_URL, else the local server); when it
cannot be reached they run on SQLite alone or are skipped (said in the summary).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...]  # always
    pg_args: tuple[str, ...] | None  # with PostgreSQL; None: the benchmark does not use it
    sqlite_args: tuple[str, ...] | None = ()  # without PostgreSQL; None: cannot run without it


def benchmarks(pg: str) -> list[Bench]:
    """Each benchmark with short arguments (see its ``--help``)."""
    return [
        Bench("nlu", "nlu_bench.py", ("--rounds", "1"), None),
        Bench("dialogue", "dialogue_bench.py", ("--conversations", "10", "--rounds", "1"),
              ("--pg", pg), ("--no-pg",)),
        Bench("wechat", "wechat_bench.py",
              ("--seconds", "3", "--concurrency", "50", "--paced", "0", "--rounds", "1"), None),
        Bench("notify", "notify_bench.py", ("--subscribers", "5000", "--batch", "1000"),
              ("--backend", "sqlite,postgres", "--pg-url", pg), ("--backend", "sqlite")),
        Bench("load", "load_bench.py",
              ("--workers", "1", "2", "--customers", "100", "--messages", "2", "--run-timeout", "30"),
              ("--pg", pg), None),
    ]


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether the PostgreSQL server of a SQLAlchemy URL accepts TCP connections."""
    parts = urlsplit(url.replace("postgresql+asyncpg", "postgresql", 1))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=timeout):
            return True
    except OSError:
        return False


def command(bench: Bench, with_pg: bool) -> list[str] | None:
    """The command line of a benchmark, or None when it cannot run (it needs PostgreSQL)."""
    extra = bench.pg_args if (with_pg and bench.pg_args is not None) else bench.sqlite_args
    if extra is None:
        return None
    return [sys.executable, str(HERE / bench.script), *bench.args, *extra]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--pg", default=os.environ.get("POWERBOT_TEST_DATABASE_URL", DEFAULT_PG),
                    help="PostgreSQL for the benchmarks that use it")
    ap.add_argument("--no-pg", action="store_true", help="do not use PostgreSQL (skips what needs it)")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    args = ap.parse_args(argv)

    todo = benchmarks(args.pg)
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {b.name for b in todo}
        if unknown:
            ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(b.name for b in todo)}")
        todo = [b for b in todo if b.name in wanted]
    with_pg = not args.no_pg and (args.list or reachable(args.pg))

    if args.list:
        for b in todo:
            cmd = command(b, with_pg)
            print(f"{b.name:9s} " + (" ".join(cmd[1:]) if cmd else "(skipped: needs PostgreSQL)"))
        return 0

    if not with_pg and not args.no_pg:
        print(f"PostgreSQL at {args.pg} is not reachable: SQLite only", flush=True)
    summary: list[tuple[str, str, float]] = []
    for b in todo:
        cmd = command(b, with_pg)
        if cmd is None:
            summary.append((b.name, "skipped (needs PostgreSQL)", 0.0))
            continue
        print(f"\n=== {b.name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)  # its figures go straight to this output
        summary.append((b.name, "ok" if rc == 0 else f"failed (exit {rc})", time.perf_counter() - t0))

    print("\n=== summary")
    for name, status, seconds in summary:
        print(f"  {name:9s} {status:28s} {seconds:7.1f}s")
    return 0 if all(s in ("ok",) or s.startswith("skipped") for _, s, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
