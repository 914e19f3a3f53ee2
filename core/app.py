"""The thin reference core: an aiohttp app with its own store and a JSON API under ``/api/v1``.

``create_core_app(db_url)`` builds the app; the engine is created on startup (``cleanup_ctx``)
and disposed on cleanup. Routes come from one explicit table (``ROUTES``) that also feeds the
OpenAPI document. Every error leaves as ``application/problem+json`` (RFC 9457).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from common.metrics import instrument_pool, pool_sampler, release_pool, render
from common import observe
from common.pii import mask_text

from . import schemas as sc
from .pricing import use_calendar
from .work_calendar import default_calendar
from .problems import ProblemError, bad_param
from .service import CoreService, parse_date
from .store import migrate, open_store

log = logging.getLogger("core.app")

API = "/api/v1"
SERVICE: web.AppKey[CoreService] = web.AppKey("core_service", CoreService)
DB_URL: web.AppKey[str] = web.AppKey("core_db_url", str)
SEED: web.AppKey[bool] = web.AppKey("core_seed", bool)
TOKEN: web.AppKey[str] = web.AppKey("core_api_token", str)
# /healthz stays open for load balancers; /api/v1/healthz needs the token, so a gateway's
# readiness check also proves its token is right.
OPEN_PATHS = frozenset({"/healthz", API + "/openapi.json", "/docs"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")), status=status, content_type="application/json"
    )


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    if not request.can_read_body:
        raise ProblemError(400, "missing_body", "a JSON request body is required")
    if request.content_type not in ("application/json", "application/problem+json", ""):
        raise ProblemError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProblemError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProblemError(422, "invalid_body", "request body must be a JSON object")
    return model.model_validate(raw)  # ValidationError → 422 in the middleware


def _svc(request: web.Request) -> CoreService:
    return request.app[SERVICE]


def _int_path(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise bad_param(name, "must be a positive integer")
    return int(raw)


def _idem_key(request: web.Request, body_key: str | None) -> str | None:
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip()
        if not 1 <= len(header) <= 128:
            raise bad_param("Idempotency-Key", "must be 1–128 characters")
        if body_key is not None and body_key != header:
            raise ProblemError(422, "idempotency_key_mismatch", "Idempotency-Key header and body field differ")
        return header
    return body_key


# --- handlers ------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(_svc(request).health(), timeout=3)
    except Exception as exc:  # noqa: BLE001
        log.warning("core health check failed: %s", type(exc).__name__)
        return _json({"status": "degraded", "database": "unreachable"}, status=503)
    return _json({"status": "ok", "database": "ok"})


async def openapi_doc(request: web.Request) -> web.Response:
    from .openapi import build_openapi

    return _json(build_openapi(ROUTES))


async def docs(request: web.Request) -> web.Response:
    """A documentation page for the OpenAPI document, served from here (no CDN)."""
    from common.apidocs import docs_page

    return web.Response(text=docs_page("powerbot core API", API.lstrip("/") + "/openapi.json"),
                        content_type="text/html", headers={"Cache-Control": "no-cache"})


async def get_account(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_account(request.match_info["account_number"]))


async def find_accounts(request: web.Request) -> web.Response:
    q = request.query
    return _json(await _svc(request).find_accounts(q.get("phone"), q.get("binding_channel"), q.get("binding_identity")))


async def find_customers(request: web.Request) -> web.Response:
    from .customers import lookup

    return _json(await lookup(_svc(request).sm, dict(request.query)))


async def bind_account(request: web.Request) -> web.Response:
    data = await _body(request, sc.BindingIn)
    return _json(await _svc(request).bind(request.match_info["account_number"], data))


async def unbind_account(request: web.Request) -> web.Response:
    if request.can_read_body:
        data = await _body(request, sc.BindingIn)
    else:
        data = sc.BindingIn.model_validate({"channel": request.query.get("channel"), "identity": request.query.get("identity")})
    return _json(await _svc(request).unbind(request.match_info["account_number"], data))


async def list_bills(request: web.Request) -> web.Response:
    q = request.query
    return _json(await _svc(request).list_bills(request.match_info["account_number"], q.get("month"), q.get("status")))


async def issue_bill(request: web.Request) -> web.Response:
    data = await _body(request, sc.BillIn)
    status, doc = await _svc(request).issue_bill(request.match_info["account_number"], data)
    return _json(doc, status)


async def get_arrears(request: web.Request) -> web.Response:
    return _json(await _svc(request).arrears(request.match_info["account_number"]))


async def list_payments(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_payments(request.match_info["account_number"]))


async def create_payment(request: web.Request) -> web.Response:
    data = await _body(request, sc.PaymentIn)
    status, doc = await _svc(request).create_payment(data)
    return _json(doc, status)


async def confirm_payment(request: web.Request) -> web.Response:
    data = await _body(request, sc.PaymentConfirmIn)
    return _json(await _svc(request).confirm_payment(request.match_info["out_trade_no"], data))


async def get_payment(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_payment(request.match_info["out_trade_no"]))


async def list_outages(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_outages(dict(request.query)))


async def create_outage(request: web.Request) -> web.Response:
    data = await _body(request, sc.OutageIn)
    status, doc = await _svc(request).create_outage(data, _idem_key(request, None))
    return _json(doc, status)


async def get_outage(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_outage(_int_path(request, "outage_id")))


async def update_outage(request: web.Request) -> web.Response:
    data = await _body(request, sc.OutagePatch)
    return _json(await _svc(request).update_outage(_int_path(request, "outage_id"), data))


async def create_work_order(request: web.Request) -> web.Response:
    data = await _body(request, sc.WorkOrderIn)
    status, doc = await _svc(request).create_work_order(data, _idem_key(request, data.idempotency_key))
    return _json(doc, status)


async def list_work_orders(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_work_orders(dict(request.query)))


async def get_work_order(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_work_order(request.match_info["work_order_id"]))


async def transition_work_order(request: web.Request) -> web.Response:
    data = await _body(request, sc.TransitionIn)
    return _json(await _svc(request).transition_work_order(request.match_info["work_order_id"], data))


async def list_halls(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_halls(request.query.get("district")))


async def list_slots(request: web.Request) -> web.Response:
    day = parse_date("date", request.query.get("date"))
    available = request.query.get("available", "").lower() in {"1", "true", "yes"}
    return _json(await _svc(request).list_slots(_int_path(request, "hall_id"), day, available))


async def book_appointment(request: web.Request) -> web.Response:
    data = await _body(request, sc.AppointmentIn)
    status, doc = await _svc(request).book(data, _idem_key(request, data.idempotency_key))
    return _json(doc, status)


async def get_appointment(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_appointment(_int_path(request, "appointment_id")))


async def list_appointments(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_appointments(dict(request.query)))


async def cancel_appointment(request: web.Request) -> web.Response:
    return _json(await _svc(request).cancel(_int_path(request, "appointment_id")))


async def list_tariffs(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_tariffs())


async def get_tariff(request: web.Request) -> web.Response:
    return _json(await _svc(request).get_tariff(request.match_info["category"]))


async def quote_tariff(request: web.Request) -> web.Response:
    return _json(await _svc(request).quote(request.match_info["category"], dict(request.query)))


async def list_subscriptions(request: web.Request) -> web.Response:
    return _json(await _svc(request).list_subscriptions(dict(request.query)))


async def create_subscription(request: web.Request) -> web.Response:
    data = await _body(request, sc.SubscriptionIn)
    status, doc = await _svc(request).subscribe(data)
    return _json(doc, status)


async def delete_subscriptions(request: web.Request) -> web.Response:
    return _json(await _svc(request).unsubscribe(dict(request.query)))


async def read_events(request: web.Request) -> web.Response:
    return _json(await _svc(request).read_events(dict(request.query)))


# --- route table (also the source of the OpenAPI document) ---------------------------------
@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    created: bool = False  # may answer 201
    idempotency_header: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "Liveness and database check", response=sc.HealthOut, tags=("ops",)),
    Route("GET", API + "/healthz", healthz, "Liveness and database check", response=sc.HealthOut, tags=("ops",)),
    Route("GET", API + "/openapi.json", openapi_doc, "This OpenAPI document", tags=("ops",)),
    Route("GET", API + "/accounts", find_accounts, "Find accounts by phone or channel binding", response=sc.AccountList,
          query=(("phone", "registered phone"), ("binding_channel", "channel name"), ("binding_identity", "user id on that channel")), tags=("accounts",)),
    Route("GET", API + "/customers", find_customers,
          "Customers by (part of) the holder's name, or a batch of account numbers: account numbers and masked names only",
          response=sc.CustomerList,
          query=(("name", "part of the holder's name, 2–64 characters with a letter (substring, case-insensitive)"),
                 ("account_numbers", "comma-separated 户号, at most 50 (instead of name)"),
                 ("limit", "max rows with name (20 by default, 50 at most)")), tags=("accounts",)),
    Route("GET", API + "/accounts/{account_number}", get_account, "Get an account", response=sc.AccountOut, tags=("accounts",)),
    Route("PUT", API + "/accounts/{account_number}/bindings", bind_account, "Bind a channel identity (idempotent)",
          body=sc.BindingIn, response=sc.AccountOut, tags=("accounts",)),
    Route("DELETE", API + "/accounts/{account_number}/bindings", unbind_account, "Remove a channel binding (idempotent)",
          body=sc.BindingIn, response=sc.AccountOut, query=(("channel", "alternative to the body"), ("identity", "alternative to the body")), tags=("accounts",)),
    Route("GET", API + "/accounts/{account_number}/bills", list_bills, "Bills, newest first", response=sc.BillList,
          query=(("month", "YYYY-MM"), ("status", "unpaid | partial | paid")), tags=("bills",)),
    Route("POST", API + "/accounts/{account_number}/bills", issue_bill, "Issue a month's bill priced from the tariff (idempotent per month)",
          body=sc.BillIn, response=sc.BillOut, created=True, tags=("bills",)),
    Route("GET", API + "/accounts/{account_number}/arrears", get_arrears, "Amount owed and unpaid bills", response=sc.ArrearsOut, tags=("bills",)),
    Route("GET", API + "/accounts/{account_number}/payments", list_payments, "Payments of an account", response=sc.PaymentList, tags=("payments",)),
    Route("POST", API + "/payments", create_payment, "Create a payment (idempotent by out_trade_no)", body=sc.PaymentIn,
          response=sc.PaymentOut, created=True, tags=("payments",)),
    Route("GET", API + "/payments/{out_trade_no}", get_payment, "Get a payment", response=sc.PaymentOut, tags=("payments",)),
    Route("POST", API + "/payments/{out_trade_no}/confirm", confirm_payment, "Confirm a payment and settle bills exactly once",
          body=sc.PaymentConfirmIn, response=sc.PaymentOut, tags=("payments",)),
    Route("GET", API + "/outages", list_outages, "Planned and unplanned outages", response=sc.OutageList,
          query=(("district", "district name"), ("address", "customer address (street matching)"), ("status", "scheduled | active | restored | cancelled"),
                 ("kind", "planned | unplanned"), ("active_at", "ISO datetime with offset"), ("starts_after", "ISO datetime"),
                 ("starts_before", "ISO datetime"), ("limit", "max rows (200)")), tags=("outages",)),
    Route("POST", API + "/outages", create_outage, "Create an outage", body=sc.OutageIn, response=sc.OutageOut, created=True,
          idempotency_header=True, tags=("outages",)),
    Route("GET", API + "/outages/{outage_id}", get_outage, "Get an outage", response=sc.OutageOut, tags=("outages",)),
    Route("PATCH", API + "/outages/{outage_id}", update_outage, "Update an outage (status, times, scope)", body=sc.OutagePatch,
          response=sc.OutageOut, tags=("outages",)),
    Route("POST", API + "/work-orders", create_work_order, "Create a work order (Idempotency-Key)", body=sc.WorkOrderIn,
          response=sc.WorkOrderOut, created=True, idempotency_header=True, tags=("work orders",)),
    Route("GET", API + "/work-orders", list_work_orders, "List work orders, newest first", response=sc.WorkOrderList,
          query=(("account_number", "户号"), ("contact_phone", "phone"), ("status", "lifecycle status"), ("type", "work order type"), ("limit", "max rows (50)")),
          tags=("work orders",)),
    Route("GET", API + "/work-orders/{work_order_id}", get_work_order, "Get a work order", response=sc.WorkOrderOut, tags=("work orders",)),
    Route("POST", API + "/work-orders/{work_order_id}/transitions", transition_work_order,
          "Move a work order along created → dispatched → in_progress → resolved → closed", body=sc.TransitionIn,
          response=sc.WorkOrderOut, tags=("work orders",)),
    Route("GET", API + "/halls", list_halls, "Service halls", response=sc.HallList, query=(("district", "district name"),), tags=("halls",)),
    Route("GET", API + "/halls/{hall_id}/slots", list_slots, "Appointment slots (default: next 14 days)", response=sc.SlotList,
          query=(("date", "YYYY-MM-DD"), ("available", "true: only slots with room")), tags=("halls",)),
    Route("POST", API + "/appointments", book_appointment, "Book a slot (Idempotency-Key; capacity enforced)", body=sc.AppointmentIn,
          response=sc.AppointmentOut, created=True, idempotency_header=True, tags=("halls",)),
    Route("GET", API + "/appointments", list_appointments, "Appointments of an account or a contact phone, soonest first",
          response=sc.AppointmentList, query=(("account_number", "户号"), ("contact_phone", "phone"), ("status", "booked | cancelled")),
          tags=("halls",)),
    Route("GET", API + "/appointments/{appointment_id}", get_appointment, "Get an appointment", response=sc.AppointmentOut, tags=("halls",)),
    Route("DELETE", API + "/appointments/{appointment_id}", cancel_appointment, "Cancel an appointment (idempotent)",
          response=sc.AppointmentOut, tags=("halls",)),
    Route("GET", API + "/tariffs", list_tariffs, "Tariff table", response=sc.TariffList, tags=("tariffs",)),
    Route("GET", API + "/tariffs/{category}", get_tariff, "Tariff of a category", response=sc.TariffOut, tags=("tariffs",)),
    Route("GET", API + "/tariffs/{category}/quote", quote_tariff, "Price a usage", response=sc.QuoteOut,
          query=(("kwh", "total kWh"), ("peak_kwh", "peak kWh"), ("valley_kwh", "valley kWh")), tags=("tariffs",)),
    Route("GET", API + "/subscriptions", list_subscriptions, "List subscriptions", response=sc.SubscriptionList,
          query=(("account_number", "户号"), ("topic", "outage | bill | work_order | payment"), ("channel", "wechat | alipay | sms | email"),
                 ("identity", "channel identity"), ("district", "accounts in a district"), ("limit", "max rows (1000)"),
                 ("after_id", "only ids above this one (keyset paging)")), tags=("subscriptions",)),
    Route("POST", API + "/subscriptions", create_subscription, "Subscribe (idempotent)", body=sc.SubscriptionIn,
          response=sc.SubscriptionOut, created=True, tags=("subscriptions",)),
    Route("DELETE", API + "/subscriptions", delete_subscriptions, "Unsubscribe matching subscriptions", response=sc.DeletedOut,
          query=(("account_number", "required"), ("topic", "optional"), ("channel", "optional"), ("identity", "optional")), tags=("subscriptions",)),
    Route("GET", API + "/events", read_events, "Change feed, read with a cursor", response=sc.EventPageOut,
          query=(("after", "cursor (next_cursor of the previous page) or 'latest'"), ("limit", "max events (100)"),
                 ("type", "comma-separated event types")), tags=("events",)),
)


# --- middleware ----------------------------------------------------------------------------
def _problem_response(doc: dict[str, Any]) -> web.Response:
    return web.Response(
        text=json.dumps(doc, ensure_ascii=False, default=str), status=doc["status"], content_type="application/problem+json"
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except ProblemError as exc:
        status = exc.status
        return _problem_response(exc.document(request.path))
    except ValidationError as exc:
        status = 422
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
        return _problem_response(ProblemError(422, "validation_failed", detail, errors=errors).document(request.path))
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        code = {404: "route_not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "http_error")
        doc = ProblemError(exc.status, code, exc.reason or exc.text or "").document(request.path)
        resp = _problem_response(doc)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, mask_text(request.path))
        return _problem_response(ProblemError(500, "internal_error", "internal error; the request was not completed").document(request.path))
    finally:
        log.debug("%s %s %d %.1fms", request.method, mask_text(request.path), status, (time.perf_counter() - started) * 1000)


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check when the core is given a token (runs inside the problem middleware,
    so a refusal is an RFC 9457 document like every other error)."""
    expected = request.app.get(TOKEN)
    if expected and request.path not in OPEN_PATHS:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected.encode()):
            log.warning("core API call refused: %s %s without a valid token", request.method, mask_text(request.path))
            raise ProblemError(401, "unauthorized", "a valid bearer token is required for the core API")
    return await handler(request)


