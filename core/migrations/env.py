"""Alembic environment of the core store (accounts, bills, payments, outages, work orders...)."""

from common.migrate import run_env
from core.models import Base

run_env(Base.metadata, version_table="alembic_version_core")
