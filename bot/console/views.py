"""HTTP routes of the console: pages, JSON API, websocket. Every state change needs CSRF."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from http import HTTPStatus
from typing import Any

import aiohttp_jinja2
from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from backend_client import CoreError
from bot.console import access, auth, labels, service, summary
from bot.console.customer_names import CustomerNames, looks_like_name
from bot.console.customer_names import label as customer_label
from bot.console.masking import mask_slots, masks_something
from bot.console.models import Agent, AuditEntry, ConsoleSession
from bot.dialogue.handoff import Handoff

log = logging.getLogger("powerbot.console")

COOKIE = "pb_console"
LOGIN_CSRF_COOKIE = "pb_console_login"
CSRF_HEADER = "X-CSRF-Token"
MAX_TEXT = 2000
HEARTBEAT_SECONDS = 20
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

Handler = Callable[..., Awaitable[web.StreamResponse]]
AUTH = web.RequestKey("console_auth", object)


def _keys():  # bot.app imports features lazily; avoid an import cycle at module load
    from bot.app import CORE, OUTBOX, SESSIONMAKER, SETTINGS
    from bot.console import BUS, JINJA

    return CORE, OUTBOX, SESSIONMAKER, SETTINGS, BUS, JINJA


def _sm(request: web.Request):  # type: ignore[no-untyped-def]
    return request.app[_keys()[2]]


STATS_TTL = 5.0  # seconds


class StatsCache:
    """The supervisor's figures, computed at most once per ``STATS_TTL`` in a process: every
    open supervisor page refreshes on every live event and every 10 s, and concurrent
    refreshes wait for one computation instead of each running the queries."""

    def __init__(self, ttl: float = STATS_TTL) -> None:
        self.ttl = ttl
        self.computed = 0
        self._at = float("-inf")
        self._value: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def get(self, sessionmaker: Any) -> dict[str, Any]:
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._value is None or loop.time() - self._at >= self.ttl:
                async with sessionmaker() as session:
                    self._value = await service.stats(session)
                self._at = loop.time()
                self.computed += 1
            return self._value


STATS = web.AppKey("console_stats", StatsCache)


def _names(request: web.Request) -> CustomerNames:
    from bot.console import NAMES

    return request.app[NAMES]


_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _secure(resp: web.StreamResponse) -> web.StreamResponse:
    for k, v in _SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def _render(request: web.Request, name: str, ctx: dict[str, Any], status: int = 200) -> web.StreamResponse:
    return _secure(aiohttp_jinja2.render_template(name, request, ctx, app_key=_keys()[5], status=status))


PROBLEM_TYPE = "urn:powerbot:problem:console:"  # + a short code, e.g. ...:not_found
PROBLEM_CT = "application/problem+json"
_PROBLEM_TITLES = {
    "bad_json": "Malformed JSON body", "bad_request": "Invalid request", "bad_field": "Unknown field to reveal",
    "bad_form": "Malformed form", "bad_message": "Unsupported websocket message", "not_found": "Not found",
    "not_yours": "Conversation held by another agent", "not_assigned": "Conversation not taken or already closed",
    "taken": "Already taken", "conflict": "State changed", "csrf": "CSRF token missing or wrong",
    "unauthenticated": "Not logged in", "forbidden": "Not allowed", "bad_origin": "Foreign origin",
    "unknown_agent": "No such agent", "same_agent": "Already with this agent",
    "core_unavailable": "Core system unavailable", "server_error": "Internal error",
}


def problem_doc(status: int, code: str, detail: str = "") -> dict[str, Any]:
    """An RFC 9457 problem document; ``error`` and ``message`` repeat code and detail for the
    console's own script (extension members)."""
    title = _PROBLEM_TITLES.get(code) or HTTPStatus(status).phrase
    detail = detail or title
    return {"type": PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail,
            "error": code, "message": detail}


def _problem_text(status: int, code: str, detail: str = "") -> str:
    return json.dumps(problem_doc(status, code, detail), ensure_ascii=False)


def _error(status: int, code: str, message: str = "") -> web.Response:
    resp = web.Response(text=_problem_text(status, code, message), status=status, content_type=PROBLEM_CT)
    return _secure(resp)  # type: ignore[return-value]


