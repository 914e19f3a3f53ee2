"""backend_client — the only way the bot reaches the core (over its HTTP API under ``/api/v1``).

Usage::

    async with CoreClient(settings.core_base_url, timeout=settings.core_timeout_seconds, token=settings.core_token()) as core:
        account = await core.get_account("3100000001")

Every call has a timeout; idempotent calls (GET/PUT/DELETE, keyed POSTs) are retried with
exponential backoff; a circuit breaker fails fast while the core is down. Failures are typed:
``CoreError`` (base) ⊃ ``CoreUnavailable`` (connection/timeout/5xx/circuit open), ``NotFound``
(404), ``ValidationFailed`` (400/422, ``.problem``/``.errors``/``.code``), ``Conflict`` (409).
Results are frozen pydantic models from :mod:`backend_client.models` (money is ``Decimal``).

Methods of :class:`CoreClient`:

- ``health()`` → Health — core liveness and database reachability.
- ``get_account(account_number)`` → Account — one account (户号) with its channel bindings.
- ``find_accounts_by_phone(phone)`` → list[Account] — accounts registered with a phone number.
- ``find_account_by_binding(channel, identity)`` → Account | None — most recently bound account.
- ``find_accounts_by_binding(channel, identity)`` → list[Account] — all accounts bound to it.
- ``find_customers_by_name(name, *, limit=20, timeout=None)`` → list[Customer] — customers whose
  holder name contains ``name`` (2–64 characters with a letter), exact and prefix matches first;
  account numbers and masked names (``张*``) only.
- ``customers_by_account(account_numbers, *, timeout=None)`` → list[Customer] — the masked names
  of a batch of accounts (50 per call; unknown accounts left out).
- ``bind_account(account_number, channel, identity)`` → Account — bind (idempotent).
- ``unbind_account(account_number, channel, identity)`` → Account — unbind (idempotent).
- ``list_bills(account_number, month=None, status=None)`` → list[Bill] — newest first; month
  ``YYYY-MM``, status ``unpaid`` (unpaid or partial) / ``paid``.
- ``get_arrears(account_number)`` → Arrears — amount owed, overdue part, unpaid bills.
- ``issue_bill(account_number, month, kwh, *, peak_kwh=None, valley_kwh=None, due_date=None)``
  → Bill — price a month's usage from the tariff table and issue it (emits ``bill.issued``).
- ``create_payment(out_trade_no, account_number, amount, channel, status="pending")`` → Payment —
  idempotent by ``out_trade_no``; amount must be > 0 and ≤ amount owed (else ValidationFailed).
- ``confirm_payment(out_trade_no, trade_no, total_amount)`` → Payment — mark paid and settle bills,
  oldest first, exactly once (idempotent; another trade_no/amount → Conflict).
- ``get_payment(out_trade_no)`` → Payment.
- ``list_payments(account_number)`` → list[Payment] — newest first.
- ``list_outages(*, district, address, status, kind, active_at, starts_after, starts_before)``
  → list[Outage] — planned/unplanned outages matching the filters (all optional).
- ``get_outage(outage_id)`` → Outage.
- ``create_outage(kind, district, scope, start_at, *, estimated_end_at, cause, streets, status,
  idempotency_key)`` → Outage — emits ``outage.created``.
- ``update_outage(outage_id, **changes)`` → Outage — status/times/cause/scope; emits ``outage.updated``.
- ``create_work_order(type, description, *, account_number=None, priority="normal", channel=None,
  contact_phone=None, address=None, details=None, idempotency_key)`` → WorkOrder — id ``WO``+12
  digits, SLA due time set per 95598 commitments; same key + same body → the same order.
- ``get_work_order(work_order_id)`` → WorkOrder — with status timestamps and history.
- ``list_work_orders(account_number=None, status=None, *, contact_phone=None, limit=50)``
  → list[WorkOrder] — newest first.
- ``transition_work_order(work_order_id, status, note=None)`` → WorkOrder — created → dispatched →
  in_progress → resolved → closed (illegal step → Conflict; same status → no-op).
- ``list_halls(district=None)`` → list[Hall] — service halls (营业厅).
- ``list_slots(hall_id, date=None, *, only_available=False)`` → list[Slot] — bookable half-days.
- ``book_appointment(slot_id, account_number, contact_name, contact_phone, purpose,
  idempotency_key)`` → Appointment — capacity enforced (full → Conflict).
- ``get_appointment(appointment_id)`` → Appointment.
- ``list_appointments(account_number=None, *, contact_phone=None, status=None)`` → list[Appointment]
  — an account's (or a contact phone's) appointments, the soonest visit first.
- ``cancel_appointment(appointment_id)`` → Appointment — frees the place (idempotent).
- ``get_tariff(category)`` → Tariff — tiers, peak/valley hours and prices (residential/commercial).
- ``quote(category, kwh, peak_kwh=None, valley_kwh=None)`` → Quote — cost of a usage, line by line.
- ``list_subscriptions(account_number=None, topic=None, channel=None, identity=None, *,
  district=None, limit=None, after_id=None)`` → list[Subscription] — ordered by id; ``district``
  keeps accounts in that district; page with ``after_id`` (last id seen) and ``limit`` ≤ 10000.
- ``create_subscription(account_number, topic, channel, identity)`` → Subscription — idempotent;
  topics ``outage``, ``bill``, ``work_order``, ``payment``.
- ``delete_subscription(account_number, topic=None, channel=None, identity=None)`` → int removed.
- ``read_events(after=None, limit=100, *, types=None)`` → EventPage — change feed
  (``outage.created``, ``outage.updated``, ``work_order.status_changed``, ``bill.issued``,
  ``payment.confirmed``); pass ``page.next_cursor`` as ``after`` next time.
- ``close()`` — close the owned session (also done by ``async with``).
"""

from .client import CircuitBreaker, CoreClient
from .errors import Conflict, CoreError, CoreUnavailable, NotFound, ValidationFailed
from .models import (
    Account,
    Appointment,
    Arrears,
    Bill,
    Binding,
    Customer,
    Event,
    EventPage,
    Hall,
    Health,
    Outage,
    Payment,
    Quote,
    QuoteLine,
    Slot,
    Subscription,
    Tariff,
    TariffTier,
    WorkOrder,
)

__all__ = [
    "Account",
    "Appointment",
    "Arrears",
    "Bill",
    "Binding",
    "CircuitBreaker",
    "Conflict",
    "CoreClient",
    "CoreError",
    "CoreUnavailable",
    "Customer",
    "Event",
    "EventPage",
    "Hall",
    "Health",
    "NotFound",
    "Outage",
    "Payment",
    "Quote",
    "QuoteLine",
    "Slot",
    "Subscription",
    "Tariff",
    "TariffTier",
    "ValidationFailed",
    "WorkOrder",
]
