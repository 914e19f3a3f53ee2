"""powerbot's 95598 business as Rasa custom actions (run by ``powerbot rasa actions``).

Each action does what the powerbot flow of the same name does (``bot/dialogue/flows``), with
powerbot's rules and readings of customer words (``intents``), on the slots of a Rasa
tracker: personal data only for a verified identity (``bot.rasa.identity``), writes only after
the customer's yes to what is written (``bot.rasa.base.WriteAction``). The names are the ones
of ``training_data/domain.yml`` and the starter project ``examples/rasa``.

Slots the actions read: ``account_number``, ``last4``, ``month``, ``date``, ``district``,
``address``, ``contact_phone``, ``contact_name``, ``description``, ``work_order_id``, ``topic``,
``kwh``, ``hall_id``, ``slot_id``, ``language``; and keep: ``verified_account``,
``verify_failures``, ``verify_failed_at``, ``confirm``, ``confirm_key``, ``pending_action``,
``filed_orders``, ``offered``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rasa_sdk.events import EventType, FollowupAction, SlotSet

from backend_client import Conflict, NotFound
from backend_client.models import Account
from bot.dialogue.flows import WORK_ORDER_TYPES
from bot.dialogue.flows.applications import WO_TYPE
from bot.dialogue.flows.outages import _overlaps_day
from bot.dialogue.flows.places import district_label
from bot.dialogue.flows.subscriptions import NOTIFY_CHANNELS
from bot.dialogue.responses import BILL_STATUSES, CHINA_TZ, TOPICS, WO_STATUSES, kwh_fmt, local
from bot.dialogue.verification import aware
from bot.rasa.base import PENDING_ACTION, VERIFIED_ACCOUNT, Asked, Context, CoreAction, Draft, WriteAction
from bot.rasa.identity import check, verified_account
from common.clock import utcnow
from common.money import money_text
from common.pii import mask_account, mask_phone
from intents.signals import is_angry, names_tariff_category, tariff_category, word_chars
from intents.signals import topic as topic_in
from intents.slots import district as district_in
from intents.slots import kwh as kwh_in
from intents.slots import mobile
from intents.slots import work_order_id as work_order_in

FILED = "filed_orders"  # work orders filed in this conversation: their status needs no account
OFFERED = "offered"  # the halls / slots last offered, by position


def _label(ctx: Context, prefix: str, key: str | None, known: tuple[str, ...] | frozenset[str]) -> str:
    return ctx.phrase(f"{prefix}_{key}") if key in known else (key or "")


def _filed(ctx: Context, work_order_id: str) -> list[EventType]:
    kept = [w for w in ctx.slot(FILED) or [] if w != work_order_id]
    return [SlotSet(FILED, (kept + [work_order_id])[-10:]), SlotSet("work_order_id", work_order_id)]


async def _proven(ctx: Context) -> Account | None:
    """The account this conversation verified, when there is one (no question asked)."""
    number = ctx.slot(VERIFIED_ACCOUNT)
    if not number:
        return None
    try:
        return await ctx.core.get_account(str(number))
    except NotFound:
        return None


async def _contact_phone(ctx: Context, form: str, acc: Account | None) -> str:
    """A number to call back: given in this conversation, else the verified account's, else asked."""
    phone = mobile(str(ctx.slot("contact_phone") or "")) or (mobile(acc.phone) if acc else None)
    if not phone:
        ctx.ask("utter_ask_contact_phone", form=form, slot="contact_phone")
    assert phone is not None
    return phone


# --- identity ------------------------------------------------------------------------------
class ActionVerifyIdentity(CoreAction):
    """The last 4 digits of the account's registered phone, with powerbot's lockout."""

    def name(self) -> str:
        return "action_verify_identity"

    async def act(self, ctx: Context) -> None:
        await check(ctx)


