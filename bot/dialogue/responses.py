"""What the bot says: responses of training_data/domain.yml rendered into the turn's replies.

Every sentence a customer reads is a response of the domain (``utter_*``); a flow that needs a
piece of a sentence (a topic name, a work-order status, a line of a list) renders an
``utter_fragment_*`` response with ``phrase`` / ``label`` and passes it to ``say``. Numbers and
times are formatted here the one way customers see them (kWh without trailing zeros, times in
China's time zone).

Expects of the class it is mixed into: ``self.domain`` (a ``bot.dialogue.domain.Domain``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from bot.dialogue.turn import Turn
from channels.base import Button, Reply

CHINA_TZ = timezone(timedelta(hours=8))

# Labels and pieces of sentences the flows assemble are responses ``utter_fragment_*`` of
# training_data/domain.yml (``Responses.phrase``): topic names, work-order statuses...
TOPICS = ("outage", "bill", "work_order", "payment")
WO_STATUSES = ("created", "dispatched", "in_progress", "resolved", "closed")
BILL_STATUSES = ("paid", "partial", "unpaid")
PAYMENT_STATUSES = ("paid", "pending")


def kwh_fmt(v: Decimal | float | int | None) -> str:
    if v is None:
        return "-"
    d = Decimal(str(v))
    return f"{d.normalize():f}" if d == d.to_integral() else f"{d.quantize(Decimal('0.01'))}"


def preview(text: str, limit: int = 80) -> str:
    """The customer's words as a confirmation quotes them: whole, or cut with an ellipsis."""
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local(dt: datetime | None) -> str:
    """A time as the customer reads it: China's time, to the minute."""
    if dt is None:
        return "-"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def mask_name(name: str, lang: str = "zh") -> str:
    """A holder's name as shown in a reply: the first character only (in pinyin in English
    answers: "张伟" → "Zhang *")."""
    if not name:
        return ""
    if lang == "en" and not name[0].isascii():
        from pypinyin import lazy_pinyin  # its dictionaries load on first use

        return f"{lazy_pinyin(name[0])[0].capitalize()} *"
    return name[0] + "*" * (len(name) - 1)


class Responses:
    """Rendering replies of the turn (mixed into ``DialogueEngine``)."""

    def say(self, turn: Turn, name: str, /, *, kind: str = "text", metadata: dict | None = None,
            urgent: bool = False, extra_buttons: list[tuple[str, str]] | None = None, **values: Any) -> None:
        """Append the response ``name`` to the turn's replies (and record it as an action)."""
        r = self.domain.render(name, lang=turn.lang, channel=turn.message.channel,
                               seed=f"{turn.message.message_id}:{len(turn.replies)}", **values)
        buttons = [Button(title=t, payload=p) for t, p in (r.buttons + (extra_buttons or []))]
        turn.replies.append(Reply(channel=turn.message.channel, recipient_id=turn.message.sender_id, text=r.text,
                                  buttons=buttons, kind=kind, metadata=metadata or {}, urgent=urgent))
        turn.actions.append((name, {}))

    def phrase(self, turn: Turn, name: str, /, **values: Any) -> str:
        """A piece of a sentence (``utter_fragment_*`` of domain.yml) in the turn's language."""
        return self.domain.render(name, lang=turn.lang, channel=turn.message.channel, **values).text

    def label(self, turn: Turn, prefix: str, key: str | None, known: tuple[str, ...] | frozenset[str]) -> str:
        """The label ``{prefix}_{key}`` of a known key; an unknown key as it is."""
        return self.phrase(turn, f"{prefix}_{key}") if key in known else (key or "")

    def topics_phrase(self, turn: Turn, topics: list[str]) -> str:
        """Notice topics as an answer names them: each of them ("停电通知、账单通知"), or all
        notices when none or every one is meant."""
        if not topics or len(set(topics)) >= len(TOPICS):
            return self.phrase(turn, "utter_fragment_topic_all")
        return self.phrase(turn, "utter_fragment_list_separator").join(
            self.phrase(turn, f"utter_fragment_topic_{t}") for t in topics)
