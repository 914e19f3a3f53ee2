"""The core's Alembic migration applies on SQLite and on PostgreSQL, round-trips, and matches
the models (no drift between ``core/models.py`` and ``0001_core_initial``)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from bot.db import make_engine
from bot.migrate import CORE_MIGRATIONS, downgrade, upgrade
from core.models import Base

TABLES = {
    "accounts", "account_bindings", "bills", "payments", "outages", "work_orders", "halls", "slots",
    "appointments", "tariffs", "subscriptions", "events",
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


async def _state(url: str) -> tuple[set[str], str | None, list]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            version = None
            if "alembic_version_core" in tables:
                version = (await conn.execute(text("SELECT version_num FROM alembic_version_core"))).scalar()

            def _diff(c):
                ctx = MigrationContext.configure(c, opts={"compare_type": True, "version_table": "alembic_version_core"})
                return compare_metadata(ctx, Base.metadata)

            diff = await conn.run_sync(_diff) if TABLES <= tables else []
        return tables, version, diff
    finally:
        await engine.dispose()


async def test_core_migrations_apply_and_roundtrip(url):
    await upgrade(url, CORE_MIGRATIONS)
    tables, version, diff = await _state(url)
    assert TABLES <= tables
    assert version == "0002_core_payment_credit"
    assert diff == [], diff  # models and migration agree
    await upgrade(url, CORE_MIGRATIONS)  # idempotent
    await downgrade(url, CORE_MIGRATIONS, "base")
    tables, version, _ = await _state(url)
    assert not (TABLES & tables) and version is None
    await upgrade(url, CORE_MIGRATIONS)
    tables, version, _ = await _state(url)
    assert TABLES <= tables and version == "0002_core_payment_credit"


async def test_unique_constraints_exist(url):
    await upgrade(url, CORE_MIGRATIONS)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            def _uniques(c):
                insp = inspect(c)
                out = {}
                for t in ("payments", "work_orders", "appointments", "bills", "subscriptions", "account_bindings"):
                    cols = [tuple(u["column_names"]) for u in insp.get_unique_constraints(t)]
                    cols += [tuple(i["column_names"]) for i in insp.get_indexes(t) if i.get("unique")]
                    out[t] = cols
                return out

            u = await conn.run_sync(_uniques)
    finally:
        await engine.dispose()
    assert ("out_trade_no",) in u["payments"]
    assert ("idempotency_key",) in u["work_orders"]
    assert ("idempotency_key",) in u["appointments"]
    assert ("account_number", "month") in u["bills"]
    assert ("account_number", "topic", "channel", "identity") in u["subscriptions"]
    assert ("account_number", "channel", "identity") in u["account_bindings"]
