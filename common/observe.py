"""Per-request observability for the gateway and the core: a request id, an access log line
and the HTTP metrics, in one aiohttp middleware.

The request id comes from the caller's ``X-Request-ID`` header (when it is a short token) or is
generated; it is set in one context variable (``common.logs.REQUEST_ID``) that every log line of the handler reads, and echoed in the response's ``X-Request-ID`` header. Beyond the
request (the turn, the outbox send) it travels as data: the pipeline stores it with the inbound
row and the reply rows (``bot.pipeline``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from common.metrics import HTTP_REQUESTS, HTTP_SECONDS, labelled
from common.logs import REQUEST_ID
from common.pii import mask_text

REQUEST_ID_HEADER = "X-Request-ID"
_GOOD_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# hex digits as letters: a generated id never holds a run of digits (which masking would
# read as a phone or account number), so it needs no masking check
_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")
_REQUEST_ID = REQUEST_ID  # the one context variable log lines take their request id from


def request_id_from(request: web.Request) -> str:
    """The caller's id when it is a short token that masking would leave alone (it is logged
    as is, in every line of the request), else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if given and _GOOD_ID.fullmatch(given) and mask_text(given) == given:
        return given
    return os.urandom(16).hex().translate(_NO_DIGITS)  # 128 random bits, as a uuid4 has


def bind_request_id(request_id: str | None) -> None:
    """Set the id ``current_request_id`` reads in this context (None: work of no request)."""
    _REQUEST_ID.set(request_id)


def current_request_id() -> str | None:
    """The request id bound by the middleware in this request's task, if any (one context
    variable read: the pipeline asks for every message)."""
    return _REQUEST_ID.get()


def _route(request: web.Request) -> str:
    """The route's template (``/console/api/conversations/{id}``): a bounded label set."""
    info = request.match_info
    resource = info.route.resource if info is not None and info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def observe_middleware(service: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware, labelled ``service`` ("gateway", "core") in the metrics. Install it
    first (outermost) so refusals by later middlewares are logged and counted too."""
    access = structlog.get_logger("powerbot.access")
    access_std = logging.getLogger("powerbot.access")  # its level: a filtered line costs one check

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id_from(request)
        start = time.perf_counter()
        status = 500
        token = _REQUEST_ID.set(rid)
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:  # a handler that prepared it got it from echo_request_id
                response.headers[REQUEST_ID_HEADER] = rid
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = _route(request)
            method = request.method if request.method in _METHODS else "other"  # bounded labels
            labelled(HTTP_REQUESTS, service, method, route, str(status)).inc()
            labelled(HTTP_SECONDS, service, route).observe(elapsed)
            _REQUEST_ID.reset(token)
            if access_std.isEnabledFor(logging.INFO):
                # the path only: query strings carry signatures, tokens and open ids
                # no client address: a customer's IP is personal data, and the masker cannot tell
                access.info("request", method=request.method, path=request.path, status=status,
                            duration_ms=round(elapsed * 1000, 2), request_id=rid)

    return observe


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the id on responses a handler prepares itself (streamed ones)."""
    rid = current_request_id()
    if rid is not None:
        response.headers.setdefault(REQUEST_ID_HEADER, rid)


def install(app: web.Application, service: str) -> None:
    """The middleware as the outermost one, and the response header for every response."""
    app.middlewares.insert(0, observe_middleware(service))
    app.on_response_prepare.append(echo_request_id)
