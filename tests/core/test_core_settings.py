"""The core reads its own settings, under the gateway's variable names: an operator sets each
POWERBOT_* variable once and both services see the same value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from core.settings import CoreSettings


def test_every_core_setting_is_a_gateway_setting_with_the_same_default() -> None:
    for name, field in CoreSettings.model_fields.items():
        assert name in Settings.model_fields, name
        assert Settings.model_fields[name].default == field.default, name


def test_both_read_the_same_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POWERBOT_DB_POOL_SIZE", "7")
    monkeypatch.setenv("POWERBOT_SMS_SENDER", "12345")  # a gateway setting: the core ignores it
    core, gateway = CoreSettings(), Settings()
    assert core.core_db_url == gateway.core_db_url and core.db_pool_size == gateway.db_pool_size == 7
    assert core.core_token() is None
    token = gateway.ensure_core_token()  # what `powerbot run` does before starting the core
    assert CoreSettings().core_token() == token == gateway.core_token()
    monkeypatch.setenv("POWERBOT_CORE_API_TOKEN", "from-env")
    assert CoreSettings().core_token() == Settings().core_token() == "from-env"
