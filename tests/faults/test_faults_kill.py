"""Fault: ``kill -9`` of the gateway process in the middle of traffic.

The gateway runs as a real ``powerbot serve`` subprocess (env ``POWERBOT_*``) on a fresh
PostgreSQL database, against a real core started here. 40 customers each report a hazard
with its place and a phone ("电线断了，冒火花…") and confirm it ("是的" → one emergency work
order per customer). While they are being answered
the process is killed with SIGKILL and restarted. Clients behave like a platform: a request
that fails (connection reset) is retried with the same message id until accepted.

Counted afterwards: messages in (inbound rows, all ``done``), replies out (each message's
replies delivered exactly once: inline or through polling, never both, never twice), and work
orders in the core — exactly one per customer (the dialogue engine's idempotency key makes
the re-processing after the crash harmless).

A conversation whose lease was held by the killed process waits for the lease to expire
(``bot.pipeline.drain.LEASE_TTL`` = 20 s) before the recovery loop finishes it, so this test takes
about a minute and a half.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.models import InboundMessage, OutboxMessage
from processes import GatewayProcess, free_port
from stack import run_core, wait_until

CUSTOMERS = 40
HAZARD = "我家门口电线断了，还在冒火花，快派人来"


def phone_of(i: int) -> str:
    return f"1370000{i:04d}"


async def send_until_accepted(
    http: aiohttp.ClientSession, url: str, sender: str, message: str, mid: str, deadline: float
) -> tuple[list, int]:
    """POST like a platform: retry the same message id until the gateway answers 200."""
    tries = 0
    while True:
        tries += 1
        try:
            async with http.post(
                url + "/webhooks/rest/webhook",
                json={"sender": sender, "message": message, "message_id": mid},
                timeout=aiohttp.ClientTimeout(total=45),
            ) as r:
                if r.status == 200:
                    return await r.json(), tries
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"{sender} never accepted"
        await asyncio.sleep(0.3)


async def polled(http: aiohttp.ClientSession, url: str, sender: str) -> list[dict]:
    async with http.get(url + "/webhooks/rest/messages", params={"sender": sender, "after": "0"}) as r:
        assert r.status == 200
        return (await r.json())["messages"]


async def core_work_orders(core_db: str) -> Counter:
    engine = create_async_engine(core_db)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT contact_phone FROM work_orders WHERE channel = 'rest'"))).all()
    finally:
        await engine.dispose()
    return Counter(r[0] for r in rows)


async def test_kill9_gateway_mid_traffic_every_message_answered_once(postgres_url, interpreter, tmp_path) -> None:
    from intents.model import save

    model_dir = tmp_path / "models"
    save(interpreter.state, model_dir)  # the subprocess loads the session's model instead of training
    core_db = f"sqlite+aiosqlite:///{tmp_path / 'core.db'}"
    async with run_core(core_db) as core:
        before = await core_work_orders(core_db)
        assert not before
        port = free_port()
        gw = GatewayProcess(
            {
                "POWERBOT_DATABASE_URL": postgres_url,
                "POWERBOT_CORE_URL": core.url,
                "POWERBOT_PORT": str(port),
                "POWERBOT_DATA_DIR": str(tmp_path / "var"),
                "POWERBOT_NLU_MODEL_DIR": str(model_dir),
                "POWERBOT_NOTIFY_ENABLED": "false",
                "POWERBOT_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
                "POWERBOT_DB_POOL_SIZE": "5",
                "POWERBOT_DB_MAX_OVERFLOW": "5",
            },
            tmp_path / "gateway.log",
        )
        gw.start()
        try:
            await gw.ready()
            deadline = time.monotonic() + 120
            accepted: dict[str, list] = {}
            sem = asyncio.Semaphore(8)

            async with aiohttp.ClientSession() as http:

                async def customer(i: int) -> None:
                    async with sem:
                        # the hazard with its place and a phone, then the yes that files the order
                        first, _ = await send_until_accepted(
                            http, gw.url, f"kill-{i}", f"{HAZARD}（{i}号楼），地址浦东新区张江路{i}号，电话{phone_of(i)}",
                            f"kill-msg-{i}", deadline,
                        )
                        yes, _ = await send_until_accepted(http, gw.url, f"kill-{i}", "是的", f"kill-yes-{i}", deadline)
                        accepted[f"kill-{i}"] = first + yes

                tasks = [asyncio.create_task(customer(i)) for i in range(CUSTOMERS)]
                await wait_until(lambda: len(accepted) >= 10, timeout=60)
                gw.kill9()  # in the middle: some answered, some in flight, some not sent yet
                killed_after = len(accepted)
                await asyncio.sleep(0.5)
                gw.start()
                await gw.ready()
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
                assert killed_after < CUSTOMERS, "the kill must land in the middle of the traffic"

                engine = create_async_engine(postgres_url)
                try:
                    async def all_done() -> bool:
                        async with engine.connect() as conn:
                            pending = (await conn.execute(
                                select(func.count()).select_from(InboundMessage).where(InboundMessage.status != "done")
                            )).scalar_one()
                            unsent = (await conn.execute(
                                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")
                            )).scalar_one()
                        return pending == 0 and unsent == 0

                    # Leases of the killed process expire after 20 s; then recovery finishes.
                    await wait_until(all_done, timeout=100, interval=0.5)
                    async with engine.connect() as conn:
                        inbound = (await conn.execute(
                            select(InboundMessage.id, InboundMessage.sender_id, InboundMessage.dedupe_key)
                        )).all()
                        outbox_rows = (await conn.execute(
                            select(OutboxMessage.dedupe_key, OutboxMessage.recipient_id, OutboxMessage.provider_id)
                        )).all()
                finally:
                    await engine.dispose()

                # Messages in: every customer's messages exactly once.
                assert sorted(r.dedupe_key for r in inbound) == sorted(
                    [f"kill-msg-{i}" for i in range(CUSTOMERS)] + [f"kill-yes-{i}" for i in range(CUSTOMERS)])
                # Replies out: each message's replies exist once and were delivered once.
                per_inbound = Counter(k.split(":")[1] for k, _, _ in outbox_rows if k and k.startswith("in:"))
                assert set(per_inbound) == {str(r.id) for r in inbound}
                without_order_number: list[tuple[str, list[str]]] = []
                twice: list[str] = []
                for i in range(CUSTOMERS):
                    sender = f"kill-{i}"
                    mine = [row for row in outbox_rows if row.recipient_id == sender]
                    inline = [m["text"] for m in accepted[sender]]
                    via_poll = [m["text"] for m in await polled(http, gw.url, sender)]
                    assert mine, sender
                    if set(inline) & set(via_poll):
                        # Killed between writing the HTTP answer and marking it delivered: the
                        # outbox delivers it again (at-least-once; the other order would lose it).
                        twice.append(sender)
                    texts = inline + [t for t in via_poll if t not in inline]
                    assert len(texts) == len(mine), f"{sender}: {len(texts)} replies seen, {len(mine)} queued"
                    assert len(set(via_poll)) == len(via_poll) and len(set(inline)) == len(inline), \
                        f"{sender}: a reply seen twice"
                    if not any("WO" in t for t in texts):
                        without_order_number.append((sender, texts))
                # The engine commits a hand-off turn (state, events, handoff) before the pipeline
                # queues its replies. A message whose turn was committed just before the SIGKILL
                # is re-processed: the engine replays the recorded answer (safety advice +
                # work-order number) instead of answering the hand-off it already opened.
                print(f"\nkilled after {killed_after} accepted; replies replaced by the re-run: "
                      f"{len(without_order_number)} {without_order_number}")
                print(f"answers seen twice (kill between HTTP write and delivered mark): {twice}")
                # Only requests inside that window can be answered twice: at most those in flight
                # when the process died (the semaphore's 8). Seen 0-4 per run.
                assert len(twice) <= 8
                assert without_order_number == []

            # No duplicate work: one emergency work order per message in the core.
            orders = await core_work_orders(core_db)
            assert sorted(orders) == sorted(phone_of(i) for i in range(CUSTOMERS)), orders
            assert all(n == 1 for n in orders.values())
        finally:
            gw.stop()
