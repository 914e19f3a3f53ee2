"""Async HTTP client of the core API (the only code in the project that talks to the core).

- one ``aiohttp.ClientSession`` per client (or the caller's), a ``ClientTimeout`` on every call;
- retries with exponential backoff + jitter only for idempotent calls: GET/PUT/DELETE and POSTs
  carrying an idempotency key (payments are keyed by ``out_trade_no``);
- a small circuit breaker: after ``breaker_threshold`` consecutive transport failures / 5xx the
  client fails fast with :class:`CoreUnavailable` for ``breaker_cooldown`` seconds, then lets
  one trial call through (half-open);
- typed exceptions (:mod:`backend_client.errors`) and typed results (:mod:`backend_client.models`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from .errors import Conflict, CoreError, CoreUnavailable, NotFound, ValidationFailed
from .models import (
    Account,
    Appointment,
    Arrears,
    Bill,
    Customer,
    EventPage,
    Hall,
    Health,
    Outage,
    Payment,
    Quote,
    Slot,
    Subscription,
    Tariff,
    WorkOrder,
)

log = logging.getLogger("backend_client")

T = TypeVar("T", bound=BaseModel)

_RETRY_STATUSES = {502, 503, 504}
CUSTOMER_BATCH = 50  # account numbers per GET /customers (the core's limit)


def _mask(path: str) -> str:
    """Mask account numbers / phones in a path for logs (keep first 2 and last 2 digits)."""
    out = []
    for part in path.split("/"):
        if part.isdigit() and len(part) >= 10:
            part = part[:2] + "*" * (len(part) - 4) + part[-2:]
        out.append(part)
    return "/".join(out)


def _money(value: Decimal | int | float | str) -> str:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return str(Decimal(value))


def _iso(value: datetime | date | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


class CircuitBreaker:
    """Consecutive-failure breaker: closed → open (fail fast) → half-open (one trial)."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        state = self.state
        if state == "open":
            raise CoreUnavailable("core unavailable (circuit open)")
        if state == "half_open":
            if self._trial_in_flight:
                raise CoreUnavailable("core unavailable (circuit half-open, trial in flight)")
            self._trial_in_flight = True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = time.monotonic()

    def abandon(self) -> None:
        """The call was cancelled before an outcome: let the next call be the trial."""
        self._trial_in_flight = False

    def reset(self) -> None:
        self.success()


