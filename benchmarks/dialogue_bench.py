"""Dialogue throughput and latency through the REST channel, on SQLite and on PostgreSQL.

Starts the real core (SQLite, seeded) and a real gateway on loopback, then runs C concurrent
conversations, each a multi-turn script (greeting, tariff quote, a verified bill query with a
follow-up, a repair request with confirmation). Prints messages/s and p50/p99 latency per store.

    python benchmarks/dialogue_bench.py [--conversations 20] [--rounds 1] [--pg URL | --no-pg]

PostgreSQL: a fresh database is created on the server at --pg (default
POWERBOT_TEST_DATABASE_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/test) and dropped after.

The load generator, the gateway and the core share this one process, so the CPU per message
it prints includes all three. The current figures, with the command and the hardware that
produced them, are in the README's Performance table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stack import run_core, run_gateway  # noqa: E402

SCRIPT = ["你好", "300度电多少钱", "查一下电费", "3100000002", "9000", "那上个月呢",
          "我家电表坏了需要报修", "闵行区莘庄镇莘松路10号", "13700002222", "确认"]


async def conversation(http: aiohttp.ClientSession, url: str, lat: list[float]) -> None:
    sender = f"bench-{uuid.uuid4().hex[:10]}"
    for text in SCRIPT:
        t0 = time.perf_counter()
        async with http.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}) as r:
            body = await r.json()
            if r.status != 200 or not body:
                raise RuntimeError(f"bad answer to {text!r}: {r.status} {body}")
        lat.append(time.perf_counter() - t0)


async def bench(label: str, bot_db: str, core_url: str, interpreter, conversations: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        async with run_gateway(bot_db, core_url, interpreter, data_dir=Path(d)) as gw:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conversations * 2)) as http:
                await conversation(http, gw.url, [])  # warm-up
                lat: list[float] = []
                t0, cpu0 = time.perf_counter(), time.process_time()
                for _ in range(rounds):
                    await asyncio.gather(*(conversation(http, gw.url, lat) for _ in range(conversations)))
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    print(f"{label:<11} msgs={len(lat):>5}  {len(lat) / wall:7.1f} msg/s  p50={p(0.50):7.1f} ms  "
          f"p99={p(0.99):7.1f} ms  mean={statistics.mean(lat) * 1000:7.1f} ms  ({conversations} concurrent conversations; "
          f"CPU {cpu / wall:.0%} of a core, {1000 * cpu / len(lat):.1f} ms/msg incl. core and client)")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pg", default=os.environ.get("POWERBOT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    from intents import load_or_train

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        interpreter = load_or_train(data_dir=str(root / "training_data"), model_dir=str(Path(tmp) / "models"))
        async with run_core(f"sqlite+aiosqlite:///{tmp}/core.db") as core:
            await bench("sqlite", f"sqlite+aiosqlite:///{tmp}/bot.db", core.url, interpreter, args.conversations, args.rounds)
            if not args.no_pg:
                import asyncpg
                from sqlalchemy.engine import make_url

                base = make_url(args.pg)
                name = f"bench_{uuid.uuid4().hex[:10]}"
                admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
                conn = await asyncpg.connect(admin)
                await conn.execute(f'CREATE DATABASE "{name}"')
                await conn.close()
                try:
                    url = base.set(database=name).render_as_string(hide_password=False)
                    await bench("postgresql", url, core.url, interpreter, args.conversations, args.rounds)
                finally:
                    conn = await asyncpg.connect(admin)
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
