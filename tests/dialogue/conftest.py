"""The dialogue tests' core (one per module, in its own thread) and a fresh gateway per test."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.chat import CoreThread
from tests.stack import run_gateway


@pytest.fixture(scope="module")
def core_url(tmp_path_factory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("core")
    core = CoreThread(f"sqlite+aiosqlite:///{d / 'core.db'}")
    yield core.start()
    core.stop()


@pytest.fixture
async def gw(core_url, interpreter, tmp_path):
    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core_url, interpreter, data_dir=tmp_path) as g:
        async with aiohttp.ClientSession() as http:
            g.http = http  # type: ignore[attr-defined]
            yield g
