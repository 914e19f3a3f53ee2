"""Console operations on the bot store: queue, taking, replies, notes, transfer, close, stats.

The handoff state belongs to the dialogue engine (``bot.dialogue.handoff``); this module reads
its table and changes it only through atomic conditional updates (taking, transferring) or the
engine's own ``release_to_bot``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbox
from bot.console import labels
from bot.console.masking import TextMasker, mask_field, mask_slots
from bot.console.models import Agent, CallbackOffer, CannedResponse, ConsoleMessage, Satisfaction
from bot.dialogue.handoff import ACTIVE, PRIORITIES, Handoff, release_to_bot
from bot.dialogue.store import Conversation, Event
from bot.langs import detect_language
from bot.models import InboundMessage, utcnow
from bot.texts import TextService
from channels.base import Reply

ONLINE_WINDOW = timedelta(seconds=60)
DEFAULT_WAIT_SECONDS = 300  # before any handoff was ever taken
SCORE_WINDOW = timedelta(hours=24)
STATS_WINDOW = timedelta(hours=24)  # the supervisor's conversation and satisfaction figures
BIGINT_MAX = 2**63 - 1  # the largest id a BIGINT primary key holds

REASON_LABELS = {
    "request_human": "要求人工",
    "complaint_angry": "投诉/情绪激动",
    "complaint_follow_up": "投诉/需人工跟进",
    "repeated_fallback": "多次未识别",
    "hazard": "安全隐患",
    "duplicate_payment": "重复缴费",
}
PRIORITY_LABELS = {"low": "低", "normal": "普通", "high": "高", "emergency": "紧急"}
CHANNEL_LABELS = labels.CHANNELS
# how long a conversation may wait for an agent, by priority, before it is an SLA breach
SLA_SECONDS = {"emergency": 60, "high": 180, "normal": 300, "low": 600}
VIEWS = ("all", "mine", "unassigned")
STATUSES = ("open", "waiting", "assigned", "released", "any")
# the message that asked for a human is written in the same turn as the handoff, just before it:
# unread counts start this long before the handoff
UNREAD_LEAD = timedelta(seconds=30)
RELEASED_LIMIT = 50  # closed conversations listed (most recent first)

# the defaults migration bot_0019_console_canned seeds (agents edit them in the console since)
CANNED_RESPONSES = [
    "您好，我是人工客服，很高兴为您服务，请问有什么可以帮您？",
    "请您稍等，我正在为您查询。",
    "抢修人员已在赶往现场的路上（城区平均45分钟内到达），请您远离断线、冒火等危险区域，注意安全。",
    "您反映的问题已登记工单，我们会在1个工作日内与您联系，请保持电话畅通。",
    "您的缴费已收到，到账可能有几分钟延迟，请稍后再查询。",
    "感谢您的耐心等待，请问还有其他可以帮您的吗？",
]

# What the console says to customers (the satisfaction question and thanks, "nobody online",
# the callback answers) are responses of training_data/domain.yml, rendered by the app's
# ``TextService``: utter_csat_ask, utter_csat_thanks, utter_handoff_nobody_online,
# utter_callback_registered, utter_callback_failed.

_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_SCORE = re.compile(r"^\s*([1-5一二两三四五])\s*(分|星|颗星|stars?|points?)?\s*[。.!！~～]*\s*$", re.I)
_CALLBACK_YES = re.compile(r"回电|回拨|打给我|来电|回个电话|打个电话|打电话给我|给我打电话|callback|call\s*me|call\s*back|"
                           r"ring\s*me|phone\s*me|give me a call", re.I)


def parse_score(text: str) -> int | None:
    m = _SCORE.match(text or "")
    if not m:
        return None
    c = m.group(1)
    return int(c) if c.isdigit() else _CN_DIGITS[c]


def wants_callback(text: str) -> bool:
    return bool(_CALLBACK_YES.search(text or ""))


def split_conversation(conversation_id: str) -> tuple[str, str]:
    channel, _, sender = conversation_id.partition(":")
    return channel, sender


def display_name(conversation_id: str) -> str:
    """What agents see for a conversation: phone numbers and mail addresses masked."""
    from bot.logs import mask_phone

    channel, sender = split_conversation(conversation_id)
    if channel == "sms":
        digits = sender.lstrip("+")
        digits = digits[2:] if digits.startswith("86") and len(digits) == 13 else digits
        return f"{channel}:{mask_phone(digits)}"
    if channel == "email" and "@" in sender:
        local, _, domain = sender.partition("@")
        return f"{channel}:{local[:2]}***@{domain}"
    return conversation_id


def seconds_since(ts: datetime | None, now: datetime | None = None) -> int:
    if ts is None:
        return 0
    return max(0, int(((now or utcnow()) - outbox.as_aware(ts)).total_seconds()))


# ---------------------------------------------------------------- presence and waiting time
async def agents_online(session: AsyncSession) -> list[Agent]:
    cutoff = utcnow() - ONLINE_WINDOW
    rows = await session.execute(
        select(Agent).where(Agent.active.is_(True), Agent.last_seen_at.is_not(None), Agent.last_seen_at >= cutoff)
        .order_by(Agent.name)
    )
    return list(rows.scalars())


async def touch_agent(session: AsyncSession, agent_id: int, *, online: bool = True) -> None:
    await session.execute(update(Agent).where(Agent.id == agent_id).values(last_seen_at=utcnow() if online else None))


async def average_handled_wait(session: AsyncSession, limit: int = 50) -> int | None:
    rows = (
        await session.execute(
            select(Handoff.created_at, Handoff.assigned_at)
            .where(Handoff.assigned_at.is_not(None))
            .order_by(Handoff.id.desc())
            .limit(limit)
        )
    ).all()
    waits = [(outbox.as_aware(a) - outbox.as_aware(c)).total_seconds() for c, a in rows]
    return int(sum(waits) / len(waits)) if waits else None


async def estimated_wait(session: AsyncSession, conversation_id: str | None = None) -> int:
    """Expected seconds until an agent takes a waiting conversation (queue position aware)."""
    base = await average_handled_wait(session) or DEFAULT_WAIT_SECONDS
    base = max(base, 60)
    waiting = await waiting_handoffs(session)
    position = len(waiting)
    if conversation_id is not None:
        for i, h in enumerate(waiting):
            if h.conversation_id == conversation_id:
                position = i + 1
                break
    online = len(await agents_online(session))
    if online == 0:
        return max(base, 600) + base * max(0, position - 1)
    return base * math.ceil(max(position, 1) / online)


# ---------------------------------------------------------------- queue
def _rank():
    from sqlalchemy import case

    return case({p: i for i, p in enumerate(PRIORITIES)}, value=Handoff.priority, else_=0)


async def waiting_handoffs(session: AsyncSession) -> list[Handoff]:
    rows = await session.execute(
        select(Handoff).where(Handoff.status == "waiting").order_by(_rank().desc(), Handoff.created_at, Handoff.id)
    )
    return list(rows.scalars())


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def linked_accounts(session: AsyncSession, conversation_ids: Iterable[str]) -> dict[str, str]:
    """Conversation id -> the account most recently linked to its customer by the dialogue
    (bound in the core, the registered phone, or verified; never a number merely typed)."""
    from bot.dialogue.store import CustomerAccount, Identity

    wanted = {split_conversation(cid) for cid in conversation_ids}
    if not wanted:
        return {}
    rows = (await session.execute(
        select(Identity.channel, Identity.sender_id, CustomerAccount.account_number)
        .join(CustomerAccount, CustomerAccount.customer_id == Identity.customer_id)
        .where(Identity.sender_id.in_(sorted({s for _, s in wanted})))
        .order_by(CustomerAccount.id.desc()))).all()
    out: dict[str, str] = {}
    for channel, sender, number in rows:
        if (channel, sender) in wanted:
            out.setdefault(f"{channel}:{sender}", number)
    return out


async def handoff_accounts(session: AsyncSession, handoff_ids: Iterable[int]) -> dict[int, str]:
    """Handoff id -> the account linked to its conversation's customer (``linked_accounts``)."""
    ids = sorted(set(handoff_ids))
    if not ids:
        return {}
    rows = (await session.execute(select(Handoff.id, Handoff.conversation_id).where(Handoff.id.in_(ids)))).all()
    linked = await linked_accounts(session, {cid for _, cid in rows})
    return {hid: linked[cid] for hid, cid in rows if cid in linked}