def problem(status: int, code: str, detail: str = "") -> web.HTTPException:
    """An exception to raise from anywhere in a handler; it leaves as a problem document."""
    exc = _EXC.get(status, web.HTTPBadRequest)(text=_problem_text(status, code, detail), content_type=PROBLEM_CT)
    for k, v in _SECURITY_HEADERS.items():
        exc.headers.setdefault(k, v)
    return exc


_EXC: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
    409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge, 415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity, 503: web.HTTPServiceUnavailable,
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error under ``/console`` leaves as ``application/problem+json`` (RFC 9457):
    unknown paths, wrong methods, oversized bodies, and a 500 for a bug (logged)."""
    if not (request.path == "/console" or request.path.startswith("/console/")):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == PROBLEM_CT:
            raise
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}.get(exc.status, "bad_request")
        resp = _error(exc.status, code, exc.reason)
        for k in ("Allow", "Retry-After"):
            if k in exc.headers:
                resp.headers[k] = exc.headers[k]
        return resp
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("console: unhandled error on %s %s", request.method, request.path)
        return _error(500, "server_error", "internal error; it was logged")


async def _current(request: web.Request) -> tuple[Agent, ConsoleSession] | None:
    if AUTH in request:
        return request[AUTH]  # type: ignore[return-value]
    async with _sm(request)() as session:
        found = await auth.load_session(session, request.cookies.get(COOKIE))
    request[AUTH] = found
    return found


def _csrf_ok(request: web.Request, cs: ConsoleSession, form: Any = None) -> bool:
    token = request.headers.get(CSRF_HEADER)
    if token is None and form is not None:
        token = form.get("csrf_token")
    return auth.same(token, cs.csrf_token)


def page(*, supervisor: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        @wraps(fn)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            found = await _current(request)
            if found is None:
                raise web.HTTPFound("/console/login")
            agent, cs = found
            if supervisor and agent.role != "supervisor":
                return _render(request, "forbidden.html", {"agent": agent}, status=403)
            return await fn(request, agent, cs)

        return wrapper

    return deco


def api(*, write: bool = False, supervisor: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        @wraps(fn)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            found = await _current(request)
            if found is None:
                return _error(401, "unauthenticated", "请先登录")
            agent, cs = found
            if write and not _csrf_ok(request, cs):
                return _error(403, "csrf", "CSRF token missing or wrong")
            if supervisor and agent.role != "supervisor":
                return _error(403, "forbidden", "仅主管可用")
            if "hid" in request.match_info:
                _handoff_id(request)  # the path before the body: a bad id is a 404 whatever the body
            return await fn(request, agent, cs)

        return wrapper

    return deco


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object. Anything else — not UTF-8, not JSON, nested deeper than the
    parser allows, not an object — is a 400 problem, never a 500."""
    try:
        raw = await request.read()  # over client_max_size: 413, made a problem by the middleware
    except HttpProcessingError:  # e.g. a Content-Encoding the body does not match
        raise problem(400, "bad_request", "the body could not be read") from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise problem(400, "bad_json", "the body is not UTF-8") from None
    except RecursionError:
        raise problem(400, "bad_json", "the JSON body is nested too deeply") from None
    except ValueError:
        raise problem(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise problem(400, "bad_json", "the body must be a JSON object")
    return body


def _clean_str(value: str, what: str) -> str:
    """Refuse what no store can hold (NUL, unpaired surrogates) with a 400, not a driver error."""
    if "\x00" in value:
        raise problem(400, "bad_request", f"'{what}' must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise problem(400, "bad_request", f"'{what}' is not valid Unicode text") from None
    return value


def _text(body: dict[str, Any], key: str = "text") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise problem(400, "bad_request", f"'{key}' required (a non-empty string)")
    return _clean_str(value.strip()[:MAX_TEXT], key)


def _handoff_id(request: web.Request) -> int:
    """The ``{hid}`` of the path: 1 to 19 ASCII digits within a BIGINT, else 404."""
    raw = request.match_info.get("hid", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) <= service.BIGINT_MAX:
        raise problem(404, "not_found", "no handoff with this id")
    return int(raw)


async def _handoff_for(request: web.Request, session: Any, agent: Agent, *, act: bool) -> Handoff:
    """The handoff of the path if this agent may see it (``act``: and act on it), by the rule
    of ``bot.console.access``; a supervisor's look at someone else's conversation is audited
    (in ``session``'s transaction, when it has one)."""
    h = await service.get_handoff(session, _handoff_id(request))
    if h is None:
        raise problem(404, "not_found", "no handoff with this id")
    decision = access.for_handoff(agent, h)
    if not decision.view:
        raise problem(403, "not_yours", "该会话由其他坐席处理")
    if act and not decision.act:
        if decision.reason == "not_assigned":
            raise problem(409, "not_assigned", "会话未被接入或已结束")
        raise problem(403, "not_yours", "该会话由其他坐席处理")
    if decision.audit and not act:
        session.add(AuditEntry(agent_name=agent.name, action="supervisor_view", conversation_id=h.conversation_id,
                               detail={"handoff_id": h.id, "holder": h.agent_id, "status": h.status}))
    return h


async def _publish(request: web.Request, event: dict[str, Any]) -> None:
    await request.app[_keys()[4]].publish(event)


def _wake_outbox(request: web.Request) -> None:
    request.app[_keys()[1]].wake()


# ------------------------------------------------------------------ login / logout
async def login_page(request: web.Request) -> web.StreamResponse:
    if await _current(request) is not None and request.method == "GET":
        raise web.HTTPFound("/console")
    return _login_form(request, None)


def _login_form(request: web.Request, error: str | None, status: int = 200, name: str = "") -> web.StreamResponse:
    token = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", {"csrf": token, "error": error, "name": name}, status=status)
    _set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


def _set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    settings = request.app[_keys()[3]]
    resp.set_cookie(name, value, path="/console", httponly=True, samesite="Strict",
                    secure=bool(settings.cookie_secure), max_age=max_age)


async def _form(request: web.Request) -> Any:
    try:
        return await request.post()
    except web.HTTPException:
        raise  # 413 and the like: the middleware makes them problems
    except (ValueError, AssertionError, LookupError, HttpProcessingError):
        raise problem(400, "bad_form", "the form body could not be read") from None


def _form_str(form: Any, key: str, limit: int) -> str:
    value = form.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise problem(400, "bad_form", f"'{key}' must be a plain form field")
    return _clean_str(value[:limit], key)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if not auth.same(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_form(request, "页面已过期，请重新登录（CSRF）", status=403)
    name, password = _form_str(form, "name", auth.NAME_MAX), _form_str(form, "password", 200)
    async with _sm(request)() as session, session.begin():
        result = await auth.login(session, name, password)
    # the same two answers whether or not the name exists (auth.login counts both alike)
    if result.error == "locked":
        log.warning("console login refused: name locked after repeated failures")
        return _login_form(request, "登录失败次数过多，账号已锁定，请 15 分钟后再试", status=429, name=name)
    if result.error or not result.token:  # keep the name typed, clear the password
        return _login_form(request, "用户名或密码错误", status=401, name=name)
    resp = _secure(web.Response(status=302, headers={"Location": "/console"}))
    _set_cookie(request, resp, COOKIE, result.token, max_age=int(auth.SESSION_TTL.total_seconds()))
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    found = await _current(request)
    if found is None:
        raise web.HTTPFound("/console/login")
    agent, cs = found
    form = await _form(request)
    if not _csrf_ok(request, cs, form):
        return _error(403, "csrf", "CSRF token missing or wrong")
    async with _sm(request)() as session, session.begin():
        await auth.logout(session, request.cookies.get(COOKIE, ""))
        await service.touch_agent(session, agent.id, online=False)
    resp = _secure(web.Response(status=302, headers={"Location": "/console/login"}))
    resp.del_cookie(COOKIE, path="/console")
    return resp


# ------------------------------------------------------------------ pages
@page()
async def console_page(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    return _render(request, "console.html", {"agent": agent, "csrf": cs.csrf_token})


@page(supervisor=True)
async def supervisor_page(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    figures = await request.app[STATS].get(_sm(request))
    async with _sm(request)() as session:
        agents = await service.all_agents(session)
    return _render(request, "supervisor.html", {"agent": agent, "csrf": cs.csrf_token, "s": figures, "agents": agents})


async def is_supervisor(request: web.Request) -> bool:
    """Whether the request carries a live console session of a supervisor (``/readyz``)."""
    try:
        found = await _current(request)
    except Exception:  # noqa: BLE001 - no database, no session: not a supervisor
        return False
    return found is not None and found[0].role == "supervisor"


# ------------------------------------------------------------------ API
def _json(data: Any) -> web.StreamResponse:
    return _secure(web.json_response(data, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str)))


@api()
async def me(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    return _json({"name": agent.name, "role": agent.role, "csrf": cs.csrf_token})


def _choice(request: web.Request, key: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = request.query.get(key)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise problem(400, "bad_request", f"'{key}' must be one of {', '.join(allowed)}")
    return value


@api()
async def queue(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    """``?view=mine|unassigned|all&channel=&priority=&status=open|waiting|assigned|released|any&q=``"""
    from bot.dialogue.handoff import PRIORITIES

    view = _choice(request, "view", service.VIEWS, "all")
    channel = _choice(request, "channel", tuple(service.CHANNEL_LABELS), None)
    priority = _choice(request, "priority", PRIORITIES, None)
    status = _choice(request, "status", service.STATUSES, "open")
    q = request.query.get("q", "").strip()
    if len(q) > 100:
        raise problem(400, "bad_request", "'q' is at most 100 characters")
    q = _clean_str(q, "q")
    names = _names(request)
    # the core first, outside any database session: the accounts whose holder's name matches q
    named = await names.search(q) if q else []
    async with _sm(request)() as session:
        items = await service.queue(session, agent.name, agent.role, view=view or "all", channel=channel,
                                    priority=priority, status=status or "open", q=q or None, named=named or ())
        online = await service.agents_online(session)
        accounts = await service.handoff_accounts(session, [i["handoff_id"] for i in items if i["visible"]])
    # who each customer is: the masked account from our store at once, the masked name once the
    # core has answered (within a short budget; never waited on when it is down)
    masked = await names.masked_names(accounts.values())
    for item in items:
        number = accounts.get(item["handoff_id"])
        if number is not None:
            item["customer_label"] = customer_label(number, masked.get(number))
    out: dict[str, Any] = {"queue": items, "agents_online": [a.name for a in online]}
    if q:
        out["name_search"] = "skipped" if not looks_like_name(q) else "unavailable" if named is None else "ok"
    return _json(out)


@api()
async def labels_view(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    return _json(labels.all_labels())


@api()
async def canned(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    async with _sm(request)() as session:
        return _json({"canned": await service.canned_list(session)})


def _canned_body(body: dict[str, Any]) -> tuple[str, str]:
    shortcut = body.get("shortcut")
    if not isinstance(shortcut, str) or not service.SHORTCUT.fullmatch(shortcut):
        raise problem(400, "bad_request", "'shortcut' is 1 to 32 letters, digits, _ or -")
    return shortcut, _text(body, "text")


def _canned_id(request: web.Request) -> int:
    raw = request.match_info.get("cid", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 0 < int(raw) <= service.BIGINT_MAX:
        raise problem(404, "not_found", "no canned answer with this id")
    return int(raw)


@api(write=True)
async def canned_create(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    from sqlalchemy import select

    from bot.console.models import CannedResponse

    shortcut, text = _canned_body(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        if (await session.execute(select(CannedResponse.id).where(CannedResponse.shortcut == shortcut))).first():
            return _error(409, "conflict", labels.text("shortcut_taken"))
        row = CannedResponse(shortcut=shortcut, text=text, updated_by=agent.name)
        session.add(row)
        await session.flush()
        out = service.canned_view(row)
    return _json(out)


@api(write=True)
async def canned_update(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    from sqlalchemy import select

    from bot.console.models import CannedResponse
    from bot.models import utcnow

    cid = _canned_id(request)
    shortcut, text = _canned_body(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        row = await session.get(CannedResponse, cid)
        if row is None:
            return _error(404, "not_found", "no canned answer with this id")
        other = (await session.execute(select(CannedResponse.id).where(
            CannedResponse.shortcut == shortcut, CannedResponse.id != cid))).first()
        if other:
            return _error(409, "conflict", labels.text("shortcut_taken"))
        row.shortcut, row.text, row.updated_by, row.updated_at = shortcut, text, agent.name, utcnow()
        await session.flush()
        out = service.canned_view(row)
    return _json(out)


@api(write=True)
async def canned_delete(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    from bot.console.models import CannedResponse

    cid = _canned_id(request)
    async with _sm(request)() as session, session.begin():
        row = await session.get(CannedResponse, cid)
        if row is None:
            return _error(404, "not_found", "no canned answer with this id")
        await session.delete(row)
    return _json({"ok": True})


@api()
async def agents(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    async with _sm(request)() as session:
        views = await service.all_agents(session)
    return _json({"agents": [{"name": a.name, "role": a.role, "online": a.online} for a in views]})


@api(supervisor=True)
async def stats(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    figures = await request.app[STATS].get(_sm(request))
    return _json(figures)


@api()
async def conversation(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    core = request.app[_keys()[0]]
    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=False)
        events = await service.history(session, h.conversation_id)
        slots = await service.conversation_slots(session, h.conversation_id)
        handoff_summary = (await service.conversation_masker(session, h.conversation_id)).text(h.summary or "")
    try:  # outside the session: never hold a database connection across core calls
        info = await summary.summary(_sm(request), core, h.conversation_id)
    except CoreError as exc:
        info = {"found": False, "error": type(exc).__name__, "accounts": []}
    numbers, related = info.pop("numbers", []), info.pop("conversations", [])  # raw: never sent
    channel, _ = service.split_conversation(h.conversation_id)
    decision = access.for_handoff(agent, h)
    async with _sm(request)() as session:
        related_ids = set(related) | await service.identity_conversations(session, h.conversation_id, numbers)
        earlier = await service.earlier_conversations(session, related_ids, h, agent.name, agent.role)
    first = next((a for a in info.get("accounts", []) if isinstance(a.get("masked"), dict)), None)
    customer = {
        "name": first["masked"].get("holder_name") if first else None,
        "account": first["masked"].get("account_number") if first else None,
        "verified": bool(first),
        "channel": channel, "channel_label": service.CHANNEL_LABELS.get(channel, channel),
        "display": service.display_name(h.conversation_id),
        "earlier": earlier,
    }
    if first is not None and 0 <= first.get("index", -1) < len(numbers):
        # what the core just said of this account: the queue's label is fresh at once
        _names(request).remember(numbers[first["index"]], first["masked"].get("holder_name"))
    return _json({
        "handoff": {
            "id": h.id, "conversation_id": service.display_name(h.conversation_id),
            "display": service.display_name(h.conversation_id), "channel": channel, "status": h.status,
            "agent": h.agent_id, "reason": h.reason, "reason_label": service.REASON_LABELS.get(h.reason, h.reason),
            "priority": h.priority, "priority_label": service.PRIORITY_LABELS.get(h.priority, h.priority),
            "summary": handoff_summary or None, "mine": h.agent_id == agent.name, "can_act": decision.act,
            "waiting_seconds": service.seconds_since(h.created_at),
        },
        "events": events,
        "slots": mask_slots(slots),
        "masked_slots": sorted(k for k, v in slots.items() if isinstance(k, str) and masks_something(k, v)),
        "account": info,
        "customer": customer,
    })


def _texts(request: web.Request) -> Any:
    from bot.app import TEXTS  # the app's wiring imports this module

    return request.app[TEXTS]


@api(write=True)
async def take(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    hid = _handoff_id(request)
    async with _sm(request)() as session, session.begin():
        won = await service.take(session, hid, agent.name, texts=_texts(request))
        h = await service.get_handoff(session, hid)
    if h is None:
        return _error(404, "not_found", "no handoff with this id")
    if not won:
        return _error(409, "taken", f"已被 {h.agent_id or '其他坐席'} 接入" if h.status == "assigned" else "会话已结束")
    _wake_outbox(request)  # the customer is told a person joined
    await _publish(request, {"type": "taken", **access.event_fields(h), "agent": agent.name})
    return _json({"ok": True, "handoff_id": hid, "agent": agent.name})


@api(write=True)
async def reply(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    text = _text(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=True)
        msg = await service.reply(session, h, agent.name, text)
    _wake_outbox(request)
    await _publish(request, {"type": "reply", **access.event_fields(h)})
    return _json({"ok": True, "id": msg.id, "outbox_id": msg.outbox_id})


@api(write=True)
async def add_note(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    text = _text(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=True)
        msg = await service.note(session, h, agent.name, text)
    await _publish(request, {"type": "note", **access.event_fields(h)})
    return _json({"ok": True, "id": msg.id})


@api(write=True)
async def transfer(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    target = _text(await _json_body(request), "agent")
    from sqlalchemy import select

    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=True)
        other = (await session.execute(select(Agent).where(Agent.name == target, Agent.active.is_(True)))).scalar_one_or_none()
        if other is None:
            return _error(400, "unknown_agent", "没有该坐席")
        if other.name == h.agent_id:
            return _error(400, "same_agent", "会话已在该坐席名下")
        holder = h.agent_id
        ok = await service.transfer(session, h.id, holder, other.name)
    if not ok:
        return _error(409, "conflict", "会话状态已变化")
    await _publish(request, {"type": "transferred", **access.event_fields(h), "holder": other.name,
                             "agent": other.name, "from": holder})
    return _json({"ok": True, "agent": other.name})


@api(write=True)
async def close(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    body = await _json_body(request) if request.can_read_body else {}
    note = body.get("note")
    note_text = _clean_str(note.strip()[:MAX_TEXT], "note") if isinstance(note, str) and note.strip() else None
    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=True)
        await service.close(session, h, agent.name, note_text, texts=_texts(request))
        status = "released"
    _wake_outbox(request)
    await _publish(request, {"type": "closed", **access.event_fields(h), "status": status})
    return _json({"ok": True})


@api(write=True)
async def reopen(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    """A closed conversation taken back: a new handoff held by the caller (its last holder or a
    supervisor, those who may see a closed one)."""
    async with _sm(request)() as session, session.begin():
        h = await _handoff_for(request, session, agent, act=False)
        if h.status != "released":
            return _error(409, "conflict", labels.text("not_closed"))
        new = await service.reopen(session, h, agent.name)
        if new is None:
            return _error(409, "conflict", labels.text("busy_again"))
    await _publish(request, {"type": "taken", **access.event_fields(new), "agent": agent.name})
    return _json({"ok": True, "handoff_id": new.id, "agent": agent.name})


@api(write=True, supervisor=True)
async def assign(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    """A supervisor gives a waiting conversation to an agent, or a held one to another agent."""
    from sqlalchemy import select

    target = _text(await _json_body(request), "agent")
    hid = _handoff_id(request)
    async with _sm(request)() as session, session.begin():
        h = await service.get_handoff(session, hid)
        if h is None:
            return _error(404, "not_found", "no handoff with this id")
        other = (await session.execute(select(Agent).where(Agent.name == target, Agent.active.is_(True)))).scalar_one_or_none()
        if other is None:
            return _error(400, "unknown_agent", "没有该坐席")
        if other.name == h.agent_id:
            return _error(400, "same_agent", "会话已在该坐席名下")
        holder = h.agent_id
        if h.status == "waiting":
            ok = await service.assign_to(session, hid, other.name, agent.name)
            if ok:
                await service.announce_agent(session, h, other.name, _texts(request))
        elif h.status == "assigned":
            ok = await service.transfer(session, hid, holder, other.name)
        else:
            return _error(409, "not_assigned", "会话已结束")
        h = await service.get_handoff(session, hid)
    if not ok or h is None:
        return _error(409, "conflict", "会话状态已变化")
    await _publish(request, {"type": "taken" if holder is None else "transferred", **access.event_fields(h),
                             "holder": other.name, "agent": other.name, "from": holder})
    return _json({"ok": True, "agent": other.name})


@api(write=True)
async def reveal(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    """The unmasked value of one datum, for the holder or a supervisor, always audited.

    ``{"field": "phone", "index": 0}``: a field of the customer's account (index-th account of
    the summary); ``{"slot": "address"}``: a slot of the conversation; ``{"message": "e12"}``:
    the text of one history item (its ``id``)."""
    body = await _json_body(request)
    slot, item = body.get("slot"), body.get("message")
    async with _sm(request)() as session:
        h = await _handoff_for(request, session, agent, act=True)
        if slot is not None or item is not None:
            if isinstance(slot, str) and item is None:
                raw = (await service.conversation_slots(session, h.conversation_id)).get(slot)
                value = None if raw is None or isinstance(raw, (dict, list)) else str(raw)
                what, detail = f"slot:{slot[:35]}", {"handoff_id": h.id, "slot": slot[:80]}
            elif isinstance(item, str) and slot is None:
                value = await service.raw_history_text(session, h.conversation_id, item)
                what, detail = "message", {"handoff_id": h.id, "message": item[:40]}
            else:
                return _error(400, "bad_field", "give one of 'field', 'slot' or 'message' (a string)")
    if slot is None and item is None:
        field, index = body.get("field"), body.get("index", 0)
        if field not in summary.REVEALABLE or type(index) is not int or not 0 <= index < 100:
            return _error(400, "bad_field", f"'field' must be one of {', '.join(summary.REVEALABLE)}")
        core = request.app[_keys()[0]]
        try:
            value = await summary.reveal(_sm(request), core, h.conversation_id, index, field)
        except CoreError as exc:
            return _error(503, "core_unavailable", type(exc).__name__)
        what, detail = field, {"handoff_id": h.id, "account_index": index}
    if value is None:
        return _error(404, "not_found", "nothing to reveal there")
    async with _sm(request)() as session, session.begin():
        session.add(AuditEntry(agent_name=agent.name, action="reveal", conversation_id=h.conversation_id, field=what,
                               detail={**detail, "holder": h.agent_id}))
    log.info("console reveal: agent=%s field=%s handoff=%s", agent.name, what, h.id)
    return _json({"field": what, "value": value})


# ------------------------------------------------------------------ websocket
WS_MAX_MESSAGE = 4096  # the browser only sends "ping"; a bigger frame closes the socket (1009)


def _ws_problem(code: str, detail: str) -> str:
    return json.dumps({"type": "error", "problem": problem_doc(400, code, detail)}, ensure_ascii=False)


def _ws_reply(data: Any) -> str:
    """The answer to one incoming websocket message: pong, or a problem (never an exception)."""
    if not isinstance(data, str):
        return _ws_problem("bad_message", "only text messages are understood")
    if data == "ping":
        return '{"type":"pong"}'
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError):
        return _ws_problem("bad_message", "send \"ping\" or a JSON object such as {\"type\": \"ping\"}")
    if isinstance(msg, dict) and msg.get("type") == "ping":
        return '{"type":"pong"}'
    return _ws_problem("bad_message", "unknown message; the console only understands ping")


async def websocket(request: web.Request) -> web.StreamResponse:
    found = await _current(request)
    if found is None:
        return _error(401, "unauthenticated")
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.host:
        return _error(403, "bad_origin")
    agent, _ = found
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=WS_MAX_MESSAGE)
    await ws.prepare(request)
    bus = request.app[_keys()[4]]
    from bot.console import SOCKETS

    request.app[SOCKETS].add(ws)
    q = bus.subscribe()
    sm = _sm(request)

    async def presence() -> None:
        while True:
            async with sm() as session, session.begin():
                await service.touch_agent(session, agent.id)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def forward() -> None:
        # the access rule decides, per agent, which live events reach this browser and how
        while True:
            data = await q.get()
            try:
                event = json.loads(data)
            except ValueError:
                continue
            out = access.event_for(agent.name, agent.role, event)
            if out is not None:
                await ws.send_str(json.dumps(out, ensure_ascii=False, default=str))

    tasks = [asyncio.create_task(presence()), asyncio.create_task(forward())]
    await bus.publish({"type": "presence", "agent": agent.name, "online": True})
    try:
        await ws.send_str(json.dumps({"type": "hello", "agent": agent.name}))
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await ws.send_str(_ws_reply(msg.data))
    finally:
        request.app[SOCKETS].discard(ws)
        bus.unsubscribe(q)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ws


def routes() -> list[web.RouteDef]:
    return [
        web.get("/console", console_page),
        web.get("/console/", console_page),
        web.get("/console/login", login_page),
        web.post("/console/login", login_submit),
        web.post("/console/logout", logout),
        web.get("/console/supervisor", supervisor_page),
        web.get("/console/api/me", me),
        web.get("/console/api/queue", queue),
        web.get("/console/api/canned", canned),
        web.post("/console/api/canned", canned_create),
        web.put(r"/console/api/canned/{cid}", canned_update),
        web.delete(r"/console/api/canned/{cid}", canned_delete),
        web.get("/console/api/labels", labels_view),
        web.get("/console/api/agents", agents),
        web.get("/console/api/stats", stats),
        web.get(r"/console/api/handoffs/{hid}", conversation),
        web.post(r"/console/api/handoffs/{hid}/take", take),
        web.post(r"/console/api/handoffs/{hid}/reply", reply),
        web.post(r"/console/api/handoffs/{hid}/note", add_note),
        web.post(r"/console/api/handoffs/{hid}/transfer", transfer),
        web.post(r"/console/api/handoffs/{hid}/close", close),
        web.post(r"/console/api/handoffs/{hid}/reveal", reveal),
        web.post(r"/console/api/handoffs/{hid}/reopen", reopen),
        web.post(r"/console/api/handoffs/{hid}/assign", assign),
        web.get("/console/ws", websocket),
    ]
