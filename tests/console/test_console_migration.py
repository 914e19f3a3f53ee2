"""Migration bot_0007_console matches the console models, up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from bot.console import models  # noqa: F401 - registers the console tables on Base
from bot.db import make_engine
from bot.migrate import BOT_MIGRATIONS, downgrade, upgrade
from bot.models import Base


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    return request.getfixturevalue("postgres_url")


def _console_diffs(conn) -> list:  # type: ignore[no-untyped-def]
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    diffs = compare_metadata(ctx, Base.metadata)
    out = []
    for d in diffs:
        flat = d if isinstance(d, tuple) else d[0]
        text = repr(flat)
        if "console_" in text:
            out.append(d)
    return out


async def test_console_migration_matches_models(store_url: str) -> None:
    await upgrade(store_url, BOT_MIGRATIONS)
    engine = make_engine(store_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert {"console_agents", "console_sessions", "console_audit", "console_messages",
                    "console_satisfaction", "console_callback_offers", "console_canned"} <= tables
            assert await conn.run_sync(_console_diffs) == []
            # bot_0019_console_canned seeds the canned responses agents then edit in the console
            shortcuts = set((await conn.exec_driver_sql("SELECT shortcut FROM console_canned")).scalars())
            assert {"hello", "wait", "repair", "ticket", "paid", "bye"} == shortcuts
    finally:
        await engine.dispose()
    await downgrade(store_url, BOT_MIGRATIONS, "bot_0001")
    engine = make_engine(store_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not any(t.startswith("console_") for t in tables)
    finally:
        await engine.dispose()