async def search_conversations(session: AsyncSession, q: str, limit: int = 200,
                               accounts: Iterable[str] = ()) -> set[str]:
    """Conversation ids whose id, messages (customer, bot, agent, notes) or customer data
    (slots, linked account numbers) contain ``q``, and those of customers linked to any of
    ``accounts`` (the core's answer to ``q`` as a name), on every channel."""
    from bot.dialogue.store import CustomerAccount, Identity

    named = sorted(set(accounts))[:limit]
    pat = _like(q)
    found: set[str] = set()
    found.update((await session.execute(
        select(Handoff.conversation_id).where(Handoff.conversation_id.like(pat, escape="\\")).limit(limit))).scalars())
    found.update((await session.execute(
        select(Event.conversation_id).where(Event.type.in_(("user", "bot")), Event.text.like(pat, escape="\\"))
        .distinct().limit(limit))).scalars())
    found.update((await session.execute(
        select(ConsoleMessage.conversation_id).where(ConsoleMessage.text.like(pat, escape="\\"))
        .distinct().limit(limit))).scalars())
    found.update((await session.execute(
        select(Conversation.id).where(cast(Conversation.state, String).like(pat, escape="\\")).limit(limit))).scalars())
    rows = (await session.execute(
        select(Identity.channel, Identity.sender_id)
        .join(CustomerAccount, CustomerAccount.customer_id == Identity.customer_id)
        .where(CustomerAccount.account_number.like(pat, escape="\\")).limit(limit))).all()
    found.update(f"{c}:{s}" for c, s in rows)
    if named:
        rows = (await session.execute(
            select(Identity.channel, Identity.sender_id)
            .join(CustomerAccount, CustomerAccount.customer_id == Identity.customer_id)
            .where(CustomerAccount.account_number.in_(named)).distinct().limit(limit))).all()
        found.update(f"{c}:{s}" for c, s in rows)
    return found


