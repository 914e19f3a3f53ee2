"""Migrations of the bot store, and of the embedded core store when the gateway runs one.

The Alembic runner itself is ``common.migrate`` (each store has its own environment and
version table); the core's script location comes from the core.
"""

from __future__ import annotations

from pathlib import Path

from common.migrate import alembic_config, downgrade, run_env, upgrade  # noqa: F401 - the bot's migration API
from core.store import CORE_MIGRATIONS

BOT_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def upgrade_all(bot_url: str, core_url: str | None) -> None:
    """Bring the bot store (and the embedded core store, when given) to the newest schema."""
    await upgrade(bot_url, BOT_MIGRATIONS)
    if core_url:
        await upgrade(core_url, CORE_MIGRATIONS)
