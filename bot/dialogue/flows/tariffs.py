"""Tariff consultation: the price table of a category, or a quote for an amount of energy.

The category is the one the question names ("商业用电"), else the account of a verified
identity, else residential. Tariff tables are reference data (``ReferenceData.reference``).

Expects of the class it is mixed into: ``core``; ``reference`` (``ReferenceData``); ``account``
(``IdentityMixin``); ``finish`` (``FormsMixin``); ``say``, ``phrase`` (``Responses``).
"""

from __future__ import annotations

from bot.dialogue.responses import kwh_fmt
from bot.dialogue.turn import Turn
from common.money import money_text
from intents.signals import names_tariff_category, tariff_category


class TariffFlows:
    async def flow_tariff_consult(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or turn.message.text or "")
        category = tariff_category(text)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if number and not names_tariff_category(text):
            category = (await self.account(turn, number)).category
        tariff = await self.reference("tariff", category, self.core.get_tariff)
        name = (self.phrase(turn, f"utter_fragment_tariff_name_{category}", name=tariff.name)
                if category in ("residential", "commercial") else tariff.name)
        self.finish(turn)
        kwh = turn.slots.get("kwh")
        if kwh:
            q = await self.core.quote(category, kwh)
            lines = "\n".join(f"{l.label}: {kwh_fmt(l.kwh)} × {l.price} = {money_text(l.amount)}" for l in q.lines)
            self.say(turn, "utter_quote", kwh=kwh_fmt(q.kwh), amount=money_text(q.amount), lines=lines, tariff=name)
            return
        if tariff.tiers:
            rows = "\n".join(
                (self.phrase(turn, "utter_fragment_tier_range", tier=t.tier, start=kwh_fmt(t.from_kwh), end=kwh_fmt(t.to_kwh))
                 if t.to_kwh is not None else self.phrase(turn, "utter_fragment_tier_over", tier=t.tier, start=kwh_fmt(t.from_kwh)))
                + f": {t.price}"
                for t in tariff.tiers)
        else:
            rows = f"{tariff.flat_price}"
        tou = ""
        if tariff.peak_price is not None and tariff.valley_price is not None:
            tou = self.phrase(turn, "utter_fragment_time_of_use", peak_hours=tariff.peak_hours, peak_price=tariff.peak_price,
                              valley_hours=tariff.valley_hours, valley_price=tariff.valley_price)
        self.say(turn, "utter_tariff", tariff=name, rows=rows, tou=tou)
