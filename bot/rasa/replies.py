"""Rasa's REST channel answer read into powerbot's replies, and a chosen button read back.

Rasa's REST channel (``rasa/core/channels/rest.py`` with ``CollectingOutputChannel``, Rasa Open
Source 3.x) answers a message with a JSON list of bot messages, each ``{"recipient_id"}`` plus
some of ``text``, ``buttons`` (``[{"title", "payload"}]``), ``image`` (a URL), ``attachment``
and ``custom`` (any JSON object). Here each becomes a ``channels.base.Reply`` every channel can
deliver, so nothing under ``channels/`` knows the dialogue came from Rasa:

- text and buttons: ``Reply.text`` and ``Reply.buttons`` (the web chat shows buttons, the text
  channels — WeChat, Alipay, SMS, e-mail — list their titles under the text);
- an image or attachment: its link as the text (every channel shows a link) and, for clients of
  the REST channel, ``custom.image`` / ``custom.attachment``;
- ``custom``: on the REST channel passed through as the reply's ``custom`` (its keys the
  channels act on — ``sender``, ``template_id`` … — removed); elsewhere only its ``text``, and
  ``pay_url`` / ``url`` (links every channel renders), are kept;
- ``custom.handoff`` (truthy): powerbot's handoff convention — open a handoff in the agent
  console, with ``reason``, ``priority`` and ``summary`` from the same object.

A customer on a text channel answers a button by typing its title: ``chosen_payload`` maps that
title (or the payload itself) back to the payload Rasa gave, which is what Rasa expects to
receive, as from a button click on its own channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.dialogue.handoff import PRIORITIES, REASONS
from channels.base import Button, Message, Reply, clean_text

# Reply.metadata keys a channel acts on: a custom payload from Rasa may not set them
RESERVED_KEYS = frozenset({"sender", "delivery_key", "template_id", "template_data", "subject", "transactional",
                           "kind", "bill", "event"})
LINK_KEYS = ("pay_url", "url")  # links every channel renders (channels.wechat.reply_text and the others)
HANDOFF_KEYS = frozenset({"handoff", "reason", "priority", "summary"})
MAX_TITLE = 64
MAX_PAYLOAD = 1000
MAX_BUTTONS = 10
MAX_SUMMARY = 500
_URL = re.compile(r"^https?://\S+$")
# what a customer may type around a button's title: the list mark the text channels show, end
# punctuation, spaces
_MARKS = " \t\r\n·•-*>。.!！?？"


@dataclass
class Handoff:
    """A handoff Rasa asked for (``custom.handoff``)."""

    reason: str = "request_human"
    priority: str = "normal"
    summary: str | None = None

    def as_tuple(self) -> tuple[str, str, str | None]:
        return self.reason, self.priority, self.summary


@dataclass
class RasaAnswer:
    """One Rasa answer read: the replies, the buttons they offer, a handoff request."""

    replies: list[Reply] = field(default_factory=list)
    handoff: Handoff | None = None

    @property
    def buttons(self) -> list[Button]:
        return [b for r in self.replies for b in r.buttons]


def read_answer(messages: list[dict[str, Any]], message: Message) -> RasaAnswer:
    """Rasa's bot messages (the REST channel's JSON list) as replies to ``message``'s channel."""
    answer = RasaAnswer()
    rest = message.channel == "rest"
    for m in messages:
        custom = m.get("custom") if isinstance(m.get("custom"), dict) else None
        if custom is not None and custom.get("handoff"):
            answer.handoff = _handoff(custom)
            custom = {k: v for k, v in custom.items() if k not in HANDOFF_KEYS} or None
        text = _text(m.get("text"))
        buttons = _buttons(m.get("buttons") or m.get("quick_replies"))
        if text or buttons:
            answer.replies.append(_reply(message, text, buttons))
        for key in ("image", "attachment"):
            url = _link(m.get(key))
            if url is not None:
                answer.replies.append(_reply(message, url, [], {key: url} if rest else {}))
        if custom:
            reply = _custom_reply(message, custom, rest=rest)
            if reply is not None:
                answer.replies.append(reply)
    return answer


def chosen_payload(text: str, offered: Any) -> str | None:
    """The payload of the button the customer answered with (its title typed, or the payload
    itself as the web chat sends it), among the buttons of the last answer; None otherwise."""
    if not text or not isinstance(offered, list):
        return None
    typed = text.strip(_MARKS).casefold()
    if not typed:
        return None
    for item in offered:
        if not (isinstance(item, list) and len(item) == 2):
            continue
        title, payload = item
        if text.strip() == payload:
            return payload
        if isinstance(title, str) and title.strip(_MARKS).casefold() == typed:
            return payload
    return None


def offered_buttons(answer: RasaAnswer) -> list[list[str]]:
    """What the conversation state keeps of the buttons offered: ``[[title, payload]...]``."""
    return [[b.title, b.payload] for b in answer.buttons]


# ------------------------------------------------------------------ parts
def _reply(message: Message, text: str, buttons: list[Button], metadata: dict[str, Any] | None = None) -> Reply:
    return Reply(channel=message.channel, recipient_id=message.sender_id, text=text, buttons=buttons,
                 metadata=metadata or {})


def _text(value: Any) -> str:
    return clean_text(value).strip() if isinstance(value, str) else ""


def _buttons(value: Any) -> list[Button]:
    if not isinstance(value, list):
        return []
    out: list[Button] = []
    for b in value[:MAX_BUTTONS]:
        if not isinstance(b, dict):
            continue
        title = _text(b.get("title"))[:MAX_TITLE]
        payload = b.get("payload")
        payload = clean_text(payload)[:MAX_PAYLOAD] if isinstance(payload, str) and payload.strip() else title
        if title:
            out.append(Button(title=title, payload=payload))
    return out


def _link(value: Any) -> str | None:
    """An image or attachment URL: a string, or Rasa's ``{"payload": {"src"|"url": ...}}``."""
    if isinstance(value, dict):
        inner = value.get("payload") if isinstance(value.get("payload"), dict) else value
        value = inner.get("src") or inner.get("url")
    if isinstance(value, str) and _URL.match(value.strip()):
        return value.strip()
    return None


def _handoff(custom: dict[str, Any]) -> Handoff:
    reason = custom.get("reason")
    priority = custom.get("priority")
    summary = custom.get("summary")
    return Handoff(
        reason=reason if reason in REASONS else "request_human",
        priority=priority if priority in PRIORITIES else "normal",
        summary=clean_text(summary)[:MAX_SUMMARY] if isinstance(summary, str) and summary.strip() else None,
    )


def _custom_reply(message: Message, custom: dict[str, Any], *, rest: bool) -> Reply | None:
    text = _text(custom.get("text"))
    links = {k: custom[k] for k in LINK_KEYS if isinstance(custom.get(k), str) and _URL.match(custom[k])}
    if rest:
        meta = {k: v for k, v in custom.items() if k not in RESERVED_KEYS and k != "text"}
        return _reply(message, text, [], meta) if (text or meta) else None
    if not text and not links:
        return None  # a payload for some other client: nothing a text channel can show
    return _reply(message, text, [], links)