class ActionResume(CoreAction):
    """A form finished: go back to the request that opened it (``pending_action``)."""

    def name(self) -> str:
        return "action_resume"

    async def act(self, ctx: Context) -> None:
        pending = ctx.slot(PENDING_ACTION)
        if pending:
            ctx.events.append(FollowupAction(str(pending)))


# --- bills and payment -----------------------------------------------------------------------
class _BillAction(CoreAction):
    async def bill(self, ctx: Context) -> tuple[Account, Any] | None:
        acc = await verified_account(ctx, self.name())
        month = ctx.slot("month")
        bills = await ctx.core.list_bills(acc.account_number, month=month)
        if not bills:
            ctx.say("utter_no_bill", month=month or "")
            return None
        ctx.set("month", bills[0].month)
        return acc, bills[0]


class ActionBillQuery(_BillAction):
    def name(self) -> str:
        return "action_bill_query"

    async def act(self, ctx: Context) -> None:
        asked = await self.bill(ctx)
        if asked is None:
            return
        acc, b = asked
        arrears = await ctx.core.get_arrears(acc.account_number)
        ctx.say("utter_bill", account=mask_account(acc.account_number), month=b.month, amount=money_text(b.amount),
                kwh=kwh_fmt(b.kwh), paid=money_text(b.paid_amount), balance=money_text(b.balance),
                due=b.due_date.isoformat(), status=_label(ctx, "utter_fragment_bill_status", b.status, BILL_STATUSES),
                owed=money_text(arrears.amount_owed))


class ActionUsageQuery(_BillAction):
    def name(self) -> str:
        return "action_usage_query"

    async def act(self, ctx: Context) -> None:
        asked = await self.bill(ctx)
        if asked is None:
            return
        acc, b = asked
        split = ""
        if b.peak_kwh is not None and b.valley_kwh is not None:
            split = ctx.phrase("utter_fragment_usage_split", peak=kwh_fmt(b.peak_kwh), valley=kwh_fmt(b.valley_kwh))
        ctx.say("utter_usage", account=mask_account(acc.account_number), month=b.month, kwh=kwh_fmt(b.kwh), split=split,
                amount=money_text(b.amount))


class ActionPayBill(CoreAction):
    """The amount owed and how to pay it. An online payment link needs powerbot's gateway with
    Alipay (its order store and notify): an action server alone gives the ways to pay."""

    def name(self) -> str:
        return "action_pay_bill"

    async def act(self, ctx: Context) -> None:
        acc = await verified_account(ctx, self.name())
        arrears = await ctx.core.get_arrears(acc.account_number)
        if arrears.amount_owed <= 0:
            ctx.say("utter_no_arrears", account=mask_account(acc.account_number))
            return
        ctx.say("utter_how_to_pay", account=mask_account(acc.account_number), amount=money_text(arrears.amount_owed))


# --- outages ---------------------------------------------------------------------------------
def _fault_address(ctx: Context, acc: Account | None) -> str | None:
    return ctx.slot("address") or (acc.address if acc else None)


class ActionReportOutage(WriteAction):
    """No power: an outage the core knows at the address is explained (nothing filed);
    otherwise an outage order, after the customer's yes."""

    def name(self) -> str:
        return "action_report_outage"

    async def draft(self, ctx: Context) -> Draft:
        acc = await _proven(ctx)
        address = _fault_address(ctx, acc)
        if not address:
            ctx.ask("utter_ask_location_address" if ctx.slot("account_number") and not acc else "utter_ask_address",
                    form="report_outage_form", slot="address", account=mask_account(str(ctx.slot("account_number") or "")))
        assert address is not None
        drafted = ctx.slot("confirm_key") and ctx.slot(PENDING_ACTION) == self.name()
        if not drafted:  # a known outage is told before anything is drafted
            now = utcnow()
            known = [o for o in await ctx.core.list_outages(address=address, active_at=now) if o.status in ("active", "scheduled")]
            if known:
                o = known[0]
                ctx.set("known_outage", o.id)
                ctx.say("utter_known_outage", scope=o.scope, cause=o.cause or ctx.phrase("utter_fragment_fault_cause"),
                        end=local(o.estimated_end_at))
                raise Asked
        phone = await _contact_phone(ctx, "report_outage_form", acc)
        return _order_draft(ctx, "outage", ctx.slot("description") or "停电", "high", acc, phone, address,
                            "utter_confirm_outage_order_details", {"address": address, "phone": mask_phone(phone)},
                            "utter_outage_order_created")


