"""Outage and repair flows: reporting an outage, planned outages, a repair, a work order's status.

Where is the fault? ``_location`` answers from the account of a bound or verified identity, or
asks: an account number alone proves nothing, so an unproven customer is asked for the address
(and the order is not linked to their account). A reported outage is first checked against the
outages the core knows in that district; a known one is explained, with an offer to subscribe
to its notices, instead of creating a duplicate order.

Expects of the class it is mixed into: ``core``; ``account``, ``require_account``, ``verify``
(``IdentityMixin``); ``ask``, ``require``, ``confirm``, ``finish``, ``contact_phone``,
``_order_done`` (``FormsMixin``); ``say``, ``phrase``, ``label`` (``Responses``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from backend_client import NotFound
from bot.dialogue.flows import WORK_ORDER_TYPES, remember_order
from bot.dialogue.forms import Stop
from bot.dialogue.flows.places import address_for, district_label, has_chinese, names_street, outage_area, outage_cause, street_of
from bot.dialogue.responses import CHINA_TZ, WO_STATUSES, local
from bot.dialogue.turn import Turn
from bot.dialogue.verification import aware
from bot.logs import mask_account, mask_phone
from common.clock import utcnow
from intents.places import find, street_mentioned, street_written
from intents.signals import (about_street_light, address_text, beyond_one_home, asks_fee, asks_if_restored, is_question,
                             looks_like_address, with_piece_replaced)
from intents.slots import district as district_in


class OutageFlows:
    async def _location(self, turn: Turn, flow: str, *, ask: bool = True) -> tuple[str | None, str | None, str | None]:
        """(account_number, district, address) for outage/repair flows. The account's registered
        address is used only for a bound or verified identity: for anyone else an account
        number proves nothing, so the customer is asked where the fault is (and the order is
        not linked to an account they have not proven). A district alone is not an address:
        the order needs the place itself."""
        if ask:
            await self.account_by_check(turn, flow)  # "ends with 9000": the named account's address
        number = turn.slots.get("account_number")
        unproven = bool(number) and number not in turn.authorized
        if unproven:
            try:
                await self.account(turn, str(number))
            except NotFound:  # "account 3199999999": said so (no one's data in it), and the place asked
                turn.slots.pop("account_number", None)
                self.say(turn, "utter_account_not_found", account=mask_account(str(number)))
                unproven = False
            number = None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        text = turn.message.text or ""
        if number:
            try:
                acc = await self.account(turn, number)
                place = turn.slots.get("address") or acc.address
                fixed = with_piece_replaced(place, text) if text != turn.slots.get("_text") else None
                if fixed:  # "it's not B1, the meter is in the B2 electrical room"
                    place = turn.slots["address"] = fixed
                return acc.account_number, acc.district, place
            except NotFound:
                turn.slots.pop("account_number", None)
        address = turn.slots.get("address")
        fixed = with_piece_replaced(address, text) if address and text != turn.slots.get("_text") else None
        if fixed:
            address = turn.slots["address"] = fixed
        first = str(turn.slots.get("_text") or "")
        if not address and not has_chinese(first) and looks_like_address(first) and names_street(first):
            # an English address in the request itself ("30 Lujiazui Ring Road, Pudong"): the NLU
            # marks Chinese addresses only
            address = address_text(first) or None
            if address:
                turn.set_slot("address", address)
        district = (district_in(address or "") or turn.slots.get("district") or turn.entities.get("district")
                    or district_in(first))
        if not address and ask:
            if unproven:
                self.ask(turn, flow, "location", "utter_ask_location_address", account=mask_account(str(turn.slots["account_number"])))
            self.ask(turn, flow, "location", "utter_ask_location")
        return None, district, address

    async def _known_outages(self, turn: Turn, address: str | None, district: str | None) -> bool:
        """Tell the customer about an outage the core knows where they are (once per request and
        address): one covering the address answers the report (no order, an offer of its
        notices; True); a street's fault in the district of an address the core cannot match
        (English) is only mentioned."""
        check = f"{turn.slots.get('_text')}|{address or ''}"
        if turn.slots.get("_outage_checked") == check:
            return False
        now = utcnow()
        known: list[Any] = []
        nearby: list[Any] = []
        if address and has_chinese(address):
            # the core matches the address to each outage's streets (another street of the
            # same district is not covered by this fault)
            known = [o for o in await self.core.list_outages(address=address, active_at=now)
                     if o.status in ("active", "scheduled")]
        elif district or address:
            # an address the core cannot match (written in English): a district-wide outage
            # covers it, so does a fault on a street the address names in pinyin ("Bibo Road"
            # for 碧波路, with or without a district); another street's fault in that district
            # is only mentioned
            for o in await self.core.list_outages(district=district, active_at=now):
                if o.status in ("active", "scheduled"):
                    written = bool(address) and any(street_written(address, s) for s in o.streets or [])
                    if written or district and not o.streets:
                        known.append(o)
                    elif district:
                        nearby.append(o)
        if known and (address or not known[0].streets):
            o = known[0]
            self.finish(turn)
            turn.state["offer"] = "subscribe_outage"
            turn.actions.append(("action_known_outage", {"outage_id": o.id}))
            turn.slots["_known_outage"] = o.id
            turn.slots["_known_outage_end"] = local(o.estimated_end_at)  # "when exactly?" next
            turn.slots["_known_outage_district"] = o.district  # "下周那次是哪天": that district's planned ones
            self.say(turn, "utter_known_outage", scope=outage_area(o, turn.lang),
                     cause=outage_cause(o, turn.lang) or self.phrase(turn, "utter_fragment_fault_cause"),
                     end=local(o.estimated_end_at))
            return True
        asked = str(turn.slots.get("_text") or "")
        if not known and asks_if_restored(asked) and not turn.slots.get("_restored_told"):
            # "前两天大统路停电，现在修好了吗": an outage there restored in the last days is the answer
            # (the question itself names the street when no address was given)
            done = await self._restored_outage(address or asked, district, now)
            if done is not None:
                turn.slots["_outage_checked"] = check
                turn.slots["_restored_told"] = done.id
                self.say(turn, "utter_outage_restored", scope=outage_area(done, turn.lang),
                         cause=outage_cause(done, turn.lang) or self.phrase(turn, "utter_fragment_fault_cause"),
                         end=local(done.actual_end_at))
                # "我家还是没电" may follow with the address: the report waits for it (the street
                # named in the question is no address for a crew)
                if not any(ch.isdigit() for ch in address or ""):
                    turn.slots.pop("address", None)
                turn.state["form"] = {"name": "report_outage", "slot": "location"}
                raise Stop
        nearby += [o for o in known if o not in nearby]
        told = turn.slots.get("_outage_told") if str(turn.slots.get("_outage_checked") or "").startswith(
            f"{turn.slots.get('_text')}|") else None
        turn.slots["_outage_checked"] = check
        if nearby and nearby[0].id != told:
            o = nearby[0]
            turn.slots["_outage_told"] = o.id
            self.say(turn, "utter_outage_nearby", scope=outage_area(o, turn.lang),
                     cause=outage_cause(o, turn.lang) or self.phrase(turn, "utter_fragment_fault_cause"),
                     end=local(o.estimated_end_at), address=address or "-")
        return False

    async def _restored_outage(self, address: str | None, district: str | None, now: datetime) -> Any:
        """The latest outage restored in the last three days at the address (or, for an address
        in English, on a street it names in pinyin), if any."""
        if not (address or district):
            return None
        chinese = bool(address and has_chinese(address))
        found = await self.core.list_outages(address=address if chinese else None,
                                             district=None if chinese else district, status="restored")
        recent = [o for o in found if o.actual_end_at and now - aware(o.actual_end_at) <= timedelta(days=3)
                  and (chinese or not o.streets or any(street_written(address or "", s) for s in o.streets))]
        return max(recent, key=lambda o: aware(o.actual_end_at), default=None)

    async def flow_report_outage(self, turn: Turn) -> None:
        number, district, address = await self._location(turn, "report_outage", ask=False)
        first = str(turn.slots.get("_text") or "")
        # "友谊路咋停电了": the street the report names is looked up, before any address is asked
        lookup = address or (first if has_chinese(first) else None)
        if turn.slots.get("_confirmed") != "report_outage" and await self._known_outages(turn, lookup, district):
            return
        if not address:
            await self._location(turn, "report_outage")  # asks where
        if not turn.slots.get("contact_phone") and turn.slots.get("_self_check") != turn.slots.get("_text") \
                and not beyond_one_home(str(turn.slots.get("_text") or "")):
            # no known fault there: what 95598 asks first (is it the home's own switch, the neighbours too?)
            turn.slots["_self_check"] = turn.slots.get("_text")
            self.say(turn, "utter_outage_self_check")
        phone = await self.contact_phone(turn, "report_outage")
        self.confirm(turn, "report_outage", "utter_confirm_outage_order_details", address=address_for(address, turn.lang) or "-", phone=mask_phone(phone))
        turn.slots.pop("_outage_checked", None)
        turn.slots.pop("_outage_told", None)
        await self._file_order(turn, "outage", "停电", "high", number, phone, address, district,
                               "utter_outage_order_created")

    async def flow_outage_schedule(self, turn: Turn) -> None:
        # every district the question names ("黄浦和浦东明天都停电吗"), else the one given or the account's
        named = list(dict.fromkeys(name for _s, _e, name in find(str(turn.slots.get("_text") or "").lower())))
        district = turn.slots.get("district") or district_in(turn.slots.get("address") or "")
        if not district and turn.authorized:
            # the customer's own account: the one named, the one whose street the question names
            # ("我店里下周停电吗 世纪大道那个"), or the district all of theirs are in
            number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
            asked = str(turn.slots.get("_text") or "")
            try:
                mine = [await self.account(turn, n) for n in ([number] if number else sorted(turn.authorized))]
            except NotFound:
                mine = []
            named_street = [a for a in mine if (street := street_of(a.address, "zh")) and street in asked]
            districts = {a.district for a in (named_street or mine)}
            if len(districts) == 1:
                district = districts.pop()
        if not district and not named:
            district = self.require(turn, "outage_schedule", "district", "utter_ask_district")
            district = district_in(district) or district
        districts = named if len(named) > 1 else [district or named[0]]
        day = turn.slots.get("date")
        self.finish(turn)
        offered = False
        for d in districts:
            offered = await self._planned_outages(turn, d, day) or offered
        if offered:
            turn.state["offer"] = "subscribe_outage"

    async def _planned_outages(self, turn: Turn, district: str, day: str | None) -> bool:
        """Say the planned outages of one district (on ``day``, else the coming days); whether any."""
        kwargs: dict[str, Any] = {"district": district, "kind": "planned"}
        if day:
            d0 = datetime.fromisoformat(day).replace(tzinfo=CHINA_TZ)
            kwargs.update(starts_after=d0 - timedelta(days=1), starts_before=d0 + timedelta(days=1))
        else:
            kwargs.update(starts_after=utcnow() - timedelta(days=1))
        outages = [o for o in await self.core.list_outages(**kwargs) if o.status in ("scheduled", "active")]
        if day:
            outages = [o for o in outages if _overlaps_day(o, day)]
        street = street_mentioned(turn.message.text or "")
        if street and any(street in (o.streets or []) for o in outages):
            outages = [o for o in outages if street in (o.streets or [])]  # "那世纪大道呢": that street's
        if not outages:
            self.say(turn, "utter_no_planned_outage", district=district_label(district, turn.lang),
                     day=day or self.phrase(turn, "utter_fragment_coming_days"))
            return False
        lines = "\n".join(self._outage_line(turn, o) for o in outages[:5])
        self.say(turn, "utter_planned_outages", district=district_label(district, turn.lang), outages=lines)
        return True

    def _outage_line(self, turn: Turn, o: Any) -> str:
        """One planned outage as a line of the answer: when, where and (if it can be shown) why."""
        cause = outage_cause(o, turn.lang)
        return self.phrase(turn, "utter_fragment_outage_line", start=local(o.start_at), end=local(o.estimated_end_at),
                           scope=outage_area(o, turn.lang)) + (
            self.phrase(turn, "utter_fragment_outage_cause", cause=cause) if cause else "")

    async def flow_repair_request(self, turn: Turn) -> None:
        asked = str(turn.slots.get("_text") or "")
        if about_street_light(asked):
            # street lights are the city's (12345), not the power company's
            self.finish(turn)
            self.say(turn, "utter_street_light")
            return
        if asks_fee(asked) and is_question(asked) and turn.slots.get("_fee_told") != asked:
            turn.slots["_fee_told"] = asked  # "上门修要收费吗": who pays, before the report's questions
            self.say(turn, "utter_repair_fee")
        number, district, address = await self._location(turn, "repair_request")
        phone = await self.contact_phone(turn, "repair_request")
        self.confirm(turn, "repair_request", "utter_confirm_repair", address=address_for(address, turn.lang) or "-")
        await self._file_order(turn, "repair", "报修", "normal", number, phone, address, district, "utter_repair_created")

    async def _file_order(self, turn: Turn, wo_type: str, default_description: str, priority: str, number: Any,
                          phone: Any, address: Any, district: Any, done: str) -> None:
        """The confirmed outage or repair order: the customer's words as its description."""
        wo = await self.core.create_work_order(
            wo_type, str(turn.slots.get("_text") or "")[:500] or default_description, account_number=number,
            priority=priority, channel=turn.message.channel, contact_phone=phone, address=address,
            details={"district": district}, idempotency_key=f"{turn.key}:wo")
        remember_order(turn, wo.id)
        self._order_done(turn, wo, done)

    async def flow_work_order_status(self, turn: Turn) -> None:
        """One work order by its number; else every open order of the customer (the orders of
        their account, and the ones filed in this conversation), each with its deadline and
        whether the deadline has passed."""
        wid = turn.slots.get("work_order_id")
        if wid:
            try:
                wo = await self.core.get_work_order(wid)
            except NotFound:
                turn.slots.pop("work_order_id", None)
                self.finish(turn)
                self.say(turn, "utter_work_order_not_found", work_order_id=wid)
                return
            if wo.account_number and wo.account_number not in turn.authorized and wo.id not in (turn.slots.get("_orders") or []):
                if turn.authorized:
                    # verified for another account: someone else's order is not shown, and the digits
                    # given for their own account are no try at someone else's
                    turn.slots.pop("work_order_id", None)
                    self.finish(turn)
                    self.say(turn, "utter_work_order_not_yours", work_order_id=wid)
                    return
                turn.set_slot("account_number", wo.account_number)
                await self.verify(turn, "work_order_status", await self.account(turn, wo.account_number))
            self.finish(turn)
            self._say_orders(turn, [wo])
            return
        filed = list(reversed(turn.slots.get("_orders") or []))
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        orders: list[Any] = []
        if number or not filed:
            acc = await self.require_account(turn, "work_order_status")
            orders = await self.core.list_work_orders(acc.account_number, limit=50)
        for w in filed:
            if not any(o.id == w for o in orders):
                try:
                    orders.append(await self.core.get_work_order(w))
                except NotFound:
                    pass
        self.finish(turn)
        if not orders:
            self.say(turn, "utter_no_work_orders")
            return
        orders.sort(key=lambda o: aware(o.created_at), reverse=True)
        still_open = [o for o in orders if o.status not in ("resolved", "closed")]
        self._say_orders(turn, still_open or orders[:1], none_open=not still_open)

    def _say_orders(self, turn: Turn, orders: list[Any], *, none_open: bool = False) -> None:
        now = utcnow()
        lines = []
        for wo in orders[:10]:
            late = (wo.sla_due_at is not None and wo.status not in ("resolved", "closed") and aware(wo.sla_due_at) < now)
            lines.append(self.phrase(
                turn, "utter_fragment_work_order_line", work_order_id=wo.id,
                type=self.label(turn, "utter_fragment_work_order_type", wo.type, WORK_ORDER_TYPES),
                status=self.label(turn, "utter_fragment_work_order_status", wo.status, WO_STATUSES),
                created=local(wo.created_at), sla=local(wo.sla_due_at),
            ) + (self.phrase(turn, "utter_fragment_sla_passed") if late else ""))
        if none_open:
            self.say(turn, "utter_work_orders_none_open", line=lines[0])
        else:
            self.say(turn, "utter_work_orders_open", count=len(orders), lines="\n".join(lines))


def _overlaps_day(o: Any, day: str) -> bool:
    """Whether an outage overlaps the (China) day ``day``; one without an end lasts 8 hours."""
    d0 = datetime.fromisoformat(day).replace(tzinfo=CHINA_TZ)
    d1 = d0 + timedelta(days=1)
    start = aware(o.start_at)
    end = aware(o.estimated_end_at) if o.estimated_end_at else start + timedelta(hours=8)
    return start < d1 and end > d0
