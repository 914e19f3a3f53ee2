"""Tariff consultation: the price table of a category, or a quote for an amount of energy.

The category is the one the question names ("商业用电"), else the account of a bound or verified
identity (a shop's account gets the commercial tariff), else residential. Tariff tables are
reference data (``ReferenceData.reference``). A quote for usage split into peak and valley
("峰时200度，谷时100度") is priced by the core with both parts (``quote(peak_kwh=, valley_kwh=)``):
each amount belongs to the period word nearest before it (else after it); the period words are
the ones the answers use (``utter_fragment_tou_words_*``, both languages).

Expects of the class it is mixed into: ``core``, ``domain``; ``reference`` (``ReferenceData``);
``account`` (``IdentityMixin``); ``finish`` (``FormsMixin``); ``say``, ``phrase`` (``Responses``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from bot.dialogue.responses import kwh_fmt
from bot.dialogue.turn import Turn
from common.money import money_text
from intents.signals import names_tariff_category, tariff_category, without_identifiers


def _numbers(text: str) -> list[tuple[int, int, Decimal]]:
    """(start, end, value) of each plain number of a text (not long ones: accounts, phones)."""
    out = []
    i = 0
    while i < len(text):
        if text[i].isdigit():
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == "." and j + 1 < len(text) and text[j + 1].isdigit()):
                j += 1
            digits = text[i:j]
            if len(digits.replace(".", "")) <= 6:
                try:
                    out.append((i, j, Decimal(digits)))
                except InvalidOperation:
                    pass
            i = j
        else:
            i += 1
    return out


class TariffFlows:
    def _tou_words(self, turn: Turn, side: str) -> list[str]:
        words: list[str] = []
        for lang in ("zh", "en"):
            text = self.domain.render(f"utter_fragment_tou_words_{side}", lang=lang, channel=turn.message.channel).text
            words += [w.strip().lower() for w in text.split(",") if w.strip()]
        return sorted(set(words), key=len, reverse=True)

    def _tou_split(self, turn: Turn, text: str) -> tuple[Decimal | None, Decimal | None]:
        """The peak and valley kWh a message gives ("峰时200度，谷时100度"), or (None, None)."""
        text = without_identifiers(text)  # "尾号8000" next to "峰谷" is the identity check
        low = text.lower()
        cues: list[tuple[int, int, str]] = []
        taken: list[tuple[int, int]] = []
        for side in ("valley", "peak"):  # valley first: "off-peak" holds "peak"
            for w in self._tou_words(turn, side):
                start = low.find(w)
                while start >= 0:
                    end = start + len(w)
                    if not any(a < end and start < b for a, b in taken):
                        cues.append((start, end, side))
                        taken.append((start, end))
                    start = low.find(w, end)
        if not cues:
            return None, None
        split: dict[str, Decimal] = {}
        numbers = _numbers(low)
        if not numbers:
            return None, None
        cues.sort()
        words_first = cues[0][0] < numbers[0][0]  # "峰时200度" / "200 kWh peak"
        for k, (s, e, value) in enumerate(numbers):
            if words_first:
                lo = numbers[k - 1][1] if k else -1
                near = [c for c in cues if lo <= c[0] and c[1] <= s]
                cue = near[-1] if near else None
            else:
                hi = numbers[k + 1][0] if k + 1 < len(numbers) else len(low)
                near = [c for c in cues if e <= c[0] and c[1] <= hi]
                cue = near[0] if near else None
            if cue is not None and cue[2] not in split:
                split[cue[2]] = value
        if not split:
            return None, None
        return split.get("peak", Decimal(0)), split.get("valley", Decimal(0))

    async def flow_tariff_consult(self, turn: Turn) -> None:
        text = str(turn.slots.get("_text") or turn.message.text or "")
        category = tariff_category(text)
        number = turn.slots.get("account_number") if turn.slots.get("account_number") in turn.authorized else None
        if not number and len(turn.authorized) == 1:
            number = next(iter(turn.authorized))
        if number and not names_tariff_category(text):
            category = (await self.account(turn, number)).category
        tariff = await self.reference("tariff", category, self.core.get_tariff)
        name = (self.phrase(turn, f"utter_fragment_tariff_name_{category}", name=tariff.name)
                if category in ("residential", "commercial") else tariff.name)
        self.finish(turn)
        peak, valley = self._tou_split(turn, text)
        kwh = turn.slots.get("kwh")
        if peak is not None and tariff.peak_price is None:  # no time-of-use prices: the total is priced
            kwh, peak, valley = str(peak + (valley or 0)), None, None
        if peak is not None or kwh:
            q: Any = (await self.core.quote(category, peak_kwh=peak, valley_kwh=valley) if peak is not None
                      else await self.core.quote(category, kwh))
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
