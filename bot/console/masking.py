"""What agents see of customer data: every value masked with the side panel's functions.

One set of masks for the whole console (account summary, conversation history, slots,
entities, queue, handoff summary): ``bot.logs``'s ``mask_account`` / ``mask_phone`` /
``mask_address`` for fields known by name, ``mask_name`` for person names, and
``bot.logs.mask_text`` for free text (it finds phone, account and ID-card numbers, e-mail and
street addresses inside a sentence). The unmasked value is only available through the
audited reveal (``views.reveal``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.logs import mask_account, mask_address, mask_phone, mask_text

MAX_DEPTH = 12  # slots are ours, but a corrupt row must not recurse without end


def mask_name(name: str) -> str:
    return (name[:1] + "*" * max(1, len(name) - 1)) if name else ""


def _mask_id(value: str) -> str:
    masked = mask_text(value)
    return masked if masked != value else (value[:2] + "***" if len(value) > 4 else "***")


# keys of slots, entities and account fields whose value is personal data as a whole
FIELD_MASKS: dict[str, Callable[[str], str]] = {
    "account_number": mask_account,
    "account": mask_account,
    "phone": mask_phone,
    "phone_number": mask_phone,
    "contact_phone": mask_phone,
    "mobile": mask_phone,
    "address": mask_address,
    "contact_address": mask_address,
    "holder_name": mask_name,
    "contact_name": mask_name,
    "name": mask_name,
    "person": mask_name,
    "id_card": _mask_id,
    "id_number": _mask_id,
    "email": lambda v: mask_text(v) if "@" in v else "***",
}


def mask_field(key: str | None, value: Any, depth: int = 0) -> Any:
    """``value`` as an agent may see it; ``key`` is its slot, entity or field name."""
    if value is None or isinstance(value, bool):
        return value
    if depth > MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {k: mask_field(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_field(key, v, depth + 1) for v in value]
    fn = FIELD_MASKS.get(key or "")
    if isinstance(value, (int, float)):
        if fn is not None:
            return fn(str(value))
        text = str(value)
        masked = mask_text(text)
        return value if masked == text else masked
    text = value if isinstance(value, str) else str(value)
    if fn is not None:
        return fn(text) if text else text
    return mask_text(text)


class TextMasker:
    """``mask_text`` plus the personal values a conversation is known to hold.

    A regular expression finds phone and account numbers in a sentence, but not a name, nor
    every way of writing an address. The values the conversation's slots and entities hold
    under a personal key (``FIELD_MASKS``) are learnt first; each occurrence of one in a text
    is then replaced by its mask too."""

    MIN_LEN = 2  # a one-character "name" would mask half the history

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def learn(self, key: str | None, value: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH or value is None or isinstance(value, bool):
            return
        if isinstance(value, dict):
            for k, v in value.items():
                self.learn(str(k), v, depth + 1)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.learn(key, v, depth + 1)
        elif key in FIELD_MASKS:
            raw = str(value).strip()
            if len(raw) >= self.MIN_LEN:
                self.known[raw] = mask_field(key, raw)

    def text(self, text: str) -> str:
        for raw in sorted(self.known, key=len, reverse=True):
            if raw in text:
                text = text.replace(raw, self.known[raw])
        return mask_text(text)


def mask_slots(slots: dict[str, Any]) -> dict[str, Any]:
    return {str(k): mask_field(str(k), v) for k, v in slots.items()}


def masks_something(key: str | None, value: Any) -> bool:
    """Whether masking changes ``value`` (the console then offers the audited reveal)."""
    return mask_field(key, value) != value
