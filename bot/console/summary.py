"""The customer's account summary from the core, masked until an agent reveals a field."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend_client import CoreClient, CoreError
from backend_client.models import Account
from bot.console.service import conversation_slots, split_conversation
from bot.console.masking import mask_name
from bot.logs import mask_account, mask_address, mask_phone, mask_text

log = logging.getLogger("powerbot.console.summary")

REVEALABLE = ("account_number", "phone", "address", "holder_name")
OPEN_WO = {"created", "dispatched", "in_progress"}


async def account_numbers(sessionmaker: async_sessionmaker[AsyncSession], core: CoreClient, conversation_id: str) -> list[str]:
    """Accounts known for this conversation: engine identity links, slots, core bindings.

    The database is read in a short session that is closed before the core is called (on
    SQLite a process has one connection: never hold it across HTTP calls).
    """
    channel, sender = split_conversation(conversation_id)
    found: list[str] = []
    async with sessionmaker() as session:
        try:  # the dialogue engine's identity tables (read only)
            from bot.dialogue.store import CustomerAccount, Identity

            rows = await session.execute(
                select(CustomerAccount.account_number)
                .join(Identity, Identity.customer_id == CustomerAccount.customer_id)
                .where(Identity.channel == channel, Identity.sender_id == sender)
                .order_by(CustomerAccount.id.desc())
            )
            found.extend(rows.scalars())
        except Exception:  # noqa: BLE001 - the summary is best effort
            log.exception("identity lookup failed")
        slot = (await conversation_slots(session, conversation_id)).get("account_number")
    if isinstance(slot, str) and slot:
        found.append(slot)
    try:
        found.extend(a.account_number for a in await core.find_accounts_by_binding(channel, sender))
        if channel == "sms" and sender:
            found.extend(a.account_number for a in await core.find_accounts_by_phone(sender.lstrip("+").removeprefix("86")))
    except CoreError:
        pass
    return list(dict.fromkeys(found))


def _raw_fields(acc: Account) -> dict[str, str]:
    return {"account_number": acc.account_number, "phone": acc.phone, "address": acc.address, "holder_name": acc.holder_name}


def _masked(field: str, value: str) -> str:
    return {"account_number": mask_account, "phone": mask_phone, "address": mask_address, "holder_name": mask_name}[field](value)


async def summary(sessionmaker: async_sessionmaker[AsyncSession], core: CoreClient, conversation_id: str) -> dict[str, Any]:
    numbers = await account_numbers(sessionmaker, core, conversation_id)
    if not numbers:
        return {"found": False, "accounts": [], "conversations": []}
    accounts: list[dict[str, Any]] = []
    related: set[str] = set()
    for index, number in enumerate(numbers[:3]):
        try:
            acc = await core.get_account(number)
        except CoreError as exc:
            accounts.append({"index": index, "error": type(exc).__name__})
            continue
        item: dict[str, Any] = {
            "index": index,
            "masked": {f: _masked(f, v) for f, v in _raw_fields(acc).items()},
            "district": acc.district,
            "category": acc.category,
            "status": acc.status,
        }
        # the account's conversations on every channel: its bindings and its registered phone
        related.update(f"{b.channel}:{b.identity}" for b in acc.bindings)
        if acc.phone:
            related.add(f"sms:+86{acc.phone}")
        try:
            arrears = await core.get_arrears(number)
            item["arrears"] = {"amount_owed": str(arrears.amount_owed), "overdue_amount": str(arrears.overdue_amount)}
            item["bills"] = [
                {"month": b.month, "kwh": str(b.kwh), "amount": str(b.amount), "balance": str(b.balance),
                 "status": b.status, "due_date": b.due_date.isoformat(), "overdue": b.overdue}
                for b in (await core.list_bills(number))[:4]
            ]
            item["work_orders"] = [
                {"id": w.id, "type": w.type, "status": w.status, "priority": w.priority,
                 "description": mask_text(w.description or "")[:80], "created_at": w.created_at.isoformat()}
                for w in await core.list_work_orders(number, limit=20) if w.status in OPEN_WO
            ]
            item["outages"] = [
                {"id": o.id, "kind": o.kind, "status": o.status, "scope": o.scope, "start_at": o.start_at.isoformat(),
                 "estimated_end_at": o.estimated_end_at.isoformat() if o.estimated_end_at else None,
                 "cause": mask_text(o.cause) if o.cause else o.cause}
                for o in await core.list_outages(district=acc.district, address=acc.address)
                if o.status in ("scheduled", "active")
            ]
        except CoreError as exc:
            item["error"] = type(exc).__name__
        accounts.append(item)
    # "conversations" is for the console's own use (earlier conversations); never sent as is
    return {"found": True, "accounts": accounts, "numbers": numbers[:3], "conversations": sorted(related)}


async def reveal(
    sessionmaker: async_sessionmaker[AsyncSession], core: CoreClient, conversation_id: str, index: int, field: str
) -> str | None:
    """The raw value of one field (the caller audits it). None when there is no such field."""
    if field not in REVEALABLE:
        return None
    numbers = await account_numbers(sessionmaker, core, conversation_id)
    if not 0 <= index < min(len(numbers), 3):
        return None
    acc = await core.get_account(numbers[index])
    return _raw_fields(acc)[field]
