"""The core's configuration: the few ``POWERBOT_*`` variables the reference core reads.

The names are the gateway's (one settings table for an operator, README); the core reads only
its own and leaves the rest to the gateway, which also refuses unknown ``POWERBOT_`` variables
before any ``powerbot core`` command runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings_parts import core_token, log_level


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POWERBOT_", extra="ignore", case_sensitive=False)

    core_host: str = "127.0.0.1"
    core_port: int = Field(8081, ge=1, le=65535)
    data_dir: Path = Path("./var")
    core_database_url: str | None = None  # default sqlite under data_dir
    db_pool_size: int = Field(16, ge=1, le=200)
    db_max_overflow: int = Field(0, ge=0, le=200)
    log_level: str = "INFO"
    log_json: bool = False
    # bearer token every /api/v1 call but health and the OpenAPI document must carry
    core_api_token: SecretStr | None = None
    # extra years of public holidays / adjusted working days (YAML, format in core/work_calendar.py)
    work_calendar_file: Path | None = None
    demo_seed: bool = True  # seed demo data into an empty store

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        return log_level(v)

    @property
    def core_db_url(self) -> str:
        return self.core_database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'core.db').resolve()}"

    def core_token(self) -> str | None:
        """POWERBOT_CORE_API_TOKEN, else the token `powerbot run` keeps under the data directory."""
        return core_token(self.core_api_token, self.data_dir)


def load_core_settings() -> CoreSettings:
    """Read the environment afresh: the core reads it once per start, so nothing is cached."""
    return CoreSettings()
