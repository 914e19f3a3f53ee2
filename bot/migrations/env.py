"""Alembic environment of the bot store (conversations, inbox, outbox, console...)."""

from bot.migrate import run_env
from bot.models import Base

run_env(Base.metadata, version_table="alembic_version_bot")
