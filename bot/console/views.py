"""HTTP routes of the console: pages, JSON API, websocket. Every state change needs CSRF."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import aiohttp_jinja2
from aiohttp import WSMsgType, web

from backend_client import CoreError
from bot.console import auth, service, summary
from bot.console.models import Agent, AuditEntry, ConsoleSession

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


def _secure(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _render(request: web.Request, name: str, ctx: dict[str, Any], status: int = 200) -> web.StreamResponse:
    return _secure(aiohttp_jinja2.render_template(name, request, ctx, app_key=_keys()[5], status=status))


def _error(status: int, code: str, message: str = "") -> web.Response:
    return _secure(web.json_response({"error": code, "message": message}, status=status))  # type: ignore[return-value]


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
            return await fn(request, agent, cs)

        return wrapper

    return deco


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error":"bad_json"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error":"bad_json"}', content_type="application/json")
    return body


def _text(body: dict[str, Any], key: str = "text") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_request", "message": f"'{key}' required"}),
                                 content_type="application/json")
    return value.strip()[:MAX_TEXT]


def _handoff_id(request: web.Request) -> int:
    try:
        return int(request.match_info["hid"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def _publish(request: web.Request, event: dict[str, Any]) -> None:
    await request.app[_keys()[4]].publish(event)


def _wake_outbox(request: web.Request) -> None:
    request.app[_keys()[1]].wake()


# ------------------------------------------------------------------ login / logout
async def login_page(request: web.Request) -> web.StreamResponse:
    if await _current(request) is not None and request.method == "GET":
        raise web.HTTPFound("/console")
    return _login_form(request, None)


def _login_form(request: web.Request, error: str | None, status: int = 200) -> web.StreamResponse:
    token = secrets.token_urlsafe(24)
    resp = _render(request, "login.html", {"csrf": token, "error": error}, status=status)
    _set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return resp


def _set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    settings = request.app[_keys()[3]]
    resp.set_cookie(name, value, path="/console", httponly=True, samesite="Strict",
                    secure=bool(settings.cookie_secure), max_age=max_age)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not auth.same(form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)):  # type: ignore[arg-type]
        return _login_form(request, "页面已过期，请重新登录（CSRF）", status=403)
    name, password = str(form.get("name") or "")[:80], str(form.get("password") or "")[:200]
    async with _sm(request)() as session, session.begin():
        result = await auth.login(session, name, password)
    if result.error == "locked":
        log.warning("console login refused: account locked")
        return _login_form(request, "登录失败次数过多，账号已锁定，请 15 分钟后再试", status=429)
    if result.error or not result.token:
        return _login_form(request, "用户名或密码错误", status=401)
    resp = _secure(web.Response(status=302, headers={"Location": "/console"}))
    _set_cookie(request, resp, COOKIE, result.token, max_age=int(auth.SESSION_TTL.total_seconds()))
    resp.del_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    found = await _current(request)
    if found is None:
        raise web.HTTPFound("/console/login")
    agent, cs = found
    form = await request.post()
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


# ------------------------------------------------------------------ API
@api()
async def me(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    return _secure(web.json_response({"name": agent.name, "role": agent.role, "csrf": cs.csrf_token}))


@api()
async def queue(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    async with _sm(request)() as session:
        items = await service.queue(session)
        online = await service.agents_online(session)
    return _secure(web.json_response({"queue": items, "agents_online": [a.name for a in online]}))


@api()
async def canned(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    return _secure(web.json_response({"canned": service.CANNED_RESPONSES}))


@api()
async def agents(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    async with _sm(request)() as session:
        views = await service.all_agents(session)
    return _secure(web.json_response({"agents": [{"name": a.name, "role": a.role, "online": a.online} for a in views]}))


@api(supervisor=True)
async def stats(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    figures = await request.app[STATS].get(_sm(request))
    return _secure(web.json_response(figures))


@api()
async def conversation(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    hid = _handoff_id(request)
    core = request.app[_keys()[0]]
    async with _sm(request)() as session:
        h = await service.get_handoff(session, hid)
        if h is None:
            return _error(404, "not_found")
        events = await service.history(session, h.conversation_id)
        slots = await service.conversation_slots(session, h.conversation_id)
    try:  # outside the session: never hold a database connection across core calls
        info = await summary.summary(_sm(request), core, h.conversation_id)
    except CoreError as exc:
        info = {"found": False, "error": type(exc).__name__, "accounts": []}
    channel, _ = service.split_conversation(h.conversation_id)
    return _secure(web.json_response({
        "handoff": {
            "id": h.id, "conversation_id": h.conversation_id, "display": service.display_name(h.conversation_id),
            "channel": channel, "status": h.status,
            "agent": h.agent_id, "reason": h.reason, "reason_label": service.REASON_LABELS.get(h.reason, h.reason),
            "priority": h.priority, "priority_label": service.PRIORITY_LABELS.get(h.priority, h.priority),
            "summary": h.summary, "mine": h.agent_id == agent.name,
            "waiting_seconds": service.seconds_since(h.created_at),
        },
        "events": events,
        "slots": _mask_slots(slots),
        "account": info,
    }, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str)))


def _mask_slots(slots: dict[str, Any]) -> dict[str, Any]:
    from bot.logs import mask_account, mask_address, mask_phone

    masks = {"account_number": mask_account, "phone_number": mask_phone, "phone": mask_phone, "address": mask_address,
             "contact_phone": mask_phone}
    out: dict[str, Any] = {}
    for k, v in slots.items():
        out[k] = masks[k](str(v)) if k in masks and isinstance(v, (str, int)) and v != "" else v
    return out


async def _held(request: web.Request, session: Any, agent: Agent, *, allow_supervisor: bool = True):  # type: ignore[no-untyped-def]
    h = await service.get_handoff(session, _handoff_id(request))
    if h is None:
        raise web.HTTPNotFound(text='{"error":"not_found"}', content_type="application/json")
    if h.status != "assigned":
        raise web.HTTPConflict(text='{"error":"not_assigned","message":"会话未被接入或已结束"}', content_type="application/json")
    if h.agent_id != agent.name and not (allow_supervisor and agent.role == "supervisor"):
        raise web.HTTPForbidden(text='{"error":"not_yours","message":"该会话由其他坐席处理"}', content_type="application/json")
    return h


@api(write=True)
async def take(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    hid = _handoff_id(request)
    async with _sm(request)() as session, session.begin():
        won = await service.take(session, hid, agent.name)
        h = await service.get_handoff(session, hid)
    if h is None:
        return _error(404, "not_found")
    if not won:
        return _error(409, "taken", f"已被 {h.agent_id or '其他坐席'} 接入" if h.status == "assigned" else "会话已结束")
    await _publish(request, {"type": "taken", "handoff_id": hid, "conversation_id": h.conversation_id, "agent": agent.name})
    return _secure(web.json_response({"ok": True, "handoff_id": hid, "agent": agent.name}))


@api(write=True)
async def reply(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    text = _text(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        h = await _held(request, session, agent)
        msg = await service.reply(session, h, agent.name, text)
    _wake_outbox(request)
    await _publish(request, {"type": "reply", "handoff_id": h.id, "conversation_id": h.conversation_id})
    return _secure(web.json_response({"ok": True, "id": msg.id, "outbox_id": msg.outbox_id}))


@api(write=True)
async def add_note(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    text = _text(await _json_body(request))
    async with _sm(request)() as session, session.begin():
        h = await service.get_handoff(session, _handoff_id(request))
        if h is None:
            return _error(404, "not_found")
        msg = await service.note(session, h, agent.name, text)
    await _publish(request, {"type": "note", "handoff_id": h.id, "conversation_id": h.conversation_id})
    return _secure(web.json_response({"ok": True, "id": msg.id}))


@api(write=True)
async def transfer(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    target = _text(await _json_body(request), "agent")
    from sqlalchemy import select

    async with _sm(request)() as session, session.begin():
        h = await _held(request, session, agent)
        other = (await session.execute(select(Agent).where(Agent.name == target, Agent.active.is_(True)))).scalar_one_or_none()
        if other is None:
            return _error(400, "unknown_agent", "没有该坐席")
        if other.name == h.agent_id:
            return _error(400, "same_agent", "会话已在该坐席名下")
        ok = await service.transfer(session, h.id, h.agent_id, other.name)
    if not ok:
        return _error(409, "conflict", "会话状态已变化")
    await _publish(request, {"type": "transferred", "handoff_id": h.id, "conversation_id": h.conversation_id,
                             "agent": target, "from": agent.name})
    return _secure(web.json_response({"ok": True, "agent": target}))


@api(write=True)
async def close(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    body = await _json_body(request) if request.can_read_body else {}
    note_text = body.get("note") if isinstance(body.get("note"), str) else None
    async with _sm(request)() as session, session.begin():
        h = await _held(request, session, agent)
        await service.close(session, h, agent.name, note_text)
    _wake_outbox(request)
    await _publish(request, {"type": "closed", "handoff_id": h.id, "conversation_id": h.conversation_id})
    return _secure(web.json_response({"ok": True}))


@api(write=True)
async def reveal(request: web.Request, agent: Agent, cs: ConsoleSession) -> web.StreamResponse:
    body = await _json_body(request)
    field = body.get("field")
    index = body.get("index", 0)
    if field not in summary.REVEALABLE or not isinstance(index, int):
        return _error(400, "bad_field")
    core = request.app[_keys()[0]]
    async with _sm(request)() as session:
        h = await _held(request, session, agent)
    try:
        value = await summary.reveal(_sm(request), core, h.conversation_id, index, field)
    except CoreError as exc:
        return _error(503, "core_unavailable", type(exc).__name__)
    if value is None:
        return _error(404, "not_found")
    async with _sm(request)() as session, session.begin():
        session.add(AuditEntry(agent_name=agent.name, action="reveal", conversation_id=h.conversation_id, field=field,
                               detail={"handoff_id": h.id, "account_index": index}))
    log.info("console reveal: agent=%s field=%s handoff=%s", agent.name, field, h.id)
    return _secure(web.json_response({"field": field, "value": value}))


# ------------------------------------------------------------------ websocket
async def websocket(request: web.Request) -> web.StreamResponse:
    found = await _current(request)
    if found is None:
        return _error(401, "unauthenticated")
    origin = request.headers.get("Origin")
    if origin and origin.split("://", 1)[-1] != request.host:
        return _error(403, "bad_origin")
    agent, _ = found
    ws = web.WebSocketResponse(heartbeat=30)
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
        while True:
            await ws.send_str(await q.get())

    tasks = [asyncio.create_task(presence()), asyncio.create_task(forward())]
    await bus.publish({"type": "presence", "agent": agent.name, "online": True})
    try:
        await ws.send_str(json.dumps({"type": "hello", "agent": agent.name}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
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
        web.get("/console/api/agents", agents),
        web.get("/console/api/stats", stats),
        web.get(r"/console/api/handoffs/{hid}", conversation),
        web.post(r"/console/api/handoffs/{hid}/take", take),
        web.post(r"/console/api/handoffs/{hid}/reply", reply),
        web.post(r"/console/api/handoffs/{hid}/note", add_note),
        web.post(r"/console/api/handoffs/{hid}/transfer", transfer),
        web.post(r"/console/api/handoffs/{hid}/close", close),
        web.post(r"/console/api/handoffs/{hid}/reveal", reveal),
        web.get("/console/ws", websocket),
    ]