async def queue(session: AsyncSession, viewer: str, role: str, *, view: str = "all", channel: str | None = None,
                priority: str | None = None, status: str = "open", q: str | None = None,
                named: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Handoffs as the queue shows them: waiting ones most urgent then oldest first, then those
    being handled; ``status="released"`` the closed ones (most recent first, only those the
    viewer may see), ``"any"`` both.

    ``view``: ``mine`` (held by the viewer), ``unassigned`` (waiting), ``all``; ``channel`` and
    ``priority`` filter; ``q`` searches conversations, messages and customers (``search_conversations``;
    ``named``: the accounts whose holder's name matches ``q``, from the core). ``customer_label``
    is left None: the view fills it (``bot.console.customer_names``, a core call outside this session).
    Everyone sees that a conversation is queued or held and by whom; its content (the last
    message) only those who may see the conversation (``bot.console.access``), masked."""
    from bot.console.access import SUPERVISOR, may_view

    statuses = {"open": ACTIVE, "waiting": ("waiting",), "assigned": ("assigned",), "released": ("released",),
                "any": (*ACTIVE, "released")}.get(status, ACTIVE)
    cond: list[Any] = []
    if view == "mine":
        cond += [Handoff.agent_id == viewer, Handoff.status != "waiting"]
    elif view == "unassigned":
        cond.append(Handoff.status == "waiting")
    if channel:
        cond.append(Handoff.conversation_id.like(_like(channel + ":")[1:], escape="\\"))
    if priority:
        cond.append(Handoff.priority == priority)
    if q:
        ids = await search_conversations(session, q, accounts=named)
        if not ids:
            return []
        cond.append(Handoff.conversation_id.in_(sorted(ids)))
    rows: list[Handoff] = []
    active = [s for s in statuses if s != "released"]
    if active:
        rows += (await session.execute(
            select(Handoff).where(Handoff.status.in_(active), *cond)
            .order_by(Handoff.status.desc(), _rank().desc(), Handoff.created_at, Handoff.id)
        )).scalars().all()
    if "released" in statuses:
        mine = [] if role == SUPERVISOR else [Handoff.agent_id == viewer]
        rows += (await session.execute(
            select(Handoff).where(Handoff.status == "released", *cond, *mine)
            .order_by(Handoff.id.desc()).limit(RELEASED_LIMIT)
        )).scalars().all()
    reopenable: set[str] = set()
    if any(h.status == "released" for h in rows):
        busy = set((await session.execute(select(Handoff.conversation_id).where(
            Handoff.status.in_(ACTIVE), Handoff.conversation_id.in_({h.conversation_id for h in rows})))).scalars())
        reopenable = {h.conversation_id for h in rows if h.status == "released"} - busy
    now = utcnow()
    out = []
    for h in rows:
        ch, _ = split_conversation(h.conversation_id)
        visible = may_view(viewer, role, h.status, h.agent_id)
        if q and not visible:
            continue  # a search must not tell what another agent's conversation contains
        last = ""
        unread_base = 0
        if visible:
            row = (
                await session.execute(
                    select(Event.type, Event.text, Event.data)
                    .where(Event.conversation_id == h.conversation_id, Event.type == "user")
                    .order_by(Event.id.desc()).limit(1)
                )
            ).first()
            if row is not None:
                masker = await conversation_masker(session, h.conversation_id, [row])
                last = masker.text(row.text or "")
            unread_base = (await session.execute(
                select(func.count()).select_from(Event).where(
                    Event.conversation_id == h.conversation_id, Event.type == "user",
                    Event.created_at >= outbox.as_aware(h.created_at) - UNREAD_LEAD))).scalar_one()
        if h.status == "waiting":
            waited = seconds_since(h.created_at, now)
        elif h.assigned_at is not None:
            waited = max(0, int((outbox.as_aware(h.assigned_at) - outbox.as_aware(h.created_at)).total_seconds()))
        else:
            waited = 0
        out.append({
            "handoff_id": h.id,
            "conversation_id": display_name(h.conversation_id),
            "display": display_name(h.conversation_id),
            "visible": visible,
            "channel": ch,
            "channel_label": CHANNEL_LABELS.get(ch, ch),
            "reason": h.reason,
            "reason_label": REASON_LABELS.get(h.reason, h.reason),
            "priority": h.priority,
            "priority_label": PRIORITY_LABELS.get(h.priority, h.priority),
            "status": h.status,
            "agent": h.agent_id,
            "created_at": outbox.as_aware(h.created_at).isoformat(),
            "waiting_seconds": waited,
            "sla_breached": h.status == "waiting" and waited > SLA_SECONDS.get(h.priority, 300),
            "customer_messages": unread_base,
            "reopenable": h.conversation_id in reopenable,
            # the masked name and account of the customer's linked account: filled by the view
            "customer_label": None,
            "last_message": last[:120],
        })
    return out


async def get_handoff(session: AsyncSession, handoff_id: int) -> Handoff | None:
    return await session.get(Handoff, handoff_id)


async def _assign_waiting(session: AsyncSession, handoff_id: int, agent_name: str) -> Handoff | None:
    """The waiting handoff, now held by ``agent_name`` (one conditional UPDATE: of two racing
    exactly one gets it); None when it was no longer waiting."""
    res = await session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id, Handoff.status == "waiting")
        .values(status="assigned", agent_id=agent_name, assigned_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        return None
    h = await session.get(Handoff, handoff_id)
    await session.refresh(h)
    return h


async def take(session: AsyncSession, handoff_id: int, agent_name: str, *, texts: TextService | None = None) -> bool:
    """Exclusive: one conditional UPDATE; of two agents racing exactly one sees a row changed.
    With ``texts`` the customer is told a person joined (``utter_agent_joined``)."""
    h = await _assign_waiting(session, handoff_id, agent_name)
    if h is None:
        return False
    session.add(Event(conversation_id=h.conversation_id, type="handoff", name="assigned", data={"agent_id": agent_name}))
    session.add(ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=agent_name,
                               kind="system", text=f"{agent_name} 接入会话"))
    if texts is not None:
        await announce_agent(session, h, agent_name, texts)
    return True


async def announce_agent(session: AsyncSession, h: Handoff, agent_name: str, texts: TextService) -> None:
    """Tell the customer a person has joined (once per handoff and agent): a reply from the
    system, naming the agent, that every channel delivers and the web chat shows as a divider."""
    lang = await customer_language(session, h.conversation_id)
    channel, sender = split_conversation(h.conversation_id)
    notice = Reply(channel=channel, recipient_id=sender, text=texts.text("utter_agent_joined", lang=lang, channel=channel,
                                                                          name=agent_name),
                   metadata={"sender": {"role": "system", "name": agent_name}, "event": "agent_joined"})
    await outbox.enqueue(session, notice, kind="reply", conversation_id=h.conversation_id,
                         dedupe_key=f"joined:{h.id}:{agent_name}")


async def transfer(session: AsyncSession, handoff_id: int, from_agent: str | None, to_agent: str) -> bool:
    cond = [Handoff.id == handoff_id, Handoff.status == "assigned"]
    if from_agent is not None:
        cond.append(Handoff.agent_id == from_agent)
    res = await session.execute(
        update(Handoff).where(*cond).values(agent_id=to_agent).execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        return False
    h = await session.get(Handoff, handoff_id)
    await session.refresh(h)
    session.add(ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=from_agent,
                               kind="system", text=f"会话由 {from_agent or '主管'} 转给 {to_agent}"))
    session.add(Event(conversation_id=h.conversation_id, type="handoff", name="transferred",
                      data={"from": from_agent, "to": to_agent}))
    return True


async def customer_language(session: AsyncSession, conversation_id: str) -> str:
    """The language the bot uses with this customer (its ``language`` slot), else the last message's."""
    lang = (await conversation_slots(session, conversation_id)).get("language")
    if lang in ("zh", "en"):
        return lang
    text = (
        await session.execute(
            select(Event.text).where(Event.conversation_id == conversation_id, Event.type == "user", Event.text.is_not(None))
            .order_by(Event.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    return detect_language(text or "")


async def send_to_customer(session: AsyncSession, conversation_id: str, text: str, *, dedupe_key: str | None = None) -> int | None:
    channel, sender = split_conversation(conversation_id)
    reply = Reply(channel=channel, recipient_id=sender, text=text)
    return await outbox.enqueue(session, reply, kind="reply", conversation_id=conversation_id, dedupe_key=dedupe_key)


async def reply(session: AsyncSession, h: Handoff, agent_name: str, text: str) -> ConsoleMessage:
    oid = await outbox.enqueue(session, Reply(*split_conversation(h.conversation_id), text, metadata={"sender": {"role": "agent", "name": agent_name}}), kind="reply", conversation_id=h.conversation_id)
    msg = ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=agent_name, kind="reply",
                         text=text, outbox_id=oid)
    session.add(msg)
    await session.flush()
    return msg


async def note(session: AsyncSession, h: Handoff, agent_name: str, text: str) -> ConsoleMessage:
    msg = ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=agent_name, kind="note", text=text)
    session.add(msg)
    await session.flush()
    return msg


async def close(session: AsyncSession, h: Handoff, agent_name: str, note_text: str | None = None, *,
                texts: TextService) -> None:
    """Hand the conversation back to the bot and ask the customer for a 1–5 score."""
    await release_to_bot(session, h.conversation_id, note=note_text)
    session.add(ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=agent_name,
                               kind="system", text=f"{agent_name} 结束会话，交还机器人"))
    lang = await customer_language(session, h.conversation_id)
    ask = texts.text("utter_csat_ask", lang=lang)
    await send_to_customer(session, h.conversation_id, ask, dedupe_key=f"csat:{h.id}")
    session.add(Satisfaction(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=h.agent_id or agent_name,
                             status="asked"))
    await session.flush()


async def assign_to(session: AsyncSession, handoff_id: int, agent_name: str, by: str) -> bool:
    """A supervisor hands a waiting conversation to an agent (same exclusive update as ``take``)."""
    h = await _assign_waiting(session, handoff_id, agent_name)
    if h is None:
        return False
    session.add(Event(conversation_id=h.conversation_id, type="handoff", name="assigned",
                      data={"agent_id": agent_name, "by": by}))
    session.add(ConsoleMessage(conversation_id=h.conversation_id, handoff_id=h.id, agent_name=by,
                               kind="system", text=labels.text("assigned", by=by, agent=agent_name)))
    return True


async def reopen(session: AsyncSession, h: Handoff, agent_name: str) -> Handoff | None:
    """A closed conversation taken back by an agent: a new handoff, held by ``agent_name`` at
    once. None when the conversation is already queued or held again."""
    from bot.dialogue.handoff import get_active_handoff, request_handoff

    if await get_active_handoff(session, h.conversation_id) is not None:
        return None
    new = await request_handoff(session, h.conversation_id, h.reason, h.priority, summary=h.summary)
    if not await take(session, new.id, agent_name):
        return None
    session.add(ConsoleMessage(conversation_id=h.conversation_id, handoff_id=new.id, agent_name=agent_name,
                               kind="system", text=labels.text("reopened", agent=agent_name)))
    await session.flush()
    await session.refresh(new)
    return new


async def earlier_conversations(session: AsyncSession, conversation_ids: set[str], current: Handoff,
                                viewer: str, role: str, limit: int = 20) -> list[dict[str, Any]]:
    """The customer's other handoffs (on every channel of the same accounts, and earlier ones of
    this conversation), newest first; ``visible`` by the access rule, content only by opening."""
    from bot.console.access import may_view

    ids = set(conversation_ids) | {current.conversation_id}
    rows = (await session.execute(
        select(Handoff).where(Handoff.conversation_id.in_(sorted(ids)), Handoff.id != current.id)
        .order_by(Handoff.id.desc()).limit(limit))).scalars().all()
    out = []
    for h in rows:
        ch, _ = split_conversation(h.conversation_id)
        out.append({
            "handoff_id": h.id, "display": display_name(h.conversation_id), "channel": ch,
            "channel_label": CHANNEL_LABELS.get(ch, ch), "status": h.status, "agent": h.agent_id,
            "reason_label": REASON_LABELS.get(h.reason, h.reason),
            "created_at": outbox.as_aware(h.created_at).isoformat(),
            "visible": may_view(viewer, role, h.status, h.agent_id),
        })
    seen = {h.conversation_id for h in rows} | {current.conversation_id}
    others = (await session.execute(
        select(Conversation.id, Conversation.updated_at).where(Conversation.id.in_(sorted(ids - seen)))
        .order_by(Conversation.updated_at.desc()).limit(limit))).all()
    for cid, at in others:  # conversations the bot finished alone
        ch, _ = split_conversation(cid)
        out.append({"handoff_id": None, "display": display_name(cid), "channel": ch,
                    "channel_label": CHANNEL_LABELS.get(ch, ch), "status": "bot", "agent": None,
                    "reason_label": labels.text("bot_only"), "created_at": outbox.as_aware(at).isoformat(), "visible": False})
    return out[:limit]


async def identity_conversations(session: AsyncSession, conversation_id: str, accounts: list[str]) -> set[str]:
    """Conversation ids of the same customer: identities of this one's customer and of every
    customer linked to one of ``accounts``."""
    from bot.dialogue.store import CustomerAccount, Identity

    channel, sender = split_conversation(conversation_id)
    customers = set((await session.execute(select(Identity.customer_id).where(
        Identity.channel == channel, Identity.sender_id == sender))).scalars())
    if accounts:
        customers |= set((await session.execute(select(CustomerAccount.customer_id).where(
            CustomerAccount.account_number.in_(accounts)))).scalars())
    if not customers:
        return set()
    rows = (await session.execute(select(Identity.channel, Identity.sender_id).where(
        Identity.customer_id.in_(sorted(customers))).limit(200))).all()
    return {f"{c}:{s}" for c, s in rows}


# ---------------------------------------------------------------- canned responses
SHORTCUT = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


async def canned_list(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(CannedResponse).order_by(CannedResponse.shortcut))).scalars().all()
    return [canned_view(c) for c in rows]


def canned_view(c: CannedResponse) -> dict[str, Any]:
    return {"id": c.id, "shortcut": c.shortcut, "text": c.text, "updated_by": c.updated_by,
            "updated_at": outbox.as_aware(c.updated_at).isoformat()}


# ---------------------------------------------------------------- history
def _intent(data: dict[str, Any]) -> tuple[str | None, float | None]:
    parse = data.get("parse") if isinstance(data.get("parse"), dict) else data
    intent = parse.get("intent") if isinstance(parse, dict) else None
    if isinstance(intent, dict):
        conf = intent.get("confidence")
        return intent.get("name"), float(conf) if isinstance(conf, (int, float)) else None
    if isinstance(intent, str):
        conf = parse.get("confidence")
        return intent, float(conf) if isinstance(conf, (int, float)) else None
    return None, None


def _entities_raw(data: dict[str, Any]) -> list[dict[str, Any]]:
    parse = data.get("parse") if isinstance(data.get("parse"), dict) else data
    ents = parse.get("entities") if isinstance(parse, dict) else None
    return [e for e in ents if isinstance(e, dict)] if isinstance(ents, list) else []


def _entities(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in _entities_raw(data):
        name = e.get("entity") if isinstance(e.get("entity"), str) else None
        out.append({"entity": name, "value": mask_field(name, e.get("value"))})
    return out




async def conversation_masker(session: AsyncSession, conversation_id: str, events: Any = None) -> TextMasker:
    """A text masker that also knows the personal values of this conversation: its slots, and
    the slots and entities of its customer turns (``events``, when the caller has them)."""
    masker = TextMasker()
    masker.learn(None, await conversation_slots(session, conversation_id))
    for e in events or ():
        if e.type == "user" and isinstance(e.data, dict):
            masker.learn(None, e.data.get("slots"))
            for ent in _entities_raw(e.data):
                masker.learn(ent.get("entity") if isinstance(ent.get("entity"), str) else None, ent.get("value"))
    return masker


async def history(session: AsyncSession, conversation_id: str, limit: int = 300) -> list[dict[str, Any]]:
    """The conversation as an agent sees it: every text, slot and entity masked.

    Each item has an ``id`` (``e<event id>`` or ``m<console message id>``); ``masked`` says
    masking changed its text, which the holder can then reveal (audited)."""
    events = (
        await session.execute(
            select(Event).where(Event.conversation_id == conversation_id).order_by(Event.id.desc()).limit(limit)
        )
    ).scalars().all()
    masker = await conversation_masker(session, conversation_id, events)

    def _masked_text(text: str) -> tuple[str, bool]:
        masked = masker.text(text)
        return masked, masked != text

    items: list[tuple[datetime, int, dict[str, Any]]] = []
    for e in reversed(events):
        data = e.data if isinstance(e.data, dict) else {}
        at = outbox.as_aware(e.created_at)
        if e.type == "user":
            name, conf = _intent(data)
            text, masked = _masked_text(e.text or "")
            slots = data.get("slots") if isinstance(data.get("slots"), dict) else {}
            items.append((at, 0, {
                "id": f"e{e.id}", "kind": "customer", "text": text, "masked": masked, "intent": name,
                "confidence": conf, "entities": _entities(data), "slots": mask_slots(slots), "at": at.isoformat(),
            }))
        elif e.type == "bot":
            raw = e.text or data.get("text") or ""
            text, masked = _masked_text(raw if isinstance(raw, str) else str(raw))
            items.append((at, 0, {"id": f"e{e.id}", "kind": "bot", "text": text, "masked": masked, "at": at.isoformat()}))
        elif e.type == "handoff" and e.name == "requested":
            reason = data.get("reason")
            items.append((at, 0, {
                "id": f"e{e.id}", "kind": "system", "text": f"转人工：{REASON_LABELS.get(reason, reason)}", "masked": False,
                "at": at.isoformat(),
            }))
    msgs = (
        await session.execute(
            select(ConsoleMessage).where(ConsoleMessage.conversation_id == conversation_id)
            .order_by(ConsoleMessage.id.desc()).limit(limit)
        )
    ).scalars().all()
    for m in reversed(msgs):
        text, masked = _masked_text(m.text or "")
        items.append((outbox.as_aware(m.created_at), 1, {
            "id": f"m{m.id}", "kind": {"reply": "agent", "note": "note", "system": "system", "bot": "bot"}.get(m.kind, m.kind),
            "text": text, "masked": masked, "agent": m.agent_name, "at": outbox.as_aware(m.created_at).isoformat(),
        }))
    items.sort(key=lambda t: (t[0], t[1]))
    return [i for _, _, i in items]


async def raw_history_text(session: AsyncSession, conversation_id: str, item_id: str) -> str | None:
    """The unmasked text of one history item of this conversation (for the audited reveal)."""
    if len(item_id) < 2 or item_id[0] not in "em" or not item_id[1:].isdigit() or len(item_id) > 20:
        return None
    row_id = int(item_id[1:])
    if row_id > BIGINT_MAX:
        return None
    if item_id[0] == "e":
        e = await session.get(Event, row_id)
        if e is None or e.conversation_id != conversation_id or e.type not in ("user", "bot"):
            return None
        data = e.data if isinstance(e.data, dict) else {}
        raw = e.text or data.get("text") or ""
        return raw if isinstance(raw, str) else str(raw)
    m = await session.get(ConsoleMessage, row_id)
    if m is None or m.conversation_id != conversation_id:
        return None
    return m.text


async def conversation_slots(session: AsyncSession, conversation_id: str) -> dict[str, Any]:
    conv = await session.get(Conversation, conversation_id)
    if conv is None or not isinstance(conv.state, dict):
        return {}
    slots = conv.state.get("slots")
    return dict(slots) if isinstance(slots, dict) else {}


# ---------------------------------------------------------------- satisfaction / callback
async def pending_satisfaction(session: AsyncSession, conversation_id: str) -> Satisfaction | None:
    row = (
        await session.execute(
            select(Satisfaction).where(Satisfaction.conversation_id == conversation_id, Satisfaction.status == "asked")
            .order_by(Satisfaction.id.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if row is not None and seconds_since(row.asked_at) > SCORE_WINDOW.total_seconds():
        row.status = "skipped"
        return None
    return row


async def open_callback_offer(session: AsyncSession, handoff_id: int) -> CallbackOffer | None:
    return (
        await session.execute(
            select(CallbackOffer).where(CallbackOffer.handoff_id == handoff_id, CallbackOffer.status == "offered")
        )
    ).scalar_one_or_none()


# ---------------------------------------------------------------- supervisor figures
async def first_id_since(session: AsyncSession, model: Any, time_attr: str, since: datetime) -> int | None:
    """The first id of ``model``'s rows written at or after ``since`` (None: none is).

    Ids follow insertion time, so a binary search over the primary key finds the start of a
    time window in ~log2(rows) index lookups; none of these tables has an index on its time
    column (each would be written by every message for the sake of a dashboard)."""
    id_col, time_col = model.id, getattr(model, time_attr)
    hi = (await session.execute(select(func.max(id_col)))).scalar_one()
    if hi is None:
        return None
    lo = (await session.execute(select(func.min(id_col)))).scalar_one()
    found: int | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        row = (await session.execute(
            select(id_col, time_col).where(id_col >= mid).order_by(id_col).limit(1))).first()
        if row is None:
            break
        if outbox.as_aware(row[1]) >= since:
            found, hi = row[0], mid - 1
        else:
            lo = row[0] + 1
    return found


async def stats(session: AsyncSession) -> dict[str, Any]:
    """The supervisor's figures. Queue and agents are live; conversations, escalations and
    satisfaction cover the last ``STATS_WINDOW`` (over all time they read every message ever
    stored, seconds on a large store, on every refresh of every supervisor page)."""
    now = utcnow()
    since = now - STATS_WINDOW
    waiting = await waiting_handoffs(session)
    waits = [seconds_since(h.created_at, now) for h in waiting]
    assigned = (await session.execute(select(func.count()).select_from(Handoff).where(Handoff.status == "assigned"))).scalar_one()
    online = await agents_online(session)

    async def distinct_conversations(model: Any, time_attr: str, *where: Any) -> int:
        start = await first_id_since(session, model, time_attr, since)
        if start is None:
            return 0
        return (await session.execute(
            select(func.count(func.distinct(model.conversation_id))).where(model.id >= start, *where))).scalar_one()

    total_convs = await distinct_conversations(InboundMessage, "received_at")
    # contained: wrote in the window and never escalated in it (no agent, no unanswered escalation)
    contained = 0
    msg_start = await first_id_since(session, InboundMessage, "received_at", since)
    if msg_start is not None:
        h_start = await first_id_since(session, Handoff, "created_at", since)
        escalated_ids = select(Handoff.conversation_id).where(Handoff.id >= (h_start if h_start is not None else BIGINT_MAX))
        contained = (await session.execute(
            select(func.count(func.distinct(InboundMessage.conversation_id)))
            .where(InboundMessage.id >= msg_start, InboundMessage.conversation_id.not_in(escalated_ids)))).scalar_one()
    with_agent = await distinct_conversations(Handoff, "created_at", Handoff.assigned_at.is_not(None))
    escalated = await distinct_conversations(Handoff, "created_at")
    dist = {str(i): 0 for i in range(1, 6)}
    start = await first_id_since(session, Satisfaction, "asked_at", since)
    if start is not None:
        for score, n in (await session.execute(
            select(Satisfaction.score, func.count())
            .where(Satisfaction.id >= start, Satisfaction.status == "answered", Satisfaction.score.is_not(None))
            .group_by(Satisfaction.score)
        )).all():
            dist[str(score)] = dist.get(str(score), 0) + n
    answered = sum(dist.values())
    return {
        "queue_length": len(waiting),
        "in_progress": assigned,
        "average_wait_seconds": int(sum(waits) / len(waits)) if waits else 0,
        "longest_wait_seconds": max(waits) if waits else 0,
        "average_handled_wait_seconds": await average_handled_wait(session),
        "agents_online": [a.name for a in online],
        "agents_online_count": len(online),
        "conversations": total_convs,
        "conversations_with_agent": with_agent,
        "conversations_escalated": escalated,
        "conversations_contained": contained,
        # containment: finished without an agent and without an escalation nobody answered
        "automation_rate": round(contained / total_convs, 4) if total_convs else None,
        "containment_rate": round(contained / total_convs, 4) if total_convs else None,
        "satisfaction_average": round(sum(int(k) * n for k, n in dist.items()) / answered, 2) if answered else None,
        "satisfaction_count": answered,
        "satisfaction_distribution": dist,
        "window_hours": int(STATS_WINDOW.total_seconds() // 3600),
        "per_agent": await per_agent(session, since),
        "sla_breaches": [
            {"handoff_id": h.id, "display": display_name(h.conversation_id), "priority": h.priority,
             "priority_label": PRIORITY_LABELS.get(h.priority, h.priority), "waiting_seconds": w,
             "sla_seconds": SLA_SECONDS.get(h.priority, 300)}
            for h, w in zip(waiting, waits) if w > SLA_SECONDS.get(h.priority, 300)
        ],
        "trend": await trend(session, now),
    }


async def per_agent(session: AsyncSession, since: datetime) -> list[dict[str, Any]]:
    """Per active agent: conversations held now (load), handled in the window, average handle
    time (taken → closed) and satisfaction over the window."""
    agents = (await session.execute(select(Agent.name).where(Agent.active.is_(True)).order_by(Agent.name))).scalars().all()
    load = dict((await session.execute(
        select(Handoff.agent_id, func.count()).where(Handoff.status == "assigned").group_by(Handoff.agent_id))).all())
    handled: dict[str, list[float]] = {}
    start = await first_id_since(session, Handoff, "created_at", since - STATS_WINDOW)  # closed in the window
    if start is not None:
        for agent, a, r in (await session.execute(
                select(Handoff.agent_id, Handoff.assigned_at, Handoff.released_at)
                .where(Handoff.id >= start, Handoff.status == "released", Handoff.assigned_at.is_not(None),
                       Handoff.released_at.is_not(None)))).all():
            if agent and outbox.as_aware(r) >= since:
                handled.setdefault(agent, []).append((outbox.as_aware(r) - outbox.as_aware(a)).total_seconds())
    csat: dict[str, list[int]] = {}
    start = await first_id_since(session, Satisfaction, "asked_at", since)
    if start is not None:
        for agent, score in (await session.execute(
                select(Satisfaction.agent_name, Satisfaction.score)
                .where(Satisfaction.id >= start, Satisfaction.status == "answered",
                       Satisfaction.score.is_not(None)))).all():
            if agent:
                csat.setdefault(agent, []).append(int(score))
    out = []
    for name in sorted((set(agents) | set(load) | set(handled) | set(csat)) - {None}):
        times, scores = handled.get(name, []), csat.get(name, [])
        out.append({"agent": name, "load": int(load.get(name, 0)), "handled": len(times),
                    "average_handle_seconds": int(sum(times) / len(times)) if times else None,
                    "satisfaction_average": round(sum(scores) / len(scores), 2) if scores else None,
                    "satisfaction_count": len(scores)})
    return out


async def trend(session: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    """Per hour of the last 24: conversations (distinct, who wrote) and escalations. Hour
    boundaries are found on the primary key like the window's start."""
    hour0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    bounds = [hour0 + timedelta(hours=i) for i in range(25)]
    out = []
    msg_ids = [await first_id_since(session, InboundMessage, "received_at", b) for b in bounds[:24]]
    esc: dict[int, int] = {}
    start = await first_id_since(session, Handoff, "created_at", hour0)
    if start is not None:
        for (at,) in (await session.execute(select(Handoff.created_at).where(Handoff.id >= start))).all():
            i = int((outbox.as_aware(at) - hour0).total_seconds() // 3600)
            if 0 <= i < 24:
                esc[i] = esc.get(i, 0) + 1
    for i in range(24):
        lo = msg_ids[i]
        hi = next((x for x in msg_ids[i + 1:] if x is not None), None)
        n = 0
        if lo is not None:
            where = [InboundMessage.id >= lo] + ([InboundMessage.id < hi] if hi is not None else [])
            n = (await session.execute(select(func.count(func.distinct(InboundMessage.conversation_id))).where(*where))).scalar_one()
        out.append({"hour": bounds[i].isoformat(), "conversations": n, "escalations": esc.get(i, 0)})
    return out


@dataclass
class AgentView:
    name: str
    role: str
    online: bool


async def all_agents(session: AsyncSession) -> list[AgentView]:
    cutoff = utcnow() - ONLINE_WINDOW
    rows = (await session.execute(select(Agent).where(Agent.active.is_(True)).order_by(Agent.name))).scalars().all()
    return [AgentView(a.name, a.role, bool(a.last_seen_at and outbox.as_aware(a.last_seen_at) >= cutoff)) for a in rows]
