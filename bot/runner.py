"""Process entry points: the gateway alone, or the embedded default (core + gateway)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from aiohttp import web

from bot.logs import setup_logging
from bot.migrate import BOT_MIGRATIONS, CORE_MIGRATIONS, upgrade
from bot.settings import Settings

log = logging.getLogger("powerbot")

# CPython collects its young generation every 700 net container allocations: every couple of
# requests here, and each young collection that promotes survivors makes the older ones due
# sooner. Measured on the WeChat benchmark (200 conversations): collections took 0.26 ms of
# CPU per message with the defaults, 0.02 ms with these, the young collections at ~10 ms each
# every few hundred messages.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """For a serving process, once it has started: what startup built (the NLU model, compiled
    statements, the app) lives as long as the process, so it is collected once and frozen out
    of every later collection; then the young generation is collected less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover
            pass
    await stop.wait()


async def start_site(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    return runner


async def serve_gateway(settings: Settings, *, reuse_port: bool = False, migrate: bool = True) -> None:
    from bot.app import create_gateway_app

    setup_logging(settings.log_level, settings.log_json)
    if migrate:
        await upgrade(settings.bot_db_url, BOT_MIGRATIONS)
    runner = await start_site(create_gateway_app(settings), settings.host, settings.port, reuse_port=reuse_port)
    tune_gc()
    print(
        f"powerbot gateway pid={os.getpid()} on http://{settings.host}:{settings.port}  "
        f"(core: {settings.core_base_url})",
        flush=True,
    )
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


def _worker_main(settings: Settings) -> None:
    asyncio.run(serve_gateway(settings, reuse_port=True, migrate=False))


def serve_workers(settings: Settings, workers: int) -> None:
    """Run N gateway processes sharing one port (SO_REUSEPORT); the kernel spreads connections.

    All shared state lives in the database (and Redis when configured), so any process can
    take any request: conversation leases keep one conversation in one process at a time.

    Metrics: the workers share a fresh ``PROMETHEUS_MULTIPROC_DIR`` (made here, removed on
    exit), so whichever worker answers ``/metrics`` reports the totals of all of them; a
    worker's live gauges are dropped when it exits (``mark_process_dead``).
    """
    import multiprocessing as mp
    import shutil
    import tempfile
    from multiprocessing.connection import wait

    from prometheus_client import multiprocess

    asyncio.run(upgrade(settings.bot_db_url, BOT_MIGRATIONS))
    metrics_dir = tempfile.mkdtemp(prefix="powerbot-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(settings,), name=f"gateway-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def _forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)  # type: ignore[arg-type]

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    try:
        running = {p.sentinel: p for p in procs}
        while running:
            for sentinel in wait(list(running)):
                p = running.pop(sentinel)  # type: ignore[call-overload]
                p.join()
                multiprocess.mark_process_dead(p.pid, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def run_all(settings: Settings) -> None:
    """The embedded default that ``make run`` starts: SQLite, demo data, both apps."""
    from bot.app import create_gateway_app
    from core.app import create_core_app

    setup_logging(settings.log_level, settings.log_json)
    if settings.payment_sandbox is None:  # the demo core takes demo payments (payments/sandbox.py)
        settings = settings.model_copy(update={"payment_sandbox": settings.demo_seed})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.core_db_url, CORE_MIGRATIONS)
    await upgrade(settings.bot_db_url, BOT_MIGRATIONS)
    core_runner = await start_site(
        create_core_app(settings.core_db_url, seed=settings.demo_seed, token=settings.ensure_core_token()),
        settings.core_host, settings.core_port,
    )
    gw_runner = await start_site(create_gateway_app(settings), settings.host, settings.port)
    tune_gc()
    base = f"http://{settings.host}:{settings.port}"
    print(
        "\n".join(
            [
                "powerbot is running (embedded default: SQLite under "
                f"{settings.data_dir}, demo data, trained NLU model)",
                f"  web chat       {base}/chat",
                f"  agent console  {base}/console   (create a login: .venv/bin/powerbot agents add NAME --role supervisor)",
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
