"""Gateway application wiring: the one place that knows every channel.

Startup order matters: database → HTTP session and core client → NLU model → dialogue engine
→ pipeline → channels → outbox worker. Cleanup runs in reverse (aiohttp ``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend_client import CoreClient, CoreError
from bot.db import WalCheckpointer, make_engine, make_sessionmaker
from bot.outbox import OutboxWorker
from bot.pipeline import DialogueHandler, Pipeline
from bot.ratelimit import RateLimiting
from bot.settings import Settings
from channels.base import Channel, ChannelContext

log = logging.getLogger("powerbot.app")

SETTINGS = web.AppKey("settings", Settings)
DB_ENGINE = web.AppKey("db_engine", AsyncEngine)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
HTTP = web.AppKey("http", aiohttp.ClientSession)
CORE = web.AppKey("core", CoreClient)
INTERPRETER = web.AppKey("interpreter", object)
DIALOGUE = web.AppKey("dialogue", object)
PIPELINE = web.AppKey("pipeline", Pipeline)
OUTBOX = web.AppKey("outbox", OutboxWorker)
CHANNELS = web.AppKey("channels", dict[str, Channel])
EXTRAS = web.AppKey("extras", dict[str, Any])

KNOWN_CHANNELS = ("rest", "wechat", "alipay", "sms", "email")

HandlerFactory = Callable[[web.Application], DialogueHandler]


def default_handler_factory(app: web.Application) -> DialogueHandler:
    from bot.dialogue import DialogueEngine

    return DialogueEngine(
        sessionmaker=app[SESSIONMAKER],
        core=app[CORE],
        interpreter=app[INTERPRETER],
        settings=app[SETTINGS],
        payments=app[EXTRAS].get("payments"),
        sender_proofs={name: ch.proves for name, ch in app[CHANNELS].items()},
    )


def build_channels(ctx: ChannelContext) -> dict[str, Channel]:
    """Instantiate every configured channel. A channel without its settings stays off."""
    from channels.rest import RestChannel

    built: list[Channel] = [RestChannel(ctx)]
    for module, factory in _OPTIONAL_CHANNELS:
        try:
            mod = __import__(module, fromlist=[factory])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        channel = getattr(mod, factory)(ctx)
        if channel is not None:
            built.append(channel)
    return {c.name: c for c in built}


# (module, factory) pairs; a factory returns a Channel or None when its settings are missing.
_OPTIONAL_CHANNELS: list[tuple[str, str]] = [
    ("channels.wechat", "from_context"),
    ("channels.alipay", "from_context"),
    ("channels.sms", "from_context"),
    ("channels.email", "from_context"),
]


async def _load_interpreter(settings: Settings) -> object:
    from intents import load_or_train

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: load_or_train(data_dir=str(settings.nlu_data_dir), model_dir=str(settings.nlu_model_dir))
    )


def create_gateway_app(
    settings: Settings,
    *,
    handler_factory: HandlerFactory = default_handler_factory,
    interpreter: object | None = None,
) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    limits = RateLimiting(settings)  # body-size cap, per-IP and per-sender limits (bot/ratelimit.py)
    limits.install(app)
    app[SETTINGS] = settings
    app[EXTRAS] = {}
    # Routes must exist before the router freezes, so channels are built now and their
    # context (database, HTTP session, pipeline) is filled in at startup.
    ctx = ChannelContext(
        settings=settings, processor=None, sessionmaker=None, http=None, core=None,  # type: ignore[arg-type]
        extras=app[EXTRAS],
    )
    channels = build_channels(ctx)
    app[CHANNELS] = channels
    for ch in channels.values():
        app.router.add_routes(list(ch.routes()))

    async def resources(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.bot_db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        app[DB_ENGINE] = engine
        app[SESSIONMAKER] = make_sessionmaker(engine)
        checkpointer = WalCheckpointer(engine)  # SQLite: WAL checkpoints off the event loop
        await checkpointer.start()
        timeout = aiohttp.ClientTimeout(total=settings.core_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            app[HTTP] = http
            core = CoreClient(
                settings.core_base_url, timeout=settings.core_timeout_seconds, session=http, token=settings.core_token()
            )
            app[CORE] = core
            app[INTERPRETER] = interpreter if interpreter is not None else await _load_interpreter(settings)
            handler = handler_factory(app)
            app[DIALOGUE] = handler
            from backend_client import CoreUnavailable

            outbox_holder: list[OutboxWorker] = []
            pipeline = Pipeline(
                app[SESSIONMAKER],
                handler,
                transient_errors=(CoreUnavailable,),
                on_enqueued=lambda: outbox_holder[0].wake() if outbox_holder else None,
            )
            app[PIPELINE] = pipeline
            ctx.processor, ctx.sessionmaker, ctx.http, ctx.core = limits.wrap(pipeline), app[SESSIONMAKER], http, core
            worker = OutboxWorker(app[SESSIONMAKER], channels)
            outbox_holder.append(worker)
            app[OUTBOX] = worker
            for ch in channels.values():
                await ch.start()
            await pipeline.start()
            await worker.start()
            log.info("gateway ready; channels on: %s", ", ".join(sorted(channels)))
            try:
                yield
            finally:
                await worker.stop()
                await pipeline.stop()
                for ch in channels.values():
                    await ch.stop()
                await core.close()
        await checkpointer.stop()
        await engine.dispose()

    app.cleanup_ctx.append(resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for module in _FEATURES:
        try:
            feature = __import__(module, fromlist=["setup"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        # A feature adds its routes now and its background parts as a cleanup_ctx, which
        # runs after `resources`, so the database, core client and outbox already exist.
        feature.setup(app)
    return app


# Gateway features beyond channels: each module has ``setup(app: web.Application) -> None``.
_FEATURES: list[str] = ["bot.console", "bot.notify", "bot.retention"]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, str] = {}
    try:
        async with app[DB_ENGINE].connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=3)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await app[CORE].health()
        checks["core"] = "ok"
    except CoreError as exc:
        checks["core"] = f"error: {type(exc).__name__}"
    on = app[CHANNELS]
    channels = {name: (on[name].readiness() if name in on else {"on": False}) for name in KNOWN_CHANNELS}
    for name in on:
        channels.setdefault(name, on[name].readiness())
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"ready": ready, "checks": checks, "channels": channels}, status=200 if ready else 503
    )