class ActionRepairRequest(WriteAction):
    def name(self) -> str:
        return "action_repair_request"

    async def draft(self, ctx: Context) -> Draft:
        acc = await _proven(ctx)
        address = _fault_address(ctx, acc)
        if not address:
            ctx.ask("utter_ask_address", form="repair_request_form", slot="address")
        assert address is not None
        phone = await _contact_phone(ctx, "repair_request_form", acc)
        return _order_draft(ctx, "repair", ctx.slot("description") or "报修", "normal", acc, phone, address,
                            "utter_confirm_repair", {"address": address}, "utter_repair_created")


def _order_draft(ctx: Context, wo_type: str, description: str, priority: str, acc: Account | None, phone: str | None,
                 address: str | None, confirm: str, shown: dict[str, Any], done: str,
                 details: dict[str, Any] | None = None) -> Draft:
    """A work order for a yes: the verified account (if any) is linked, nobody else's."""
    number = acc.account_number if acc else None
    fields = {"type": wo_type, "description": description[:500], "priority": priority, "account": number,
              "phone": phone, "address": address, "channel": ctx.channel}

    async def write(key: str) -> tuple[str, dict[str, Any]]:
        wo = await ctx.core.create_work_order(
            wo_type, description[:500], account_number=number, priority=priority, channel=ctx.channel,
            contact_phone=phone, address=address,
            details={"district": district_in(address or ""), "via": "rasa", **(details or {})}, idempotency_key=key)
        ctx.events += _filed(ctx, wo.id)
        return done, {"work_order_id": wo.id, "sla": local(wo.sla_due_at)}

    return Draft(confirm=confirm, shown=shown, fields=fields, write=write)


class ActionOutageSchedule(CoreAction):
    """Planned outages of a district (on a day, else the coming days)."""

    def name(self) -> str:
        return "action_outage_schedule"

    async def act(self, ctx: Context) -> None:
        district = district_in(str(ctx.slot("district") or "")) or district_in(ctx.text)
        if not district and (acc := await _proven(ctx)):
            district = acc.district
        if not district:
            ctx.ask("utter_ask_district", form="outage_schedule_form", slot="district")
        assert district is not None
        day = ctx.slot("date")
        kwargs: dict[str, Any] = {"district": district, "kind": "planned"}
        if day:
            d0 = datetime.fromisoformat(str(day)).replace(tzinfo=CHINA_TZ)
            kwargs.update(starts_after=d0 - timedelta(days=1), starts_before=d0 + timedelta(days=1))
        else:
            kwargs.update(starts_after=utcnow() - timedelta(days=1))
        outages = [o for o in await ctx.core.list_outages(**kwargs) if o.status in ("scheduled", "active")]
        if day:
            outages = [o for o in outages if _overlaps_day(o, str(day))]
        label = district_label(district, ctx.lang)
        if not outages:
            ctx.say("utter_no_planned_outage", district=label, day=day or ctx.phrase("utter_fragment_coming_days"))
            return
        lines = "\n".join(
            ctx.phrase("utter_fragment_outage_line", start=local(o.start_at), end=local(o.estimated_end_at), scope=o.scope)
            + (ctx.phrase("utter_fragment_outage_cause", cause=o.cause) if o.cause else "")
            for o in outages[:5])
        ctx.say("utter_planned_outages", district=label, outages=lines)


