"""Agent console: humans take over escalated conversations in the browser.

``setup(app)`` (called by ``bot.app``) adds the routes under ``/console`` and a cleanup context
that starts the live-event bus (Redis pub/sub when ``POWERBOT_REDIS_URL`` is set, in-process
otherwise) and the cache of customers' masked names (:mod:`bot.console.customer_names`), and
wraps the pipeline's handler with :class:`bot.console.hooks.ConsoleHandler`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console.customer_names import CustomerNames
from bot.console.events import EventBus

HERE = Path(__file__).resolve().parent
JINJA = web.AppKey("console_jinja", jinja2.Environment)
BUS = web.AppKey("console_bus", EventBus)
SOCKETS = web.AppKey("console_sockets", set)
NAMES = web.AppKey("console_customer_names", CustomerNames)


def setup(app: web.Application) -> None:
    from bot.app import CORE, OUTBOX, PIPELINE, SESSIONMAKER, SETTINGS, TEXTS
    from bot.console import views
    from bot.console.hooks import ConsoleHandler

    aiohttp_jinja2.setup(
        app,
        app_key=JINJA,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    app.router.add_routes(views.routes())
    app.middlewares.append(views.problem_middleware)  # errors under /console as RFC 9457 problems
    app[views.STATS] = views.StatsCache()
    app.router.add_static("/console/static/", HERE / "static", name="console_static", append_version=True)

    async def console_ctx(app: web.Application) -> AsyncIterator[None]:
        bus = EventBus(app[SETTINGS].redis_url)
        await bus.start()
        app[BUS] = bus
        pipeline = app[PIPELINE]
        pipeline.handler = ConsoleHandler(pipeline.handler, app[SESSIONMAKER], app[CORE], bus, app[TEXTS])
        _ = app[OUTBOX]
        app[NAMES] = CustomerNames(app[CORE])  # customers' masked names for the queue and its search
        try:
            yield
        finally:
            await app[NAMES].close()
            await bus.stop()

    app.cleanup_ctx.append(console_ctx)
    app[SOCKETS] = set()

    async def close_sockets(app: web.Application) -> None:
        # open agent websockets would otherwise hold a graceful shutdown until its timeout
        for ws in list(app[SOCKETS]):
            await ws.close(code=1001, message=b"server shutdown")

    app.on_shutdown.append(close_sockets)
