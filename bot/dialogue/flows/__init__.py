"""Business flows: one ``flow_<intent>`` method per business intent, by domain.

- ``billing``: bill, usage, paying a bill, a payment issue, an e-invoice;
- ``outages``: reporting an outage, planned outages, repairs, a work order's status;
- ``service_requests``: complaint, feedback, reporting a violation (simple work orders);
- ``applications``: new connection, solar, EV charging, account change;
- ``tariffs``: tariff consultation and quotes;
- ``appointments``: booking a visit to a service hall;
- ``subscriptions``: notification subscriptions and binding an account.

Each module is a mixin of ``DialogueEngine``; the engine registers every ``flow_<name>`` for a
name of ``BUSINESS_INTENTS`` (``DialogueEngine.flows``). A flow is re-run from the top each turn
(like a Rasa form with dynamic required slots): every ``require``/``ask``/``confirm`` either
returns a filled slot or asks for it and stops the turn (``bot.dialogue.forms.Stop``).
"""

BUSINESS_INTENTS = {
    "bill_query", "usage_query", "pay_bill", "payment_issue", "report_outage", "outage_schedule",
    "repair_request", "complaint", "feedback", "report_violation", "work_order_status",
    "new_connection", "solar_connection", "ev_charging", "account_change", "tariff_consult",
    "invoice_request", "book_appointment", "subscribe_notifications", "unsubscribe_notifications",
    "bind_account",
}

WORK_ORDER_TYPES = ("repair", "outage", "complaint", "feedback", "violation", "new_connection", "solar", "ev_charging",
                    "account_change", "invoice", "appointment")


def remember_order(turn: object, work_order_id: str) -> None:
    """Note a work order this conversation created: "这个工单现在什么状态" asks about it, and the
    customer who filed it may see it without an account (``flow_work_order_status``)."""
    slots = turn.slots  # type: ignore[attr-defined]
    orders = [w for w in slots.get("_orders") or [] if w != work_order_id]
    slots["_orders"] = (orders + [work_order_id])[-10:]
