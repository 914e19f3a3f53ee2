"""Alembic migrations of a store, runnable from async code.

Each store keeps its own Alembic environment (``bot/migrations`` and ``core/migrations``) and
its own version table, so a real marketing system can replace the core without touching the
bot's schema and both stores may share one PostgreSQL database. Branches from different
features may coexist; we always upgrade to ``heads``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from common.db import make_engine


def alembic_config(script_location: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(connection: Connection, cfg: Config, target: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, target)


def _downgrade(connection: Connection, cfg: Config, target: str) -> None:
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, target)


async def upgrade(url: str, script_location: Path, target: str = "heads") -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, alembic_config(script_location, url), target)
    finally:
        await engine.dispose()


async def downgrade(url: str, script_location: Path, target: str = "base") -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, alembic_config(script_location, url), target)
    finally:
        await engine.dispose()


def run_env(target_metadata: MetaData, version_table: str) -> None:
    """Body of each store's ``env.py``: use the caller's connection, or open one from the URL."""

    def _run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    async def _main() -> None:
        engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(_main())
