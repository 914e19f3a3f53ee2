"""Start the real core and the real gateway on loopback for end-to-end tests.

Nothing is mocked: the gateway talks to the core over HTTP through backend_client, and
tests talk to the gateway over HTTP like a platform would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.migrate import BOT_MIGRATIONS, CORE_MIGRATIONS, upgrade
from bot.settings import Settings


def port_of(runner: web.AppRunner) -> int:
    return runner.addresses[0][1]


@dataclass
class CoreServer:
    url: str  # base URL without /api/v1
    app: web.Application
    runner: web.AppRunner


@dataclass
class Gateway:
    url: str
    app: web.Application
    runner: web.AppRunner
    settings: Settings


@asynccontextmanager
async def run_core(
    db_url: str, *, seed: bool = True, port: int = 0, token: str | None = None
) -> AsyncIterator[CoreServer]:
    from core.app import create_core_app

    await upgrade(db_url, CORE_MIGRATIONS)
    app = create_core_app(db_url, seed=seed, token=token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield CoreServer(url=f"http://127.0.0.1:{port_of(runner)}", app=app, runner=runner)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def run_gateway(
    db_url: str,
    core_url: str,
    interpreter: object,
    *,
    data_dir: Path | None = None,
    port: int = 0,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    from bot.app import create_gateway_app

    await upgrade(db_url, BOT_MIGRATIONS)
    settings = Settings(
        database_url=db_url,
        core_url=core_url,
        data_dir=data_dir or Path("./var"),
        port=port or 8080,  # Settings refuses 0; the real port is the bound one below
        **overrides,
    )
    app = create_gateway_app(settings, interpreter=interpreter)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Gateway(url=f"http://127.0.0.1:{port_of(runner)}", app=app, runner=runner, settings=settings)
    finally:
        await runner.cleanup()


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
