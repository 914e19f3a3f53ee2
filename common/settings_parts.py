"""Rules the gateway's and the core's settings share, written once so the two cannot drift:
the core reads the token the gateway's ``powerbot run`` wrote, and both accept the same levels."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

CORE_TOKEN_FILE = "core_api_token"  # under the data directory, written by `powerbot run`
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def log_level(value: str) -> str:
    """A logging level name, upper-cased; ValueError for anything else."""
    value = value.upper()
    if value not in LOG_LEVELS:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return value


def core_token(configured: SecretStr | None, data_dir: Path) -> str | None:
    """POWERBOT_CORE_API_TOKEN, else the token `powerbot run` keeps under the data directory,
    so the CLI, the core and a restarted run use the same one."""
    if configured is not None:
        return configured.get_secret_value()
    try:
        return (data_dir / CORE_TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
