"""Prometheus metrics of the gateway and the core (``prometheus-client``).

Every metric is defined here, once, so the names a dashboard uses live in one file. Hot paths
only increment a counter or observe a histogram (an in-memory add, or an mmap write in
multi-process mode); figures that need the database (the outbox backlog) are read when
``/metrics`` is scraped.

Multi-process: ``powerbot serve --workers N`` gives every worker the same fresh
``PROMETHEUS_MULTIPROC_DIR`` (``bot.runner.serve_workers``); each process then writes its
samples to files there and a scrape, answered by any one worker, adds up all of them
(``MultiProcessCollector``). Without that variable the process's own registry is served.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, kept: ``labels`` checks and locks on every call, and the
    message path counts several times per message with a handful of label sets."""
    return metric.labels(*values)

# --- messages -------------------------------------------------------------------------------
MESSAGES_IN = Counter(
    "powerbot_messages_in_total", "Inbound customer messages handed to the pipeline",
    ["channel", "status"],  # status: accepted | duplicate | invalid
)
MESSAGES_OUT = Counter(
    "powerbot_messages_out_total", "Outbound messages by delivery outcome",
    ["channel", "status"],  # status: sent | inline | retry | dead
)
OUTBOX_RETRIES = Counter("powerbot_outbox_retries_total", "Failed sends that will be tried again", ["channel"])
DEAD_LETTERS = Counter("powerbot_outbox_dead_letters_total", "Outbox rows given up (dead letters)", ["channel"])
NOTICES_SENT = Counter(
    "powerbot_notices_sent_total", "Notices (outbox rows that are not replies) sent", ["channel", "kind"],
)
PLATFORM_ERRORS = Counter(
    "powerbot_platform_errors_total",
    "Failed outbox deliveries by the error's code (WeChat errcode, Alipay code/sub_code, SMS provider status)",
    ["channel", "code"],
)
# Every call to a platform's server API, wherever it is made (outbox sends, but also access
# token fetches, payment precreate/query, the menu command): counted by the API client itself
# (channels.wechat_api, channels.alipay_sdk), so no caller can leave one out. The outbox's
# figure above counts failed deliveries; this one counts failed calls (one delivery may make
# two: a refused token, then the send).
PLATFORM_API_ERRORS = Counter(
    "powerbot_platform_api_errors_total",
    "Failed calls to a platform's server API by platform, API and code (WeChat errcode, Alipay "
    "sub_code or code; unreachable, http_<status>, bad_answer, bad_sign when there was no usable answer)",
    ["platform", "api", "code"],
)


def platform_api_error(platform: str, api: str, code: object) -> None:
    """Count one failed platform API call (labels bounded in length)."""
    PLATFORM_API_ERRORS.labels(platform, api[:64], str(code)[:48]).inc()

# --- dialogue -------------------------------------------------------------------------------
_TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TURN_SECONDS = Histogram(
    "powerbot_turn_seconds", "One dialogue turn: the handler's run on one inbound message", ["channel"],
    buckets=_TURN_BUCKETS,
)
NLU_SECONDS = Histogram(
    "powerbot_nlu_seconds", "Intent and entity parsing of one message",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
FALLBACKS = Counter("powerbot_fallbacks_total", "Turns the bot did not understand", ["reason"])
HANDOFFS = Counter("powerbot_handoffs_total", "Conversations handed to a human agent", ["reason"])

# --- queue ----------------------------------------------------------------------------------
# the queue's length (powerbot_inbound_waiting) is read from the database at scrape time
QUEUE_WAIT = Histogram(
    "powerbot_inbound_wait_seconds", "From receipt of a message to the start of its turn", ["channel"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0),
)

# --- HTTP -----------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "powerbot_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "powerbot_http_request_seconds", "HTTP request duration", ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- database pool --------------------------------------------------------------------------
DB_POOL_IN_USE = Gauge(
    "powerbot_db_pool_connections_in_use", "Connections checked out of the pool (all processes)",
    ["service"], multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "powerbot_db_pool_capacity", "pool_size + max_overflow, summed over live processes",
    ["service"], multiprocess_mode="livesum",
)


_POOLS: list[tuple[Any, Any]] = []  # (pool, its in-use gauge child) of this process


DB_STATEMENTS = Counter(
    "powerbot_db_statements_total", "Statements sent to PostgreSQL (each one round trip)", ["service"])
DB_CONNECTIONS_OPENED = Counter(
    "powerbot_db_connections_opened_total", "New PostgreSQL connections (sessions) opened by the pool", ["service"])


def instrument_pool(engine: Any, service: str, *, capacity: int | None = None) -> None:
    """Follow an SQLAlchemy engine's pool. The in-use gauge is sampled (``sample_pools``: at
    every scrape of this process, and by ``pool_sampler`` every few seconds for the other
    processes' scrapes), not moved by checkout/checkin listeners: those ran for every turn and
    cost the WeChat path measurable CPU. ``capacity`` (pool_size + max_overflow) is added to
    the capacity gauge.

    On PostgreSQL the statements sent and the connections opened are counted too: round trips
    per message and a pool that keeps reconnecting are what the PostgreSQL path's cost hangs
    on. (SQLite's hot statements bypass SQLAlchemy's events, so nothing is counted there.)"""
    from sqlalchemy import event

    sync = engine.sync_engine if hasattr(engine, "sync_engine") else engine
    _POOLS.append((sync.pool, DB_POOL_IN_USE.labels(service)))
    if capacity:
        DB_POOL_CAPACITY.labels(service).inc(capacity)
    if sync.dialect.name != "sqlite":
        statements, opened = DB_STATEMENTS.labels(service), DB_CONNECTIONS_OPENED.labels(service)
        event.listen(sync, "before_cursor_execute", lambda *_: statements.inc())
        event.listen(sync, "connect", lambda *_: opened.inc())


def sample_pools() -> None:
    for pool, gauge in _POOLS:
        checked_out = getattr(pool, "checkedout", None)
        if checked_out is not None:
            gauge.set(checked_out())


async def pool_sampler(interval: float = 5.0) -> None:
    """Keep this process's pool gauge fresh for scrapes another process answers."""
    while True:
        sample_pools()
        await asyncio.sleep(interval)


def release_pool(service: str, capacity: int | None) -> None:
    """Take a disposed engine out of the gauges."""
    _POOLS[:] = [(p, g) for p, g in _POOLS if g is not DB_POOL_IN_USE.labels(service)]
    DB_POOL_IN_USE.labels(service).set(0)
    if capacity:
        DB_POOL_CAPACITY.labels(service).dec(capacity)


class _Figures(Collector):
    """Gauges read at scrape time (from the database): handed in as plain values."""

    def __init__(self, figures: Mapping[str, tuple[str, float | None]]) -> None:
        self.figures = figures

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, (doc, value) in self.figures.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)


def render(figures: Mapping[str, tuple[str, float | None]] | None = None) -> tuple[bytes, str]:
    """The exposition text of every process's metrics plus ``figures`` (name → (help, value)),
    and its content type."""
    sample_pools()
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if figures:
        extra = CollectorRegistry()
        extra.register(_Figures(figures))
        body += generate_latest(extra)
    return body, CONTENT_TYPE_LATEST
