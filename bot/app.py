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
from bot.channel_store import BotChannelStore
from bot.db import WalCheckpointer, make_engine, make_sessionmaker
from bot.outbox import OutboxWorker
from bot.pipeline import DialogueHandler, Pipeline, TransientError
from bot.precompiled import Precompiled
from bot.ratelimit import RateLimiting
from bot.settings import Settings
from bot.texts import TextService
from channels.base import Channel, ChannelContext, Purge
from common.metrics import instrument_pool, pool_sampler, release_pool, render
from common import observe

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
TEXTS = web.AppKey("texts", TextService)

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
        domain=app[TEXTS].domain,
        sender_proofs={name: ch.proves for name, ch in app[CHANNELS].items()},
    )


def handler_factory_for(settings: Settings) -> HandlerFactory:
    """Who decides each turn (``POWERBOT_DIALOGUE_BACKEND``): powerbot's dialogue engine, or a
    Rasa assistant over its REST channel (``bot.rasa.backend``; imported only when chosen)."""
    if settings.dialogue_backend == "rasa":
        from bot.rasa.backend import rasa_handler_factory

        return rasa_handler_factory
    return default_handler_factory


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


def channel_purges() -> list[Purge]:
    """The retention purges every known channel declares for its own tables (``Channel.purges``),
    configured or not: rows written while a channel was on still age after it is switched off."""
    found: list[Purge] = []
    for module in ["channels.rest", *(m for m, _ in _OPTIONAL_CHANNELS)]:
        try:
            mod = __import__(module, fromlist=["_"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Channel) and obj.__module__ == module:
                found.extend(p for p in obj.purges if p not in found)
    return found


def _payment_service(*args: Any, **kwargs: Any) -> Any:
    """The payment service a channel that takes payments builds on its platform client
    (``ChannelContext.payment_service``; Alipay: ``payments.alipay.AlipayPayments``), imported
    when a channel asks for it: a gateway without Alipay never loads the payment code."""
    from payments.alipay import AlipayPayments

    return AlipayPayments(*args, **kwargs)


async def _load_interpreter(settings: Settings) -> object:
    from intents import load_or_train

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: load_or_train(data_dir=str(settings.nlu_data_dir), model_dir=str(settings.nlu_model_dir),
                                    fallback_threshold=settings.nlu_fallback_threshold,
                                    ambiguity_threshold=settings.nlu_ambiguity_threshold)
    )