# --- complaints and applications -------------------------------------------------------------
class ActionComplaint(WriteAction):
    """A complaint: its description, a number to call back, the yes; urgent when angry."""

    def name(self) -> str:
        return "action_complaint"

    async def draft(self, ctx: Context) -> Draft:
        description = ctx.slot("description")
        if not description and ctx.intent == "complaint" and word_chars(ctx.text) >= 8:
            description = ctx.text  # a long enough first message is the complaint itself
            ctx.set("description", description)
        if not description:
            ctx.ask("utter_ask_complaint", form="complaint_form", slot="description")
        acc = await _proven(ctx)
        phone = await _contact_phone(ctx, "complaint_form", acc)
        angry = is_angry(str(description))
        address = ctx.slot("address")
        d = _order_draft(ctx, "complaint", str(description), "high" if angry else "normal", acc, phone, address,
                         "utter_confirm_complaint_details",
                         {"description": str(description)[:60], "address": address or "-", "phone": mask_phone(phone)},
                         "utter_complaint_urgent_created" if angry else "utter_complaint_created",
                         details={"angry": angry, "category": "service"})
        return d


class _ApplicationAction(WriteAction):
    """An application (new connection, solar, EV charger, account change): the address (the
    account's for a verified customer), a number to call back, the yes."""

    flow = "new_connection"
    needs_account = False

    def name(self) -> str:
        return f"action_{self.flow}"

    async def application(self, ctx: Context) -> Draft:
        acc = await verified_account(ctx, self.name()) if self.needs_account else await _proven(ctx)
        address = ctx.slot("address") or (acc.address if acc else None)
        if not address:
            ctx.ask("utter_ask_address", form="application_form", slot="address")
        phone = await _contact_phone(ctx, "application_form", acc)
        wo_type = WO_TYPE[self.flow]
        description = str(ctx.slot("description") or self.flow)
        return _order_draft(
            ctx, wo_type, description, "normal", acc, phone, address, "utter_confirm_application_details",
            {"what": ctx.phrase(f"utter_fragment_work_order_type_{wo_type}"),
             "account": mask_account(acc.account_number) if acc else "-", "address": address,
             "phone": mask_phone(phone), "description": description[:120]},
            "utter_application_created")


class ActionNewConnection(_ApplicationAction):
    flow = "new_connection"

    async def draft(self, ctx: Context) -> Draft:
        return await self.application(ctx)


class ActionSolarConnection(_ApplicationAction):
    flow = "solar_connection"

    async def draft(self, ctx: Context) -> Draft:
        return await self.application(ctx)


class ActionEvCharging(_ApplicationAction):
    flow = "ev_charging"

    async def draft(self, ctx: Context) -> Draft:
        return await self.application(ctx)


class ActionAccountChange(_ApplicationAction):
    flow = "account_change"
    needs_account = True

    async def draft(self, ctx: Context) -> Draft:
        return await self.application(ctx)


