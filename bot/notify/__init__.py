"""Proactive notifications: subscriptions, event producers, quiet hours, channel fallback.

``setup(app)`` (called by :mod:`bot.app`) adds the operator API routes and a ``cleanup_ctx``
that, once the database, core client and outbox worker exist:

- tunes the app's :class:`~bot.outbox.OutboxWorker` from settings (batch size, concurrency,
  dead-letter after ``POWERBOT_OUTBOX_MAX_ATTEMPTS``, sending lease),
- registers the quiet-hours hold policy (no non-urgent SMS notices 22:00–08:00 Asia/Shanghai by
  default) and the channel-fallback dead-letter hook,
- starts the producer that reads the core's change feed (cursor in ``notify_cursors``) and
  enqueues notices with per-(event, channel, recipient) dedupe keys.

Pipeline: core event → :class:`~bot.notify.producer.Producer` → outbox rows (kind ``notice``)
→ outbox worker → channel ``send`` → on a permanent refusal, the next channel of the chain.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

log = logging.getLogger("powerbot.notify")

PRODUCER = web.AppKey("notify_producer", object)


def setup(app: web.Application) -> None:
    from bot.app import CHANNELS, CORE, OUTBOX, SESSIONMAKER, SETTINGS, TEXTS
    from bot.notify.api import routes
    from bot.notify.policies import FallbackHook, quiet_hours_policy
    from bot.notify.producer import Producer

    settings = app[SETTINGS]
    app.router.add_routes(routes())

    async def notify_ctx(app: web.Application) -> AsyncIterator[None]:
        worker = app[OUTBOX]
        worker.configure(
            batch_size=settings.outbox_batch_size,
            concurrency=settings.outbox_concurrency,
            max_attempts=settings.outbox_max_attempts,
            sending_lease=timedelta(seconds=settings.outbox_sending_lease_seconds),
            pipelines=settings.outbox_pipelines,
        )
        on = set(app[CHANNELS])
        quiet = quiet_hours_policy(
            settings.notify_quiet_hours, settings.notify_timezone,
            [c.strip() for c in settings.notify_quiet_channels.split(",") if c.strip()],
        )
        if quiet is not None:
            worker.hold_policies.append(quiet)
        hook = FallbackHook(on, settings.notify_wechat_template_id, app[TEXTS])
        hook.wake = worker.wake
        worker.dead_letter_hooks.append(hook)
        producer = Producer(app[SESSIONMAKER], app[CORE], settings, on, on_enqueued=worker.wake, text_service=app[TEXTS])
        app[PRODUCER] = producer
        if settings.notify_enabled:
            try:
                await producer.init_cursor()
            except Exception as exc:  # noqa: BLE001 - core down at start: the loop retries
                log.warning("notify: cursor not initialised yet (%s)", type(exc).__name__)
            await producer.start()
        try:
            yield
        finally:
            await producer.stop()
            if quiet is not None and quiet in worker.hold_policies:
                worker.hold_policies.remove(quiet)
            if hook in worker.dead_letter_hooks:
                worker.dead_letter_hooks.remove(hook)

    app.cleanup_ctx.append(notify_ctx)