def create_gateway_app(
    settings: Settings,
    *,
    handler_factory: HandlerFactory | None = None,
    interpreter: object | None = None,
) -> web.Application:
    if handler_factory is None:
        handler_factory = handler_factory_for(settings)
    app = web.Application(client_max_size=settings.max_body_bytes)
    texts = TextService(settings)  # every customer text: training_data/domain.yml + brand settings
    limits = RateLimiting(settings, texts)  # body-size cap, per-IP and per-sender limits (bot/ratelimit.py)
    limits.install(app)
    observe.install(app, "gateway")  # outermost: rate-limit refusals are logged and counted too
    app[SETTINGS] = settings
    app[TEXTS] = texts
    app[EXTRAS] = {}
    # Routes must exist before the router freezes, so channels are built now and their
    # context (database, HTTP session, pipeline) is filled in at startup.
    ctx = ChannelContext(
        settings=settings, processor=None, sessionmaker=None, http=None, core=None,  # type: ignore[arg-type]
        extras=app[EXTRAS], texts=texts, prepare=Precompiled, payment_service=_payment_service,
    )
    channels = build_channels(ctx)
    app[CHANNELS] = channels
    for ch in channels.values():
        app.router.add_routes(list(ch.routes()))
    if settings.payment_sandbox and "payments" not in app[EXTRAS]:  # Alipay, when configured, wins
        from payments.sandbox import SandboxPayments

        sandbox = SandboxPayments(ctx)
        app[EXTRAS]["payments"] = sandbox
        app.router.add_routes(sandbox.routes())

    async def resources(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.bot_db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        app[DB_ENGINE] = engine
        pool_capacity = settings.db_pool_size + settings.db_max_overflow
        instrument_pool(engine, "gateway", capacity=pool_capacity)
        sampler = asyncio.ensure_future(pool_sampler())
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
                transient_errors=(CoreUnavailable, TransientError),  # TransientError: a backend's (Rasa's) outage
                texts=texts,
                on_enqueued=lambda: outbox_holder[0].wake() if outbox_holder else None,
            )
            app[PIPELINE] = pipeline
            ctx.processor, ctx.sessionmaker, ctx.http, ctx.core = limits.wrap(pipeline), app[SESSIONMAKER], http, core
            ctx.store = BotChannelStore(app[SESSIONMAKER], wake=lambda: outbox_holder[0].wake() if outbox_holder else None)
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
        sampler.cancel()
        await checkpointer.stop()
        await engine.dispose()
        release_pool("gateway", pool_capacity)

    app.cleanup_ctx.append(resources)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    from bot.rasa.parse import model_parse

    app.router.add_post("/model/parse", model_parse)  # Rasa's NLU HTTP shape over powerbot's NLU
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
_FEATURES: list[str] = ["bot.console", "bot.notify", "bot.retention", "bot.openapi"]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready or not (HTTP 200 / 503) for anyone; the details — each check, each channel with
    its app ids and provider hosts, the outbox backlog — only for an operator (see
    ``_readyz_detail_allowed``)."""
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
    ready = all(v == "ok" for v in checks.values())
    status = 200 if ready else 503
    if not await _readyz_detail_allowed(request):
        return web.json_response({"ready": ready}, status=status, headers={"Cache-Control": "no-store"})
    on = app[CHANNELS]
    channels = {name: (on[name].readiness() if name in on else {"on": False}) for name in KNOWN_CHANNELS}
    for name in on:
        channels.setdefault(name, on[name].readiness())
    body: dict[str, Any] = {"ready": ready, "checks": checks, "channels": channels}
    if checks["database"] == "ok":
        try:
            body["outbox"] = await asyncio.wait_for(_outbox_backlog(app[SESSIONMAKER]), timeout=3)
        except Exception as exc:  # noqa: BLE001 - a figure, not a check: readiness stands
            body["outbox"] = {"error": type(exc).__name__}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: every process's counters (``common.metrics``) and the outbox
    backlog read now from the database. No customer data, but the traffic of each channel and
    the platforms' error codes are an operator's business: the same callers as ``/readyz``'s
    details (this host, the operator token, a supervisor's session)."""
    if not await _readyz_detail_allowed(request):
        return web.json_response(  # RFC 9457, like every error of the documented APIs (bot/openapi.py)
            {"type": "about:blank", "title": "Forbidden", "status": 403, "error": "forbidden",
             "detail": "metrics are for operators: this host, the operator token or a supervisor's session"},
            status=403, content_type="application/problem+json")
    figures: dict[str, tuple[str, float | None]] = {}
    try:
        backlog = await asyncio.wait_for(_outbox_backlog(request.app[SESSIONMAKER]), timeout=3)
        waiting = await asyncio.wait_for(_inbound_waiting(request.app[SESSIONMAKER]), timeout=3)
        figures = {
            "powerbot_inbound_waiting": ("Inbound messages received and not yet answered (capped at 100000)", waiting),
            "powerbot_outbox_backlog": ("Outbox rows waiting to be sent (capped at 100000)", backlog["pending"]),
            "powerbot_outbox_oldest_pending_age_seconds": (
                "Age of the oldest waiting outbox row", backlog["oldest_pending_age_seconds"] or 0),
            "powerbot_outbox_dead_last_24h": ("Outbox rows given up in the last 24 hours", backlog["dead_last_24h"]),
            "powerbot_outbox_backlog_up": ("1 when the backlog figures could be read", 1),
        }
    except Exception:  # noqa: BLE001 - the counters are still worth serving
        log.warning("metrics: outbox backlog not readable", exc_info=True)
        figures = {"powerbot_outbox_backlog_up": ("1 when the backlog figures could be read", 0)}
    body, content_type = render(figures)
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