# --- app -----------------------------------------------------------------------------------
async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    from .settings import load_core_settings

    url = app[DB_URL]
    try:
        s = load_core_settings()
        pool, overflow, calendar_file = s.db_pool_size, s.db_max_overflow, s.work_calendar_file
    except Exception:  # noqa: BLE001 - settings problems must not stop an embedded/test core
        pool, overflow, calendar_file = 10, 10, None
    # a broken calendar file stops the core here, loudly, instead of promising wrong dates
    use_calendar(default_calendar(calendar_file))
    engine, sessions = open_store(url, pool_size=pool, max_overflow=overflow)
    instrument_pool(engine, "core", capacity=pool + overflow)
    sampler = asyncio.ensure_future(pool_sampler())
    service = CoreService(sessions, engine.dialect.name)
    app[SERVICE] = service
    try:
        await service.ensure_reference_data()
        if app[SEED]:
            from .seed import seed

            await seed(service.sm)
        yield
    finally:
        sampler.cancel()
        await engine.dispose()
        release_pool("core", pool + overflow)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition (``common.metrics``): behind the API token like every API call."""
    body, content_type = render()
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def create_core_app(db_url: str, *, seed: bool = False, token: str | None = None) -> web.Application:
    """Build the core app on an already-migrated store (``powerbot core serve`` migrates first).

    With ``token`` every API call but health and the OpenAPI document needs
    ``Authorization: Bearer <token>``."""
    app = web.Application(middlewares=[problem_middleware, token_middleware], client_max_size=1024 * 1024)
    observe.install(app, "core")
    app[DB_URL] = db_url
    app[SEED] = seed
    if token:
        app[TOKEN] = token
    app.cleanup_ctx.append(_store_ctx)
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/docs", docs)
    return app


async def serve_core(db_url: str, host: str, port: int, *, seed: bool = False, token: str | None = None) -> None:
    """Migrate the core store, then serve until cancelled (used by ``powerbot core serve``)."""
    await migrate(db_url)
    if not token:
        log.warning("core API has no token (POWERBOT_CORE_API_TOKEN): anyone who reaches %s:%d can read "
                    "customer data; keep it on a private network", host, port)
    runner = web.AppRunner(create_core_app(db_url, seed=seed, token=token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("core listening on http://%s:%d%s", host, port, API)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
