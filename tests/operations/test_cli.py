"""`powerbot db upgrade` brings both stores to the newest schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def _run(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def _tables(url: str) -> set[str]:
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        # No sync PG driver is installed; ask asyncpg directly.
        import asyncio

        import asyncpg

        async def names() -> set[str]:
            conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False))
            try:
                rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            finally:
                await conn.close()
            return {r["tablename"] for r in rows}

        return asyncio.run(names())
    engine = sa.create_engine(u.set(drivername="sqlite"))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_on_sqlite_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = _run({"POWERBOT_DATA_DIR": str(tmp_path)}, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    bot = _tables(f"sqlite:///{tmp_path / 'bot.db'}")
    core = _tables(f"sqlite:///{tmp_path / 'core.db'}")
    assert {"inbound_messages", "outbox", "conversation_leases", "alembic_version_bot"} <= bot
    assert {"accounts", "bills", "work_orders", "alembic_version_core"} <= core
    # Idempotent: a second run changes nothing and still succeeds.
    assert _run({"POWERBOT_DATA_DIR": str(tmp_path)}, "db", "upgrade").returncode == 0


def test_db_upgrade_on_postgresql_one_database_for_both_stores(postgres_url: str) -> None:
    proc = _run({"POWERBOT_DATABASE_URL": postgres_url, "POWERBOT_CORE_DATABASE_URL": postgres_url}, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    tables = _tables(postgres_url)
    assert {"inbound_messages", "outbox", "accounts", "bills", "alembic_version_bot", "alembic_version_core"} <= tables


def test_serving_process_freezes_startup_objects_and_collects_less_often() -> None:
    """``tune_gc`` (called by ``powerbot serve`` and ``make run`` once the gateway is up), in
    a process of its own: what exists then is frozen out of later collections, the young
    generation waits for 10,000 allocations, and garbage made later is still collected."""
    code = (
        "import gc, weakref\n"
        "from bot.runner import GC_THRESHOLDS, tune_gc\n"
        "kept = [[i] for i in range(5000)]\n"
        "tune_gc()\n"
        "assert gc.get_threshold() == GC_THRESHOLDS == (10000, 20, 20), gc.get_threshold()\n"
        "assert gc.get_freeze_count() >= 5000, gc.get_freeze_count()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.b, b.a = b, a; gone = weakref.ref(a); del a, b\n"
        "assert gone() is not None\n"
        "gc.collect()\n"
        "assert gone() is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