async def _readyz_detail_allowed(request: web.Request) -> bool:
    """The detailed view is for operators: a caller on this host (loopback, and not relayed by
    a reverse proxy — a proxy on this host would make every caller look local), the operator
    token (``Authorization: Bearer $POWERBOT_OPERATOR_TOKEN``) or a console supervisor's session."""
    import hmac
    import ipaddress

    if not any(h in request.headers for h in _FORWARDING_HEADERS):
        try:
            ip = ipaddress.ip_address((request.remote or "").split("%", 1)[0])
            mapped = getattr(ip, "ipv4_mapped", None)
            if (mapped or ip).is_loopback:
                return True
        except ValueError:
            pass  # a Unix socket, or no address: not known to be local
    token = request.app[SETTINGS].operator_token
    header = request.headers.get("Authorization", "")
    if token is not None and token.get_secret_value() and header[:7].lower() == "bearer ":
        given = header[7:].strip().encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, token.get_secret_value().encode()):
            return True
    try:
        from bot.console.views import is_supervisor
    except ModuleNotFoundError:  # the console feature is not installed
        return False
    return await is_supervisor(request)


OUTBOX_COUNT_CAP = 100_000  # beyond it the backlog is reported as "at least"
DEAD_WINDOW_HOURS = 24


async def _inbound_waiting(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Inbound rows still ``received`` (the queue, all processes): read through the partial
    index that holds only them (``ix_inbound_conv_waiting``), at most CAP + 1 entries."""
    from sqlalchemy import func, literal_column, select

    from bot.models import InboundMessage as I

    async with sessionmaker() as session:
        capped = select(I.id).where(I.status == literal_column("'received'")).limit(OUTBOX_COUNT_CAP + 1).subquery()
        n = (await session.execute(select(func.count()).select_from(capped))).scalar_one()
    return min(n, OUTBOX_COUNT_CAP)


async def _outbox_backlog(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Pending rows (count, capped; the oldest one's age) and dead letters of the last 24 h.

    Cheap on a large outbox: pending rows are read through the two partial indexes that hold
    only them (``status = 'pending'`` with ``kind = 'reply'`` / ``kind <> 'reply'``; the
    predicates are written as literals so both stores match them), the dead letters only among
    the rows of the last day, whose first id a binary search on the primary key finds."""
    from datetime import timedelta

    from sqlalchemy import func, literal_column, select

    from bot.console.service import first_id_since
    from bot.models import OutboxMessage as O, utcnow

    pending = O.status == literal_column("'pending'")
    lanes = (O.kind == literal_column("'reply'"), O.kind != literal_column("'reply'"))
    now = utcnow()
    count, oldest_id = 0, None
    async with sessionmaker() as session:
        for lane in lanes:
            # one read of the lane's partial index, at most CAP + 1 entries: the count and the
            # smallest id (the oldest row, ids follow insertion; exact unless the cap is hit)
            capped = select(O.id).where(pending, lane).limit(OUTBOX_COUNT_CAP + 1).subquery()
            n, first = (await session.execute(select(func.count(), func.min(capped.c.id)))).one()
            count += n
            if first is not None and (oldest_id is None or first < oldest_id):
                oldest_id = first
        oldest_at = (await session.execute(select(O.created_at).where(O.id == oldest_id))).scalar_one_or_none() \
            if oldest_id is not None else None
        start = await first_id_since(session, O, "created_at", now - timedelta(hours=DEAD_WINDOW_HOURS))
        dead = 0
        if start is not None:
            window = (select(O.id).where(O.id >= start, O.status == literal_column("'dead'"))
                      .limit(OUTBOX_COUNT_CAP + 1).subquery())
            dead = (await session.execute(select(func.count()).select_from(window))).scalar_one()
    from bot.outbox import as_aware

    return {
        "pending": min(count, OUTBOX_COUNT_CAP),
        "pending_at_least": count > OUTBOX_COUNT_CAP,
        "oldest_pending_age_seconds": max(0, int((now - as_aware(oldest_at)).total_seconds())) if oldest_at else None,
        "dead_last_24h": min(dead, OUTBOX_COUNT_CAP),
    }
