"""The core API behind a shared bearer token: refused without it, used by every gateway call."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from backend_client import CoreClient, CoreError
from bot.settings import Settings
from tests.stack import run_core, run_gateway

TOKEN = "core-test-token-3f9a1c"


async def test_core_refuses_calls_without_the_token(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with run_core(sqlite_url, token=TOKEN) as core, aiohttp.ClientSession() as http:
        url = f"{core.url}/api/v1/accounts/3100000001"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 401, headers
                assert resp.content_type == "application/problem+json"
                assert (await resp.json())["status"] == 401
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["account_number"] == "3100000001"
        # load balancers and API readers need no token; the API health check does
        async with http.get(f"{core.url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{core.url}/api/v1/openapi.json") as resp:
            assert resp.status == 200
        async with http.get(f"{core.url}/api/v1/healthz") as resp:
            assert resp.status == 401
    assert "core API call refused" in caplog.text
    assert TOKEN not in caplog.text and "3100000001" not in caplog.text  # no secret, no account number


async def test_client_with_and_without_the_token(sqlite_url: str) -> None:
    async with run_core(sqlite_url, token=TOKEN) as core:
        async with CoreClient(core.url, token=TOKEN, retries=0) as good:
            assert (await good.health()).status == "ok"
            assert (await good.get_account("3100000001")).account_number == "3100000001"
        async with CoreClient(core.url, retries=0) as anonymous:
            with pytest.raises(CoreError) as err:
                await anonymous.get_account("3100000001")
            assert err.value.status == 401
            with pytest.raises(CoreError):
                await anonymous.health()  # so a gateway with a wrong token is not ready


async def test_gateway_uses_the_token_and_readyz_tells_a_wrong_one(sqlite_url: str, tmp_path: Path, interpreter: object) -> None:
    core_db = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    async with run_core(core_db, token=TOKEN) as core, aiohttp.ClientSession() as http:
        async with run_gateway(sqlite_url, core.url, interpreter, data_dir=tmp_path / "a", core_api_token=TOKEN) as gw:
            async with http.get(f"{gw.url}/readyz") as resp:
                assert resp.status == 200, await resp.text()
            turns = []
            for text in ("查电费", "3100000002", "9000"):
                async with http.post(f"{gw.url}/webhooks/rest/webhook",
                                     json={"sender": "auth-user", "message": text}) as resp:
                    assert resp.status == 200
                    turns.append(" ".join(r.get("text", "") for r in await resp.json()))
            assert "元" in turns[-1], turns  # the bill came from the core, through the token
        async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", core.url, interpreter,
                               data_dir=tmp_path / "b", core_api_token="not-the-token") as gw:
            async with http.get(f"{gw.url}/readyz") as resp:
                assert resp.status == 503
                assert "core" in await resp.text()


def test_embedded_run_keeps_one_private_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERBOT_CORE_API_TOKEN", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.core_token() is None
    token = s.ensure_core_token()
    assert len(token) >= 32
    mode = stat.S_IMODE(os.stat(s.core_token_file).st_mode)
    assert mode == 0o600
    assert Settings(data_dir=tmp_path).core_token() == token  # the CLI finds the same one
    assert s.ensure_core_token() == token  # reused, not replaced
    assert Settings(data_dir=tmp_path, core_api_token="from-env").core_token() == "from-env"
    assert "from-env" not in str(Settings(data_dir=tmp_path, core_api_token="from-env").safe_dump())
