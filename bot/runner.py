"""Process entry points: the gateway alone, or the embedded default (core + gateway)."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from bot.logs import setup_logging
from bot.migrate import BOT_MIGRATIONS, CORE_MIGRATIONS, upgrade
from bot.settings import Settings

log = logging.getLogger("powerbot")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover
            pass
    await stop.wait()


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def serve_gateway(settings: Settings) -> None:
    from bot.app import create_gateway_app

    setup_logging(settings.log_level, settings.log_json)
    await upgrade(settings.bot_db_url, BOT_MIGRATIONS)
    runner = await start_site(create_gateway_app(settings), settings.host, settings.port)
    print(f"powerbot gateway on http://{settings.host}:{settings.port}  (core: {settings.core_base_url})", flush=True)
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


async def run_all(settings: Settings) -> None:
    """The embedded default that ``make run`` starts: SQLite, demo data, both apps."""
    from bot.app import create_gateway_app
    from core.app import create_core_app

    setup_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.core_db_url, CORE_MIGRATIONS)
    await upgrade(settings.bot_db_url, BOT_MIGRATIONS)
    core_runner = await start_site(
        create_core_app(settings.core_db_url, seed=settings.demo_seed), settings.core_host, settings.core_port
    )
    gw_runner = await start_site(create_gateway_app(settings), settings.host, settings.port)
    base = f"http://{settings.host}:{settings.port}"
    print(
        "\n".join(
            [
                "powerbot is running (embedded default: SQLite under "
                f"{settings.data_dir}, demo data, trained NLU model)",
                f"  web chat       {base}/chat",
                f"  agent console  {base}/console",
                f"  REST channel   POST {base}/webhooks/rest/webhook",
                f"  health         {base}/healthz   {base}/readyz",
                f"  core API       {settings.core_base_url}/api/v1  (OpenAPI: /api/v1/openapi.json)",
                "Press Ctrl+C to stop.",
            ]
        ),
        flush=True,
    )
    try:
        await _wait_for_signal()
    finally:
        await gw_runner.cleanup()
        await core_runner.cleanup()
