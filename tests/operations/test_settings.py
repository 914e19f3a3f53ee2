"""Settings fail loudly and name the variable; secrets never appear in dumps or logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from bot.logs import PiiFilter, mask_account, mask_address, mask_phone, mask_text
from bot.settings import SettingsError, load_settings


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.port == 8080 and s.core_port == 8081
    assert s.bot_db_url.startswith("sqlite+aiosqlite:///") and s.bot_db_url.endswith("var/bot.db")
    assert s.core_base_url == "http://127.0.0.1:8081"


def test_unknown_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBOT_PROT", "9000")
    with pytest.raises(SettingsError, match="POWERBOT_PROT"):
        load_settings()


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBOT_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="POWERBOT_PORT"):
        load_settings()
    monkeypatch.setenv("POWERBOT_PORT", "70000")
    with pytest.raises(SettingsError, match="POWERBOT_PORT"):
        load_settings()


def test_secrets_are_masked_in_safe_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBOT_WECHAT_SECRET", "topsecret-value")
    monkeypatch.setenv("POWERBOT_DATABASE_URL", "postgresql+asyncpg://bot:hunter2@db.internal/powerbot")
    dump = repr(load_settings().safe_dump())
    assert "topsecret-value" not in dump and "hunter2" not in dump
    assert "db.internal/powerbot" in dump


def test_cli_refuses_bad_settings_with_clear_message() -> None:
    env = {**os.environ, "POWERBOT_LOG_LEVEL": "LOUD"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "POWERBOT_LOG_LEVEL" in proc.stderr


def test_pii_masking_helpers() -> None:
    assert mask_phone("13800138000") == "138****8000"
    assert mask_account("3100000001") == "31******01"
    assert mask_address("上海市浦东新区世纪大道100号") == "上海市浦东新区***"
    masked = mask_text("户号3100000001，手机+86 13800138000，工单WO202611260001")
    assert "3100000001" not in masked and "13800138000" not in masked
    assert "WO202611260001" in masked


@pytest.mark.parametrize("text,secret,kept", [
    ("浦东新区张江路100号停电了", "张江路100号", "浦东新区"),
    ("地址：上海市徐汇区漕溪北路88号3楼301室", "漕溪北路88号", "徐汇区"),
    ("my address is 100 Zhangjiang Road, Pudong", "100 Zhangjiang Road", "my address is"),
    ("from zhang.wei@example.com", "zhang.wei@", "example.com"),
    ("身份证310101199001011234", "19900101", "310101"),
    ("工单WO202611260001已派单", None, "WO202611260001"),
    ("走路去营业厅要多久", None, "走路去营业厅"),
])
def test_free_text_addresses_emails_and_ids_are_masked(text: str, secret: str | None, kept: str) -> None:
    masked = mask_text(text)
    assert kept in masked
    if secret:
        assert secret not in masked


def test_json_logs_are_valid_json_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from bot.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", json_format=True)
        logging.getLogger("powerbot.test").warning('customer said "停电了" at %s', "浦东新区张江路100号, 13912345678")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and '"停电了"' in doc["msg"]
    assert "张江路100号" not in line and "13912345678" not in line


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("powerbot.test")
    handler = logging.Handler()
    records: list[str] = []
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    handler.addFilter(PiiFilter())
    logger.addHandler(handler)
    try:
        logger.warning("customer %s account %s", "13912345678", "3101234567")
    finally:
        logger.removeHandler(handler)
    assert records and "13912345678" not in records[0] and "3101234567" not in records[0]