# --- work orders -----------------------------------------------------------------------------
class ActionWorkOrderStatus(CoreAction):
    """One work order by its number, or the open orders of the verified account. An order of
    an account is shown only once this conversation verified that account (an order filed in
    this conversation needs nothing more)."""

    def name(self) -> str:
        return "action_work_order_status"

    async def act(self, ctx: Context) -> None:
        wid = ctx.slot("work_order_id") or work_order_in(ctx.text)
        if wid:
            try:
                wo = await ctx.core.get_work_order(str(wid).upper())
            except NotFound:
                ctx.set("work_order_id", None)
                ctx.say("utter_work_order_not_found", work_order_id=wid)
                return
            filed = wo.id in (ctx.slot(FILED) or [])
            if not filed and (wo.account_number is None or ctx.slot(VERIFIED_ACCOUNT) != wo.account_number):
                if wo.account_number is None:  # anonymous (a violation report): nobody else sees it
                    ctx.say("utter_work_order_not_found", work_order_id=wid)
                    return
                ctx.set("work_order_id", wo.id)
                await verified_account(ctx, self.name(), number=wo.account_number)
            self._say(ctx, [wo])
            return
        acc = await verified_account(ctx, self.name())
        orders = await ctx.core.list_work_orders(acc.account_number, limit=50)
        if not orders:
            ctx.say("utter_no_work_orders")
            return
        orders.sort(key=lambda o: aware(o.created_at), reverse=True)
        still_open = [o for o in orders if o.status not in ("resolved", "closed")]
        self._say(ctx, still_open or orders[:1], none_open=not still_open)

    @staticmethod
    def _say(ctx: Context, orders: list[Any], *, none_open: bool = False) -> None:
        now = utcnow()
        lines = []
        for wo in orders[:10]:
            late = wo.sla_due_at is not None and wo.status not in ("resolved", "closed") and aware(wo.sla_due_at) < now
            lines.append(ctx.phrase(
                "utter_fragment_work_order_line", work_order_id=wo.id,
                type=_label(ctx, "utter_fragment_work_order_type", wo.type, WORK_ORDER_TYPES),
                status=_label(ctx, "utter_fragment_work_order_status", wo.status, WO_STATUSES),
                created=local(wo.created_at), sla=local(wo.sla_due_at),
            ) + (ctx.phrase("utter_fragment_sla_passed") if late else ""))
        if none_open:
            ctx.say("utter_work_orders_none_open", line=lines[0])
        else:
            ctx.say("utter_work_orders_open", count=len(orders), lines="\n".join(lines))


# --- tariffs ---------------------------------------------------------------------------------
class ActionTariffConsult(CoreAction):
    """The price table of a category, or a quote for an amount of energy ("300度多少钱")."""

    def name(self) -> str:
        return "action_tariff_consult"

    async def act(self, ctx: Context) -> None:
        category = tariff_category(ctx.text)
        if not names_tariff_category(ctx.text) and (acc := await _proven(ctx)):
            category = acc.category
        tariff = await ctx.core.get_tariff(category)
        name = (ctx.phrase(f"utter_fragment_tariff_name_{category}", name=tariff.name)
                if category in ("residential", "commercial") else tariff.name)
        amount = kwh_in(ctx.text) or (str(ctx.slot("kwh")) if ctx.slot("kwh") else None)
        if amount:
            q = await ctx.core.quote(category, Decimal(str(amount)))
            lines = "\n".join(f"{ln.label}: {kwh_fmt(ln.kwh)} × {ln.price} = {money_text(ln.amount)}" for ln in q.lines)
            ctx.say("utter_quote", kwh=kwh_fmt(q.kwh), amount=money_text(q.amount), lines=lines, tariff=name)
            return
        if tariff.tiers:
            rows = "\n".join(
                (ctx.phrase("utter_fragment_tier_range", tier=t.tier, start=kwh_fmt(t.from_kwh), end=kwh_fmt(t.to_kwh))
                 if t.to_kwh is not None else ctx.phrase("utter_fragment_tier_over", tier=t.tier, start=kwh_fmt(t.from_kwh)))
                + f": {t.price}" for t in tariff.tiers)
        else:
            rows = f"{tariff.flat_price}"
        tou = ""
        if tariff.peak_price is not None and tariff.valley_price is not None:
            tou = ctx.phrase("utter_fragment_time_of_use", peak_hours=tariff.peak_hours, peak_price=tariff.peak_price,
                             valley_hours=tariff.valley_hours, valley_price=tariff.valley_price)
        ctx.say("utter_tariff", tariff=name, rows=rows, tou=tou)


