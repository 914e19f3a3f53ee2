"""Notification fan-out: a planned outage for a district of N subscribed customers.

    .venv/bin/python benchmarks/notify_bench.py [--subscribers 100000] [--backend sqlite,postgres]
                              [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                              [--batch 5000] [--sms-batch 100] [--concurrency 32] [--passes 2]

For each backend (the bot store and the core store both on it; PostgreSQL runs use throw-away
databases created on the server behind ``--pg-url`` and dropped afterwards):

1. setup (not timed): core schema, N accounts in one district, each subscribed to ``outage``
   by SMS (bulk SQL into the core store);
2. **enqueue**: the core API creates the planned outage (``outage.created``), the real
   producer reads the feed, pages the district's subscriptions from the core API (10,000 per
   call) and writes N outbox notices with their dedupe keys and the cursor in one transaction;
3. **dispatch**: ALL N notices go out through the real SMS channel driven by the real outbox
   worker loop: claims of ``--batch`` rows (one UPDATE ... RETURNING, ``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL) by ``--passes`` claim loops, the real quiet-hours hold policy
   evaluated for every row (with a window that does not contain the time of the run), groups
   of ``--sms-batch`` notices per ``send_batch`` call (one opt-out lookup, the per-number rate
   limiter, segments, one signed call to the provider's batch endpoint, segment records in one
   multi-row INSERT), up to ``--concurrency`` batch requests in flight, per-row outcomes
   written in groups. Checked afterwards: N rows ``sent`` with their batch reference, N
   segments received by the provider, N segment records stored.

The SMS provider runs in its own process, checks every signature and counts receipts. CPU per
notice is read from /proc (user+system) for the dispatching process (this one), the provider
and, on PostgreSQL, the local server's processes. The gateway parts run without the dialogue
engine and NLU (no role here). The target is ≥ 5,000 notices/s dispatched on PostgreSQL.

The defaults (claims of 5,000 rows, 100 segments per batch request, up to 32 requests in
flight, 2 claim loops) were the fastest of the combinations tried on PostgreSQL: larger claims,
more claim loops or 200 segments per request added nothing beyond the box's noise, and claims of
2,000 with 8 requests in flight dispatched about half as fast. At the defaults the dispatcher
uses about three quarters of one core and the PostgreSQL backends about half of the other, so
there is no multi-process dispatch mode. Notices are sent in batches because one signed HTTP
call and two transactions per notice cost more than ten times as much per notice.

The current figures, with the command and the hardware that produced them, are in the
README's Performance table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-sms-secret"
API_KEY = "bench-sms-key"
DISTRICT = "基准新区"


# ------------------------------------------------------------------------- SMS provider
def _provider(port_q: "mp.Queue[int]", counter, calls) -> None:  # type: ignore[no-untyped-def]
    """The local SMS provider: checks every signature, counts accepted segments and requests."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    from aiohttp import web

    def verified(request: web.Request, body: bytes) -> bool:
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return request.headers.get("X-Api-Key") == API_KEY and hmac.compare_digest(sig, request.headers.get("X-Signature", ""))

    async def single(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(request, body):
            return web.json_response({"error": "bad signature"}, status=403)
        json.loads(body)
        with counter.get_lock():
            counter.value += 1
            n = counter.value
        with calls.get_lock():
            calls.value += 1
        return web.json_response({"message_id": f"p{n}"})

    async def batch(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(request, body):
            return web.json_response({"error": "bad signature"}, status=403)
        items = json.loads(body)["messages"]
        with counter.get_lock():
            first = counter.value + 1
            counter.value += len(items)
        with calls.get_lock():
            calls.value += 1
        return web.json_response(
            {"results": [{"client_ref": m["client_ref"], "message_id": f"p{first + k}"} for k, m in enumerate(items)]}
        )

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/messages", single)
        app.router.add_post("/v1/messages/batch", batch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port_q.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _cpu_seconds(pid: int | str = "self") -> float:
    """User+system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _server_cpu_seconds(name: str = "postgres") -> float:
    """CPU seconds of every local process called ``name`` (the database server's backends)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        if comm == name or comm.startswith(name + ":"):
            fields = raw.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# ------------------------------------------------------------------------- setup
async def seed_core(core_url: str, n: int) -> None:
    from sqlalchemy import insert

    from bot.db import make_engine
    from bot.migrate import CORE_MIGRATIONS, upgrade
    from core import models as cm

    await upgrade(core_url, CORE_MIGRATIONS)
    engine = make_engine(core_url)
    now = datetime.now(timezone.utc)
    try:
        async with engine.begin() as conn:
            for start in range(0, n, 5000):
                chunk = range(start, min(n, start + 5000))
                await conn.execute(insert(cm.Account), [
                    {"account_number": f"39{i:011d}", "holder_name": "基准用户", "phone": f"13{i:09d}",
                     "address": f"{DISTRICT}基准路{i}号", "district": DISTRICT, "category": "residential",
                     "status": "active", "created_at": now} for i in chunk
                ])
                await conn.execute(insert(cm.Subscription), [
                    {"account_number": f"39{i:011d}", "topic": "outage", "channel": "sms",
                     "identity": f"+8613{i:09d}", "created_at": now} for i in chunk
                ])
    finally:
        await engine.dispose()


async def pg_create(base_url: str, name: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(base_url)
    conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return u.set(database=name).render_as_string(hide_password=False)


async def pg_drop(base_url: str, name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(base_url)
    conn = await asyncpg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# ------------------------------------------------------------------------- one run
async def run(backend: str, args: argparse.Namespace, provider_url: str, counter, calls, provider_pid: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import aiohttp
    from aiohttp import web
    from sqlalchemy import func, select

    from backend_client import CoreClient
    from bot.db import make_engine, make_sessionmaker
    from bot.migrate import BOT_MIGRATIONS, upgrade
    from bot.models import OutboxMessage
    from bot.notify.producer import Producer
    from bot.outbox import OutboxWorker
    from bot.channel_store import BotChannelStore
    from bot.settings import Settings
    from bot.texts import TextService
    from channels import sms as sms_mod
    from channels.base import ChannelContext
    from channels.sms_store import SmsPart
    from core.app import create_core_app

    tmp = Path(tempfile.mkdtemp(prefix="notify_bench_"))
    dbs: list[str] = []
    if backend == "sqlite":
        core_url = f"sqlite+aiosqlite:///{tmp / 'core.db'}"
        bot_url = f"sqlite+aiosqlite:///{tmp / 'bot.db'}"
    else:
        tag = uuid.uuid4().hex[:8]
        dbs = [f"nb_core_{tag}", f"nb_bot_{tag}"]
        core_url = await pg_create(args.pg_url, dbs[0])
        bot_url = await pg_create(args.pg_url, dbs[1])
    try:
        t0 = time.perf_counter()
        await seed_core(core_url, args.subscribers)
        await upgrade(bot_url, BOT_MIGRATIONS)
        print(f"[{backend}] setup: {args.subscribers:,} accounts + subscriptions in {time.perf_counter() - t0:.1f}s", flush=True)

        core_app = create_core_app(core_url, seed=False)
        runner = web.AppRunner(core_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        core_base = f"http://127.0.0.1:{runner.addresses[0][1]}"

        settings = Settings(
            database_url=bot_url, core_url=core_base, data_dir=tmp, sms_api_base_url=provider_url,
            sms_api_key=API_KEY, sms_secret=SECRET, sms_batch_size=args.sms_batch,
            core_timeout_seconds=60, db_pool_size=20, db_max_overflow=20,
        )
        engine = make_engine(bot_url, pool_size=20, max_overflow=20)
        sm = make_sessionmaker(engine)
        connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            core = CoreClient(core_base, timeout=60, session=http)
            ctx = ChannelContext(settings=settings, processor=None, sessionmaker=sm, http=http, core=core,  # type: ignore[arg-type]
                                 texts=TextService(settings), store=BotChannelStore(sm))
            channel = sms_mod.from_context(ctx)
            assert channel is not None
            producer = Producer(sm, core, settings, ["sms"])
            await producer.init_cursor()

            # --- enqueue ------------------------------------------------------------------
            t0 = time.perf_counter()
            start = datetime.now(timezone.utc) + timedelta(days=2)
            await core.create_outage("planned", DISTRICT, "基准区域", start, estimated_end_at=start + timedelta(hours=4),
                                     cause="线路检修")
            await producer.drain()
            t_enqueue = time.perf_counter() - t0
            async with sm() as s:
                queued = await s.scalar(select(func.count()).select_from(OutboxMessage))
            assert queued == args.subscribers, queued
            sample = await _sample_text(sm)
            print(f"[{backend}] enqueue: {queued:,} notices in {t_enqueue:.2f}s = {queued / t_enqueue:,.0f} notices/s"
                  f"  (text: {len(sample)} chars, {len(sms_mod.split_segments(sample))} SMS segment(s))", flush=True)

            # --- dispatch ALL notices through the real SMS channel ---------------------------
            # (outbox claims, the real quiet-hours hold policy evaluated per row, the channel's
            # opt-out lookup, per-number rate limit, segments, signed batch calls, segment
            # records, per-row outcomes)
            worker = OutboxWorker(sm, {"sms": channel}, batch_size=args.batch, concurrency=args.concurrency,
                                  hold_policies=[_quiet_hours_elsewhere()])
            parts = len(sms_mod.split_segments(sample))
            before, calls_before = counter.value, calls.value
            prov_cpu0 = _cpu_seconds(provider_pid)
            db_cpu0 = _server_cpu_seconds() if backend == "postgres" else 0.0
            cpu0 = _cpu_seconds()
            prof = _profile_start(args)
            t_dispatch = await _dispatch(worker, args.passes, counter, queued * parts)
            _profile_stop(prof, args, backend)
            cpu = _cpu_seconds() - cpu0
            prov_cpu = _cpu_seconds(provider_pid) - prov_cpu0
            db_cpu = _server_cpu_seconds() - db_cpu0 if backend == "postgres" else 0.0
            sent = await _count(sm, OutboxMessage.status == "sent", OutboxMessage.provider_id.like("smsb_%"))
            received = counter.value - before
            requests = calls.value - calls_before
            async with sm() as s:
                stored_parts = await s.scalar(select(func.count()).select_from(SmsPart))
            assert sent == queued and received == queued * parts and stored_parts == received, (sent, received, stored_parts)
            print(f"[{backend}] dispatch (SMS channel): {sent:,} notices ({received:,} segments in {requests:,} batch"
                  f" requests) in {t_dispatch:.2f}s = {sent / t_dispatch:,.0f} notices/s;"
                  f" CPU {1000 * cpu / sent:.3f} ms/notice in the dispatching process"
                  f" ({100 * cpu / t_dispatch:.0f}% of one core), provider {1000 * prov_cpu / sent:.3f} ms/notice"
                  + (f", PostgreSQL server {1000 * db_cpu / sent:.3f} ms/notice" if db_cpu else ""), flush=True)
            await core.close()
        await engine.dispose()
        await runner.cleanup()
        return {"enqueue": queued / t_enqueue, "dispatch": sent / t_dispatch,
                "dispatch_cpu_ms_per_notice": 1000 * cpu / sent}
    finally:
        for name in dbs:
            await pg_drop(args.pg_url, name)


async def _dispatch(worker, passes: int, counter, expected: int) -> float:  # type: ignore[no-untyped-def]
    """Run the worker's own loops until the provider has counted ``expected`` calls."""
    worker.configure(pipelines=passes)
    worker.stop_grace = 120.0  # the provider counts a call before send() returns: let them all finish
    target = counter.value + expected
    t0 = time.perf_counter()
    await worker.start()
    while counter.value < target:
        await asyncio.sleep(0.01)
    await worker.stop()  # lets the last sends finish and writes their outcomes
    return time.perf_counter() - t0


def _profile_start(args):  # type: ignore[no-untyped-def]
    if not args.profile:
        return None
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    return prof


def _profile_stop(prof, args, suffix: str) -> None:  # type: ignore[no-untyped-def]
    if prof is not None:
        prof.disable()
        prof.dump_stats(f"{args.profile}.{suffix}")


def _quiet_hours_elsewhere():  # type: ignore[no-untyped-def]
    """The real quiet-hours hold policy, with a window that does not contain now (so every
    row is evaluated by it and none is held, whatever the time of the run)."""
    from bot.notify.policies import quiet_hours_policy

    now = datetime.now(timezone.utc)
    a, b = now + timedelta(hours=6), now + timedelta(hours=14)
    return quiet_hours_policy(f"{a:%H:%M}-{b:%H:%M}", "UTC", ["sms"])


async def _count(sm, *where) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from bot.models import OutboxMessage

    async with sm() as s:
        return int(await s.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0)


async def _sample_text(sm) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from bot.models import OutboxMessage

    async with sm() as s:
        payload = await s.scalar(select(OutboxMessage.payload).limit(1))
    return payload["text"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--backend", default="sqlite,postgres")
    ap.add_argument("--pg-url", default=os.environ.get("POWERBOT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--batch", type=int, default=5000, help="outbox rows per claim (the gateway setting outbox_batch_size allows up to 5000)")
    ap.add_argument("--sms-batch", type=int, default=100, help="segments per provider batch request (max 200)")
    ap.add_argument("--concurrency", type=int, default=32, help="batch requests in flight (all claim loops together)")
    ap.add_argument("--passes", type=int, default=2, help="concurrent claim loops")
    ap.add_argument("--profile", default=None, help="write a cProfile of the SMS dispatch phase to PATH.<backend>")
    args = ap.parse_args()
    for k in list(os.environ):
        if k.startswith("POWERBOT_") and not k.startswith("POWERBOT_TEST_"):
            del os.environ[k]

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("powerbot.channels.sms").setLevel(logging.WARNING)

    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    calls = ctx.Value("q", 0)
    port_q: mp.Queue[int] = ctx.Queue()
    proc = ctx.Process(target=_provider, args=(port_q, counter, calls), daemon=True)
    proc.start()
    provider_url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"
    print(f"notify_bench: {args.subscribers:,} subscribers, claim {args.batch} rows, SMS batch {args.sms_batch} segments,"
          f" up to {args.concurrency} batch requests in flight, {args.passes} claim loop(s),"
          f" {os.cpu_count()} CPU(s)", flush=True)
    results = {}
    try:
        for backend in [b.strip() for b in args.backend.split(",") if b.strip()]:
            results[backend] = asyncio.run(run(backend, args, provider_url, counter, calls, proc.pid))
    finally:
        proc.terminate()
    print(json.dumps({k: {m: round(v, 3) if v < 10 else round(v) for m, v in r.items()} for k, r in results.items()}))
    if "postgres" in results:
        ok = results["postgres"]["dispatch"] >= 5000
        print(f"target ≥ 5,000 notices/s dispatched on PostgreSQL: {'met' if ok else 'NOT met'}"
              f" ({results['postgres']['dispatch']:,.0f}/s)")


if __name__ == "__main__":
    main()