class CoreClient:
    """Typed async client of the core API. Use ``async with CoreClient(url) as core: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        retries: int = 2,
        backoff: float = 0.1,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 10.0,
        token: str | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if root.endswith("/api/v1"):
            root = root[: -len("/api/v1")]
        self.root_url = root
        self.api_url = root + "/api/v1"
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        self._session = session
        self._owns_session = session is None
        # per request, not on the session: the gateway shares one session with its channels
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    # --- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> CoreClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._session is not None and not self._owns_session:
                raise CoreError("the caller's aiohttp session is closed")
            self._session = aiohttp.ClientSession(
                headers={"Accept": "application/json", "User-Agent": "powerbot-backend-client/1"},
            )
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        if self._owns_session:
            self._session = None

    # --- transport -----------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        root: bool = False,
        timeout: float | None = None,
    ) -> Any:
        if idempotent is None:
            idempotent = method in {"GET", "HEAD", "PUT", "DELETE"}
        url = (self.root_url if root else self.api_url) + path
        clean_params = {k: str(v) for k, v in (params or {}).items() if v is not None}
        attempts = 1 + (self.retries if idempotent else 0)
        session = self._ensure_session()
        last: CoreUnavailable | None = None
        for attempt in range(attempts):
            self.breaker.before_call()
            try:
                async with session.request(
                    method,
                    url,
                    params=clean_params or None,
                    json=json,
                    headers={**self._auth, **(headers or {})},
                    timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
                ) as resp:
                    status = resp.status
                    body: Any = None
                    if status != 204:
                        text = await resp.text()
                        if text:
                            try:
                                body = await resp.json(content_type=None)
                            except ValueError:
                                body = {"detail": text[:500]}
            except asyncio.CancelledError:
                self.breaker.abandon()
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self.breaker.failure()
                last = CoreUnavailable(f"core unreachable: {type(exc).__name__}: {exc}".rstrip(": "))
                log.warning("core %s %s failed (attempt %d/%d): %s", method, _mask(path), attempt + 1, attempts, type(exc).__name__)
            else:
                if status >= 500:
                    self.breaker.failure()
                    last = CoreUnavailable(self._message(status, body), status=status, problem=self._problem(body))
                    log.warning("core %s %s → %d (attempt %d/%d)", method, _mask(path), status, attempt + 1, attempts)
                    if status not in _RETRY_STATUSES and status != 500:
                        raise last
                else:
                    self.breaker.success()
                    if status < 400:
                        return body
                    problem = self._problem(body)
                    msg = self._message(status, body)
                    if status == 404:
                        raise NotFound(msg, status=status, problem=problem)
                    if status == 409:
                        raise Conflict(msg, status=status, problem=problem)
                    if status in (400, 422):
                        raise ValidationFailed(msg, status=status, problem=problem)
                    raise CoreError(msg, status=status, problem=problem)
            if attempt + 1 < attempts:
                delay = self.backoff * (2**attempt)
                await asyncio.sleep(delay + random.uniform(0, delay / 2))
        assert last is not None
        raise last

    @staticmethod
    def _problem(body: Any) -> dict[str, Any]:
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _message(status: int, body: Any) -> str:
        if isinstance(body, dict):
            return str(body.get("detail") or body.get("title") or f"HTTP {status}")
        return f"HTTP {status}"

    @staticmethod
    def _parse(model: type[T], data: Any) -> T:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise CoreError(f"unexpected {model.__name__} document from core: {exc.error_count()} error(s)") from exc

    def _parse_list(self, model: type[T], data: Any, key: str) -> list[T]:
        items = data.get(key) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise CoreError(f"unexpected list document from core (no {key!r})")
        return [self._parse(model, item) for item in items]

    # --- health --------------------------------------------------------------------------
    async def health(self) -> Health:
        """Core liveness and database check, authenticated: a wrong token fails it too."""
        return self._parse(Health, await self._request("GET", "/healthz"))

    # --- accounts ------------------------------------------------------------------------
    async def get_account(self, account_number: str) -> Account:
        return self._parse(Account, await self._request("GET", f"/accounts/{account_number}"))

    async def find_accounts_by_phone(self, phone: str) -> list[Account]:
        data = await self._request("GET", "/accounts", params={"phone": phone})
        return self._parse_list(Account, data, "accounts")

    async def find_accounts_by_binding(self, channel: str, identity: str) -> list[Account]:
        data = await self._request("GET", "/accounts", params={"binding_channel": channel, "binding_identity": identity})
        return self._parse_list(Account, data, "accounts")

    async def find_account_by_binding(self, channel: str, identity: str) -> Account | None:
        accounts = await self.find_accounts_by_binding(channel, identity)
        return accounts[0] if accounts else None

    async def find_customers_by_name(self, name: str, *, limit: int = 20, timeout: float | None = None) -> list[Customer]:
        """Customers whose holder name contains ``name`` (2–64 characters with a letter; else
        ValidationFailed), exact and prefix matches first, at most ``limit`` (≤ 50). Names masked."""
        data = await self._request("GET", "/customers", params={"name": name, "limit": limit}, timeout=timeout)
        return self._parse_list(Customer, data, "customers")

    async def customers_by_account(self, account_numbers: Iterable[str], *, timeout: float | None = None) -> list[Customer]:
        """The masked holder names of these accounts (unknown ones left out), in as few calls as
        the core's batch size allows (50 a call; one call for a console queue)."""
        numbers = list(dict.fromkeys(account_numbers))
        out: list[Customer] = []
        for i in range(0, len(numbers), CUSTOMER_BATCH):
            chunk = ",".join(numbers[i:i + CUSTOMER_BATCH])
            data = await self._request("GET", "/customers", params={"account_numbers": chunk}, timeout=timeout)
            out += self._parse_list(Customer, data, "customers")
        return out

    async def bind_account(self, account_number: str, channel: str, identity: str) -> Account:
        data = await self._request("PUT", f"/accounts/{account_number}/bindings", json={"channel": channel, "identity": identity})
        return self._parse(Account, data)

    async def unbind_account(self, account_number: str, channel: str, identity: str) -> Account:
        data = await self._request("DELETE", f"/accounts/{account_number}/bindings", json={"channel": channel, "identity": identity})
        return self._parse(Account, data)

    # --- bills ---------------------------------------------------------------------------
    async def list_bills(self, account_number: str, month: str | None = None, status: str | None = None) -> list[Bill]:
        data = await self._request("GET", f"/accounts/{account_number}/bills", params={"month": month, "status": status})
        return self._parse_list(Bill, data, "bills")

    async def get_arrears(self, account_number: str) -> Arrears:
        return self._parse(Arrears, await self._request("GET", f"/accounts/{account_number}/arrears"))

    async def issue_bill(
        self,
        account_number: str,
        month: str,
        kwh: Decimal | int | str,
        *,
        peak_kwh: Decimal | int | str | None = None,
        valley_kwh: Decimal | int | str | None = None,
        due_date: date | None = None,
    ) -> Bill:
        body: dict[str, Any] = {"month": month, "kwh": _money(kwh)}
        if peak_kwh is not None:
            body["peak_kwh"] = _money(peak_kwh)
        if valley_kwh is not None:
            body["valley_kwh"] = _money(valley_kwh)
        if due_date is not None:
            body["due_date"] = due_date.isoformat()
        # one bill per (account, month): the pair is the idempotency key
        data = await self._request("POST", f"/accounts/{account_number}/bills", json=body, idempotent=True)
        return self._parse(Bill, data)

    # --- payments ------------------------------------------------------------------------
    async def create_payment(
        self,
        out_trade_no: str,
        account_number: str,
        amount: Decimal | int | str,
        channel: str,
        status: str = "pending",
    ) -> Payment:
        body = {"out_trade_no": out_trade_no, "account_number": account_number, "amount": _money(amount), "channel": channel, "status": status}
        return self._parse(Payment, await self._request("POST", "/payments", json=body, idempotent=True))

    async def confirm_payment(self, out_trade_no: str, trade_no: str, total_amount: Decimal | int | str) -> Payment:
        body = {"trade_no": trade_no, "total_amount": _money(total_amount)}
        return self._parse(Payment, await self._request("POST", f"/payments/{out_trade_no}/confirm", json=body, idempotent=True))

    async def get_payment(self, out_trade_no: str) -> Payment:
        return self._parse(Payment, await self._request("GET", f"/payments/{out_trade_no}"))

    async def list_payments(self, account_number: str) -> list[Payment]:
        return self._parse_list(Payment, await self._request("GET", f"/accounts/{account_number}/payments"), "payments")

    # --- outages -------------------------------------------------------------------------
    async def list_outages(
        self,
        *,
        district: str | None = None,
        address: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        active_at: datetime | str | None = None,
        starts_after: datetime | str | None = None,
        starts_before: datetime | str | None = None,
    ) -> list[Outage]:
        params = {
            "district": district,
            "address": address,
            "status": status,
            "kind": kind,
            "active_at": _iso(active_at),
            "starts_after": _iso(starts_after),
            "starts_before": _iso(starts_before),
        }
        return self._parse_list(Outage, await self._request("GET", "/outages", params=params), "outages")

    async def get_outage(self, outage_id: int) -> Outage:
        return self._parse(Outage, await self._request("GET", f"/outages/{outage_id}"))

    async def create_outage(
        self,
        kind: str,
        district: str,
        scope: str,
        start_at: datetime,
        *,
        estimated_end_at: datetime | None = None,
        cause: str = "",
        streets: list[str] | None = None,
        status: str | None = None,
        idempotency_key: str | None = None,
    ) -> Outage:
        body: dict[str, Any] = {
            "kind": kind,
            "district": district,
            "scope": scope,
            "start_at": _iso(start_at),
            "estimated_end_at": _iso(estimated_end_at),
            "cause": cause,
            "streets": streets or [],
        }
        if status is not None:
            body["status"] = status
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = await self._request("POST", "/outages", json=body, headers=headers, idempotent=bool(idempotency_key))
        return self._parse(Outage, data)

    async def update_outage(self, outage_id: int, **changes: Any) -> Outage:
        """Change status / estimated_end_at / actual_end_at / cause / scope / streets."""
        body = {k: (_iso(v) if isinstance(v, (datetime, date)) else v) for k, v in changes.items()}
        return self._parse(Outage, await self._request("PATCH", f"/outages/{outage_id}", json=body, idempotent=True))

    # --- work orders ---------------------------------------------------------------------
    async def create_work_order(
        self,
        type: str,  # noqa: A002 - the API's field name
        description: str,
        *,
        account_number: str | None = None,
        priority: str = "normal",
        channel: str | None = None,
        contact_phone: str | None = None,
        address: str | None = None,
        details: dict[str, Any] | None = None,
        idempotency_key: str,
    ) -> WorkOrder:
        body = {
            "type": type,
            "description": description,
            "account_number": account_number,
            "priority": priority,
            "channel": channel,
            "contact_phone": contact_phone,
            "address": address,
            "details": details or {},
        }
        data = await self._request("POST", "/work-orders", json=body, headers={"Idempotency-Key": idempotency_key}, idempotent=True)
        return self._parse(WorkOrder, data)

    async def get_work_order(self, work_order_id: str) -> WorkOrder:
        return self._parse(WorkOrder, await self._request("GET", f"/work-orders/{work_order_id}"))

    async def list_work_orders(
        self, account_number: str | None = None, status: str | None = None, *, contact_phone: str | None = None, limit: int = 50
    ) -> list[WorkOrder]:
        params = {"account_number": account_number, "status": status, "contact_phone": contact_phone, "limit": limit}
        return self._parse_list(WorkOrder, await self._request("GET", "/work-orders", params=params), "work_orders")

    async def transition_work_order(self, work_order_id: str, status: str, note: str | None = None) -> WorkOrder:
        # moving to the status it already has is a no-op on the core, so retrying is safe
        data = await self._request(
            "POST", f"/work-orders/{work_order_id}/transitions", json={"status": status, "note": note}, idempotent=True
        )
        return self._parse(WorkOrder, data)

    # --- halls & appointments ------------------------------------------------------------
    async def list_halls(self, district: str | None = None) -> list[Hall]:
        return self._parse_list(Hall, await self._request("GET", "/halls", params={"district": district}), "halls")

    async def list_slots(self, hall_id: int, date: date | str | None = None, *, only_available: bool = False) -> list[Slot]:
        params = {"date": _iso(date), "available": "true" if only_available else None}
        return self._parse_list(Slot, await self._request("GET", f"/halls/{hall_id}/slots", params=params), "slots")

    async def book_appointment(
        self,
        slot_id: int,
        account_number: str | None,
        contact_name: str,
        contact_phone: str,
        purpose: str,
        idempotency_key: str,
    ) -> Appointment:
        body = {
            "slot_id": slot_id,
            "account_number": account_number,
            "contact_name": contact_name,
            "contact_phone": contact_phone,
            "purpose": purpose,
        }
        data = await self._request("POST", "/appointments", json=body, headers={"Idempotency-Key": idempotency_key}, idempotent=True)
        return self._parse(Appointment, data)

    async def get_appointment(self, appointment_id: int) -> Appointment:
        return self._parse(Appointment, await self._request("GET", f"/appointments/{appointment_id}"))

    async def list_appointments(
        self, account_number: str | None = None, *, contact_phone: str | None = None, status: str | None = None
    ) -> list[Appointment]:
        params = {"account_number": account_number, "contact_phone": contact_phone, "status": status}
        return self._parse_list(Appointment, await self._request("GET", "/appointments", params=params), "appointments")

    async def cancel_appointment(self, appointment_id: int) -> Appointment:
        return self._parse(Appointment, await self._request("DELETE", f"/appointments/{appointment_id}"))

    # --- tariffs -------------------------------------------------------------------------
    async def get_tariff(self, category: str) -> Tariff:
        return self._parse(Tariff, await self._request("GET", f"/tariffs/{category}"))

    async def quote(
        self,
        category: str,
        kwh: Decimal | int | str | None = None,
        peak_kwh: Decimal | int | str | None = None,
        valley_kwh: Decimal | int | str | None = None,
    ) -> Quote:
        params = {
            "kwh": None if kwh is None else _money(kwh),
            "peak_kwh": None if peak_kwh is None else _money(peak_kwh),
            "valley_kwh": None if valley_kwh is None else _money(valley_kwh),
        }
        return self._parse(Quote, await self._request("GET", f"/tariffs/{category}/quote", params=params))

    # --- subscriptions -------------------------------------------------------------------
    async def list_subscriptions(
        self,
        account_number: str | None = None,
        topic: str | None = None,
        channel: str | None = None,
        identity: str | None = None,
        *,
        district: str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[Subscription]:
        """Subscriptions ordered by id; ``district`` keeps accounts in that district; page with
        ``after_id=<last id>`` and ``limit`` (≤ 10000) for large fan-outs."""
        params = {
            "account_number": account_number, "topic": topic, "channel": channel, "identity": identity,
            "district": district, "limit": limit, "after_id": after_id,
        }
        return self._parse_list(Subscription, await self._request("GET", "/subscriptions", params=params), "subscriptions")

    async def create_subscription(self, account_number: str, topic: str, channel: str, identity: str) -> Subscription:
        body = {"account_number": account_number, "topic": topic, "channel": channel, "identity": identity}
        # (account, topic, channel, identity) is unique: re-creating returns the existing row
        return self._parse(Subscription, await self._request("POST", "/subscriptions", json=body, idempotent=True))

    async def delete_subscription(
        self, account_number: str, topic: str | None = None, channel: str | None = None, identity: str | None = None
    ) -> int:
        """Remove matching subscriptions (topic/channel/identity None = any); returns how many."""
        params = {"account_number": account_number, "topic": topic, "channel": channel, "identity": identity}
        data = await self._request("DELETE", "/subscriptions", params=params)
        return int((data or {}).get("deleted", 0))

    # --- events --------------------------------------------------------------------------
    async def read_events(self, after: str | None = None, limit: int = 100, *, types: list[str] | None = None) -> EventPage:
        params = {"after": after, "limit": limit, "type": ",".join(types) if types else None}
        return self._parse(EventPage, await self._request("GET", "/events", params=params))