# --- appointments ----------------------------------------------------------------------------
class ActionBookAppointment(WriteAction):
    """A visit to a service hall: the hall (of the district named, or chosen from a list), a
    free half day, a name and a number, the yes; a slot taken meanwhile is offered again."""

    def name(self) -> str:
        return "action_book_appointment"

    async def draft(self, ctx: Context) -> Draft:
        acc = await _proven(ctx)
        halls = await ctx.core.list_halls()
        hall_id = ctx.slot("hall_id")
        district = district_in(str(ctx.slot("district") or "")) or district_in(ctx.text) or (acc.district if acc else None)
        if hall_id is None and district:
            mine = [h for h in halls if h.district == district]
            if len(mine) == 1:
                hall_id = mine[0].id
                ctx.set("hall_id", float(hall_id))
        hall = next((h for h in halls if h.id == int(hall_id or 0)), None)
        if hall is None:
            ctx.set(OFFERED, {"hall_id": [h.id for h in halls]})
            lines = "\n".join(ctx.phrase("utter_fragment_hall_line", n=k, name=h.name, address=h.address)
                              for k, h in enumerate(halls, 1))
            ctx.ask("utter_ask_hall", form="book_appointment_form", slot="hall_id", halls=lines)
        assert hall is not None
        slots = await ctx.core.list_slots(hall.id, only_available=True)
        slot = next((s for s in slots if s.id == int(ctx.slot("slot_id") or 0)), None)
        if slot is None:
            if not slots:
                ctx.set("hall_id", None)
                ctx.ask("utter_no_slots")
            offered = slots[:6]
            ctx.set(OFFERED, {"slot_id": [s.id for s in offered]})
            lines = "\n".join(ctx.phrase("utter_fragment_slot_line", n=k, date=s.date.isoformat(),
                                         period=ctx.phrase(f"utter_fragment_period_{s.period}"), start=s.starts_at,
                                         end=s.ends_at, available=s.capacity - s.booked)
                              for k, s in enumerate(offered, 1))
            ctx.ask("utter_choose_slot", form="book_appointment_form", slot="slot_id", slots=lines)
        assert slot is not None
        name = ctx.slot("contact_name") or (acc.holder_name if acc else None)
        if not name:
            ctx.ask("utter_ask_contact_name", form="book_appointment_form", slot="contact_name")
        phone = await _contact_phone(ctx, "book_appointment_form", acc)
        purpose = str(ctx.slot("description") or "业务办理")
        number = acc.account_number if acc else None
        period = ctx.phrase(f"utter_fragment_period_{slot.period}")
        shown = {"hall": hall.name, "address": hall.address, "date": slot.date.isoformat(), "period": period,
                 "start": slot.starts_at, "end": slot.ends_at, "name": name, "phone": mask_phone(phone), "purpose": purpose}

        async def write(key: str) -> tuple[str, dict[str, Any]]:
            try:
                appt = await ctx.core.book_appointment(slot.id, number, str(name)[:64], phone, purpose[:200],
                                                       idempotency_key=key)
            except Conflict:
                ctx.set("slot_id", None)
                return "utter_slot_full", {}
            return "utter_appointment_booked_at", {"appointment_id": appt.id, "date": appt.date.isoformat(),
                                                   "period": period, "start": slot.starts_at, "end": slot.ends_at,
                                                   "hall": hall.name, "address": hall.address}

        fields = {"slot": slot.id, "account": number, "name": name, "phone": phone, "purpose": purpose}
        return Draft(confirm="utter_confirm_appointment_details", shown=shown, fields=fields, write=write)


# --- subscriptions ---------------------------------------------------------------------------
def _topic(ctx: Context) -> str:
    named = ctx.slot("topic") or topic_in(ctx.text)
    topic = named if named in TOPICS else "all"
    if ctx.slot("topic") != topic:
        ctx.set("topic", topic)  # kept: the yes that follows does not name it again
    return topic


