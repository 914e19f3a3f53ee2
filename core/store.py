"""The core's storage: its engine, its sessions and its schema.

The core's tables are migrated by its own Alembic environment (``core/migrations``, version
table ``alembic_version_core``); the gateway only calls ``migrate`` when it embeds the core.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import make_engine, make_sessionmaker
from common.migrate import upgrade

CORE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def open_store(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """An engine for the core store and its session factory (dispose the engine when done)."""
    engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
    return engine, make_sessionmaker(engine)


async def migrate(url: str, target: str = "heads") -> None:
    """Bring the core store to its newest schema (or to ``target``)."""
    await upgrade(url, CORE_MIGRATIONS, target)
