"""Alembic environment of the bot store (conversations, inbox, outbox, console...)."""

from bot.models import Base
from common.migrate import run_env

run_env(Base.metadata, version_table="alembic_version_bot")