class ActionSubscribeNotifications(WriteAction):
    """Notices of the topic named (all four when none is) on the channel the customer writes
    on when the core can notify it, else by SMS to the account's phone."""

    def name(self) -> str:
        return "action_subscribe_notifications"

    async def draft(self, ctx: Context) -> Draft:
        acc = await verified_account(ctx, self.name())
        topic = _topic(ctx)
        topics = list(TOPICS) if topic == "all" else [topic]
        if ctx.channel in NOTIFY_CHANNELS:
            channel, identity = ctx.channel, ctx.tracker.sender_id
            via = ctx.phrase(f"utter_fragment_notices_via_{ctx.channel}")
        else:
            phone = mobile(acc.phone) or acc.phone
            channel, identity = "sms", "+86" + phone
            via = ctx.phrase("utter_fragment_notices_via_sms_phone", phone=mask_phone(phone))
        names = ctx.phrase(f"utter_fragment_topic_{topic}")

        async def write(_key: str) -> tuple[str, dict[str, Any]]:
            for tp in topics:  # (account, topic, channel, identity) is unique: a retry makes nothing new
                await ctx.core.create_subscription(acc.account_number, tp, channel, identity)
            return "utter_subscribed_via", {"topics": names, "via": via}

        return Draft(confirm="utter_confirm_subscribe",
                     shown={"account": mask_account(acc.account_number), "topics": names, "via": via},
                     fields={"account": acc.account_number, "topics": topics, "channel": channel, "identity": identity},
                     write=write)


class ActionUnsubscribeNotifications(WriteAction):
    def name(self) -> str:
        return "action_unsubscribe_notifications"

    async def draft(self, ctx: Context) -> Draft:
        acc = await verified_account(ctx, self.name())
        topic = _topic(ctx)
        names = ctx.phrase(f"utter_fragment_topic_{topic}")
        sms = "+86" + (mobile(acc.phone) or acc.phone)

        async def write(_key: str) -> tuple[str, dict[str, Any]]:
            tp = None if topic == "all" else topic
            removed = await ctx.core.delete_subscription(acc.account_number, tp, ctx.channel, ctx.tracker.sender_id)
            removed += await ctx.core.delete_subscription(acc.account_number, tp, "sms", sms)
            if removed:
                return "utter_unsubscribed", {"count": removed}
            return "utter_not_subscribed", {"topics": names}

        return Draft(confirm="utter_confirm_unsubscribe", shown={"topics": names},
                     fields={"account": acc.account_number, "topic": topic, "unsubscribe": True}, write=write)


# --- a form's question asked again ------------------------------------------------------------
class _AskAgain(CoreAction):
    """Rasa asks a form's slot again after an answer its validation refused: the question
    whose words depend on the request (the list of halls or half days, the draft to confirm)
    is asked by the request's own action, as it asked it the first time."""

    slot = ""

    def name(self) -> str:
        return f"action_ask_{self.slot}"

    async def act(self, ctx: Context) -> None:
        pending = next((a for a in registered() if a().name() == ctx.slot(PENDING_ACTION)), None)
        if pending is None:
            ctx.say("utter_not_understood_slot")
            return
        await pending().act(ctx)


class ActionAskHallId(_AskAgain):
    slot = "hall_id"


class ActionAskSlotId(_AskAgain):
    slot = "slot_id"


class ActionAskConfirm(_AskAgain):
    slot = "confirm"


def asks_again() -> list[type[CoreAction]]:
    return [ActionAskHallId, ActionAskSlotId, ActionAskConfirm]


def registered() -> list[type[CoreAction]]:
    """The actions of this module (what ``powerbot rasa actions`` serves, with the validations)."""
    return [ActionVerifyIdentity, ActionResume, ActionBillQuery, ActionUsageQuery, ActionPayBill, ActionReportOutage,
            ActionRepairRequest, ActionOutageSchedule, ActionComplaint, ActionNewConnection, ActionSolarConnection,
            ActionEvCharging, ActionAccountChange, ActionWorkOrderStatus, ActionTariffConsult, ActionBookAppointment,
            ActionSubscribeNotifications, ActionUnsubscribeNotifications]

