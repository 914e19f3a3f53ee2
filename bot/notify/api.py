"""Operator API: manage notification subscriptions (``/api/v1/notify/...``).

Protected by ``Authorization: Bearer $POWERBOT_OPERATOR_TOKEN``; without that setting the API
answers 403. Subscriptions live in the core; this API validates, normalises (E.164 phones,
issue topic names such as ``planned_outage`` → core topic ``outage``) and proxies.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from backend_client import CoreUnavailable, NotFound, ValidationFailed
from bot.logs import mask_account
from bot.models import OutboxMessage
from common.phones import sms_number
from bot.notify.texts import CHANNELS, TOPIC_ALIASES

log = logging.getLogger("powerbot.notify.api")

_ACCOUNT = re.compile(r"^\d{10,13}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]+$")


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status, content_type="application/problem+json",
    )


def _authorised(request: web.Request) -> web.Response | None:
    from bot.app import SETTINGS

    token = request.app[SETTINGS].operator_token
    if token is None or not token.get_secret_value():
        return _problem(403, "forbidden", "operator API disabled: set POWERBOT_OPERATOR_TOKEN")
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        log.warning("notify api: refused request without a valid operator token from %s", request.remote)
        return _problem(401, "unauthorized", "a valid operator bearer token is required")
    return None


def _clean(fields: dict[str, Any], *, partial: bool) -> dict[str, str] | web.Response:
    out: dict[str, str] = {}
    acc = str(fields.get("account_number") or "").strip()
    if not _ACCOUNT.match(acc):
        return _problem(422, "invalid", "account_number must be 10–13 digits")
    out["account_number"] = acc
    topic = str(fields.get("topic") or "").strip()
    if topic:
        if topic not in TOPIC_ALIASES:
            return _problem(422, "invalid", f"topic must be one of {', '.join(sorted(TOPIC_ALIASES))}")
        out["topic"] = TOPIC_ALIASES[topic]
    elif not partial:
        return _problem(422, "invalid", "topic is required")
    channel = str(fields.get("channel") or "").strip()
    if channel:
        if channel not in CHANNELS:
            return _problem(422, "invalid", f"channel must be one of {', '.join(CHANNELS)}")
        out["channel"] = channel
    elif not partial:
        return _problem(422, "invalid", "channel is required")
    identity = str(fields.get("identity") or "").strip()
    if identity:
        if channel == "sms":
            phone = sms_number(identity)
            if phone is None:
                return _problem(422, "invalid", "identity must be a mobile phone number for sms")
            identity = phone
        elif channel == "email" and not _EMAIL.match(identity):
            return _problem(422, "invalid", "identity must be an e-mail address for email")
        elif len(identity) > 200:
            return _problem(422, "invalid", "identity too long")
        out["identity"] = identity
    elif not partial:
        return _problem(422, "invalid", "identity is required")
    return out


async def _core_call(request: web.Request, fn: str, *args: Any, **kwargs: Any) -> Any:
    from bot.app import CORE

    return await getattr(request.app[CORE], fn)(*args, **kwargs)


def _sub_doc(sub: Any) -> dict[str, Any]:
    return {
        "id": sub.id, "account_number": sub.account_number, "topic": sub.topic, "channel": sub.channel,
        "identity": sub.identity, "created_at": sub.created_at.isoformat() if sub.created_at else None,
    }


async def _guard(request: web.Request, coro: Any) -> Any:
    try:
        return await coro
    except NotFound as exc:
        return _problem(404, "not_found", str(exc))
    except ValidationFailed as exc:
        return _problem(422, "invalid", str(exc))
    except CoreUnavailable:
        return _problem(503, "core_unavailable", "the core service is unavailable, retry later")


async def list_subscriptions(request: web.Request) -> web.Response:
    if (denied := _authorised(request)) is not None:
        return denied
    cleaned = _clean(dict(request.query), partial=True)
    if isinstance(cleaned, web.Response):
        return cleaned
    res = await _guard(request, _core_call(request, "list_subscriptions", **cleaned))
    if isinstance(res, web.Response):
        return res
    return web.json_response({"subscriptions": [_sub_doc(s) for s in res]})


async def create_subscription(request: web.Request) -> web.Response:
    if (denied := _authorised(request)) is not None:
        return denied
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _problem(400, "bad_request", "body must be JSON")
    if not isinstance(body, dict):
        return _problem(400, "bad_request", "body must be a JSON object")
    cleaned = _clean(body, partial=False)
    if isinstance(cleaned, web.Response):
        return cleaned
    res = await _guard(request, _core_call(
        request, "create_subscription", cleaned["account_number"], cleaned["topic"], cleaned["channel"], cleaned["identity"]
    ))
    if isinstance(res, web.Response):
        return res
    log.info("notify api: subscribed %s to %s on %s", mask_account(res.account_number), res.topic, res.channel)
    return web.json_response(_sub_doc(res), status=201)


async def delete_subscriptions(request: web.Request) -> web.Response:
    if (denied := _authorised(request)) is not None:
        return denied
    cleaned = _clean(dict(request.query), partial=True)
    if isinstance(cleaned, web.Response):
        return cleaned
    acc = cleaned.pop("account_number")
    res = await _guard(request, _core_call(request, "delete_subscription", acc, **cleaned))
    if isinstance(res, web.Response):
        return res
    log.info("notify api: removed %d subscription(s) of %s", res, mask_account(acc))
    return web.json_response({"deleted": res})


async def outbox_stats(request: web.Request) -> web.Response:
    """Counts of notices per channel and status (dead letters included) for operators."""
    if (denied := _authorised(request)) is not None:
        return denied
    from bot.app import SESSIONMAKER

    async with request.app[SESSIONMAKER]() as s:
        rows = (
            await s.execute(
                select(OutboxMessage.channel, OutboxMessage.status, func.count())
                .where(OutboxMessage.kind == "notice")
                .group_by(OutboxMessage.channel, OutboxMessage.status)
            )
        ).all()
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in rows:
        out.setdefault(channel, {})[status] = n
    return web.json_response({"notices": out})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/notify/subscriptions", list_subscriptions),
        web.post("/api/v1/notify/subscriptions", create_subscription),
        web.delete("/api/v1/notify/subscriptions", delete_subscriptions),
        web.get("/api/v1/notify/stats", outbox_stats),
    ]
