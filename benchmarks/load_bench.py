"""Load benchmark: 1,000 concurrent simulated customers over REST and WeChat against 1, 2 and 4
gateway processes (``powerbot serve --workers N``) on PostgreSQL.

Everything is real and on loopback: the core runs as ``powerbot core serve`` (its own
PostgreSQL database), each gateway set as ``powerbot serve --workers N`` (a fresh bot
database per run), WeChat traffic is signed and AES-encrypted like WeChat's servers do
(``tests/wechat_platform.py``), and a local WeChat server API receives the customer-service
messages of answers that missed the passive-reply deadline.

Each customer sends ``--messages`` messages one after the other (a conversation; the next
message only after the answer), all customers at once. Latency = request → HTTP answer
(REST: the JSON replies; WeChat: the passive reply, or the empty "answer follows" when the
4-s budget ran out). Columns: ``answered`` = real answers in the HTTP response; ``deferred`` =
accepted, answer follows (REST: by polling after the 2-s wait; WeChat: "success", then the
customer-service API), ``of wx`` = of which WeChat; ``timeouts`` = the client gave up (WeChat after 5 s — it would retry the
same MsgId; REST at the run deadline); ``errors`` = HTTP errors / refused connections;
``processed/s`` = messages the gateways finished during the run (whether or not the client was
still waiting); ``in done/total`` and ``unsent`` = after a short drain, nothing may be lost;
``gw cpu ms/msg`` / ``core`` / ``pg cpu`` = CPU per processed message of the gateway processes,
the core and PostgreSQL (every ``postgres`` process on the box, the core's database included);
``stmts/msg`` = statements the gateway sent to PostgreSQL per processed message
(``powerbot_db_statements_total``); ``new pg sessions`` = backend sessions opened to the bot
database during the run (``pg_stat_database.sessions``: a pool that keeps reconnecting).

    .venv/bin/python benchmarks/load_bench.py                    # 1, 2, 4 workers, 1000 customers
    .venv/bin/python benchmarks/load_bench.py --workers 2 --customers 200
    .venv/bin/python benchmarks/load_bench.py --pg-restart       # also: restart PostgreSQL mid-run
                                                                  # (pg_ctlcluster; disturbs other users)

Settings used by the gateways: POWERBOT_DB_POOL_SIZE / _MAX_OVERFLOW from --pool/--overflow
(per process; N × (pool + overflow) + core must stay under PostgreSQL's max_connections),
rate limit per IP off (every simulated customer comes from 127.0.0.1), notifications off.
Bounded in time: each run stops after --run-timeout seconds; what is unanswered then counts
as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from wechat_platform import AES_KEY, APPID, SECRET, TOKEN, WeChatPusher, new_openid, run_wechat_api, text_xml  # noqa: E402

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TEXTS = ["你好", "电价怎么算", "峰谷电价是多少", "明天会停电吗", "怎么交电费", "谢谢"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exe() -> str:
    p = Path(sys.executable).with_name("powerbot")
    return str(p) if p.exists() else "powerbot"


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")}


async def new_database(base: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def drop_database(base: str, url: str) -> None:
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await conn.close()


async def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode}")
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not up within {timeout}s")
            await asyncio.sleep(0.2)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of one process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def postgres_cpu() -> float:
    """CPU seconds used so far by PostgreSQL on this box: every live ``postgres`` process, plus
    what the postmaster collected from its exited children (closed sessions). All databases:
    the bot's and the core's."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    procs: dict[int, tuple[int, list[str]]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        if comm.startswith("postgres"):
            fields = raw.rsplit(")", 1)[1].split()
            procs[int(d.name)] = (int(fields[1]), fields)
    for pid, (ppid, fields) in procs.items():
        total += int(fields[11]) + int(fields[12])
        if ppid not in procs:  # the postmaster: its exited children's time too
            total += int(fields[13]) + int(fields[14])
    return total / tick


async def pg_sessions(conn: asyncpg.Connection, database: str) -> int:
    """Sessions established to the database since the statistics were reset (PostgreSQL 14+)."""
    return int(await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = $1", database) or 0)


async def gateway_statements(http: aiohttp.ClientSession, url: str) -> float:
    """``powerbot_db_statements_total`` of the gateway (all its processes)."""
    async with http.get(url + "/metrics") as r:
        body = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("powerbot_db_statements_total{") and 'service="gateway"' in line)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Result:
    workers: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    deferred: int = 0
    wx_deferred: int = 0
    rest_ok: int = 0
    wx_ok: int = 0
    elapsed: float = 0.0
    cpu_load: str = ""
    warm: int = 0  # warm-up messages (processed before the CPU meters start)
    gw_cpu: float = 0.0
    core_cpu: float = 0.0
    pg_cpu: float = 0.0
    statements: float = 0.0
    new_sessions: int = 0
    inbound_done: int = 0
    done_at_end: int = -1
    inbound_total: int = 0
    outbox_unsent: int = 0


async def rest_customer(http: aiohttp.ClientSession, url: str, n: int, res: Result, deadline: float) -> None:
    sender = f"load-{uuid.uuid4().hex[:12]}"
    for text in random.sample(TEXTS, n):
        t0 = time.monotonic()
        try:
            async with http.post(
                url + "/webhooks/rest/webhook", json={"sender": sender, "message": text},
                timeout=aiohttp.ClientTimeout(total=max(1.0, deadline - t0)),
            ) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    res.errors += 1
                    continue
        except asyncio.TimeoutError:
            res.timeouts += 1
            continue
        except (aiohttp.ClientError, ValueError):
            res.errors += 1
            continue
        if not body:
            res.deferred += 1  # not ready within the REST wait (2 s): the answer follows by polling
            continue
        res.latencies.append(time.monotonic() - t0)
        res.rest_ok += 1


async def wechat_customer(http: aiohttp.ClientSession, url: str, n: int, res: Result, deadline: float) -> None:
    pusher = WeChatPusher(url, mode="safe")
    oid = new_openid()
    for text in random.sample(TEXTS, n):
        params, body = pusher.build(text_xml(oid, text))
        t0 = time.monotonic()
        try:
            async with http.post(
                pusher.url, params=params, data=body, headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=max(1.0, min(5.0, deadline - t0))),
            ) as r:
                answer = pusher.read(r.status, await r.text())
        except asyncio.TimeoutError:
            res.timeouts += 1  # WeChat gives up after 5 s (and retries the same MsgId)
            continue
        except (aiohttp.ClientError, ValueError, AssertionError):
            res.errors += 1
            continue
        if answer.status != 200:
            res.errors += 1
            continue
        if not answer.text:
            res.deferred += 1  # "success" within 5 s: the answer follows via the customer-service API
            res.wx_deferred += 1
            continue
        res.latencies.append(time.monotonic() - t0)
        res.wx_ok += 1


async def pg_restart_midway(delay: float) -> None:
    await asyncio.sleep(delay)
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()
    version, cluster = out[0], out[1]
    print(f"  !! restarting PostgreSQL {version}/{cluster} mid-run", flush=True)
    subprocess.run(["pg_ctlcluster", version, cluster, "restart"], check=False)


async def one_run(args: argparse.Namespace, workers: int, core_url: str, wechat_url: str, core_pid: int) -> Result:
    bot_db = await new_database(args.pg, "loadbot")
    port = free_port()
    env = base_env() | {
        "POWERBOT_DATABASE_URL": bot_db,
        "POWERBOT_CORE_URL": core_url,
        "POWERBOT_PORT": str(port),
        "POWERBOT_DATA_DIR": args.tmp,
        "POWERBOT_NLU_MODEL_DIR": str(Path(args.tmp) / "models"),
        "POWERBOT_NOTIFY_ENABLED": "false",
        "POWERBOT_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        "POWERBOT_DB_POOL_SIZE": str(args.pool),
        "POWERBOT_DB_MAX_OVERFLOW": str(args.overflow),
        "POWERBOT_LOG_LEVEL": "WARNING",
        "POWERBOT_WECHAT_APPID": APPID,
        "POWERBOT_WECHAT_TOKEN": TOKEN,
        "POWERBOT_WECHAT_AES_KEY": AES_KEY,
        "POWERBOT_WECHAT_SECRET": SECRET,
        "POWERBOT_WECHAT_API_BASE_URL": wechat_url,
    }
    if args.redis:
        env["POWERBOT_REDIS_URL"] = args.redis
    log = open(Path(args.tmp) / f"gateway-{workers}.log", "ab")
    cmd = [exe(), "serve"] + (["--workers", str(workers)] if workers > 1 else [])
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    res = Result(workers)
    try:
        await wait_http(url + "/healthz", proc)
        await asyncio.sleep(2.0 * workers)  # every worker loads its NLU model
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            # warm-up (JIT-less, but fills pools and caches)
            res.warm = 20
            await asyncio.gather(*(rest_customer(http, url, 1, Result(0), time.monotonic() + 30) for _ in range(res.warm)))
            load0 = os.getloadavg()[0]
            cpu0 = os.times()
            admin = make_url(bot_db).set(drivername="postgresql").render_as_string(hide_password=False)
            bot_name = make_url(bot_db).database
            meter = await asyncpg.connect(admin)
            try:
                sessions0 = await pg_sessions(meter, bot_name)
            finally:
                await meter.close()
            stmts0 = await gateway_statements(http, url)
            gw0, core0, pg0 = group_cpu(proc.pid), group_cpu(core_pid), postgres_cpu()
            t0 = time.monotonic()
            deadline = t0 + args.run_timeout
            half = args.customers // 2
            tasks = [rest_customer(http, url, args.messages, res, deadline) for _ in range(half)]
            tasks += [wechat_customer(http, url, args.messages, res, deadline) for _ in range(args.customers - half)]
            random.shuffle(tasks)
            extra = [asyncio.create_task(pg_restart_midway(5.0))] if args.pg_restart and workers == 2 else []
            await asyncio.gather(*tasks)
            res.elapsed = time.monotonic() - t0
            await asyncio.gather(*extra)
            res.pg_cpu = postgres_cpu() - pg0
            res.statements = await gateway_statements(http, url) - stmts0
            meter = await asyncpg.connect(admin)
            try:
                res.new_sessions = await pg_sessions(meter, bot_name) - sessions0 - 1  # not this one
            finally:
                await meter.close()
            cpu1 = os.times()
            res.cpu_load = f"{load0:.1f}->{os.getloadavg()[0]:.1f} (client cpu {cpu1.user - cpu0.user + cpu1.system - cpu0.system:.0f}s)"
        # Nothing lost: every persisted message processed, every reply delivered (give the outbox a moment).
        conn = await asyncpg.connect(admin)
        try:
            for _ in range(30):
                res.inbound_total = await conn.fetchval("SELECT count(*) FROM inbound_messages")
                res.inbound_done = await conn.fetchval("SELECT count(*) FROM inbound_messages WHERE status = 'done'")
                if res.done_at_end < 0:
                    res.done_at_end = res.inbound_done
                res.outbox_unsent = await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE status NOT IN ('sent', 'delivered')")
                if res.inbound_done == res.inbound_total and res.outbox_unsent == 0:
                    break
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        res.gw_cpu, res.core_cpu = group_cpu(proc.pid) - gw0, group_cpu(core_pid) - core0
    finally:
        stop(proc)
        await drop_database(args.pg, bot_db)
    return res


HDR = (f"{'workers':>7} {'answered':>8} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'deferred':>8} {'of wx':>5} {'timeouts':>8} "
       f"{'errors':>6} {'processed/s':>11} {'in done/total':>13} {'unsent':>6} {'gw cpu ms/msg':>13} {'core':>5} "
       f"{'pg cpu':>6} {'stmts/msg':>9} {'new pg sessions':>15}  load")


def row(r: Result) -> str:
    n = len(r.latencies)
    rate = n / r.elapsed if r.elapsed else 0.0
    processed = (r.done_at_end - r.warm) / r.elapsed if r.elapsed else 0.0
    return (f"{r.workers:>7} {n:>8} {rate:>7.1f} {pct(r.latencies, 0.5):>7.0f} {pct(r.latencies, 0.99):>7.0f} "
            f"{r.deferred:>8} {r.wx_deferred:>5} {r.timeouts:>8} {r.errors:>6} {processed:>11.1f} "
            f"{f'{r.inbound_done}/{r.inbound_total}':>13} "
            f"{r.outbox_unsent:>6} {1000 * r.gw_cpu / max(1, r.inbound_done - r.warm):>13.1f} "
            f"{1000 * r.core_cpu / max(1, r.inbound_done - r.warm):>5.1f} "
            f"{1000 * r.pg_cpu / max(1, r.done_at_end - r.warm):>6.2f} "
            f"{r.statements / max(1, r.done_at_end - r.warm):>9.1f} {r.new_sessions:>15}  {r.cpu_load}")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=2, help="messages per customer (sequential)")
    ap.add_argument("--pool", type=int, default=16, help="POWERBOT_DB_POOL_SIZE per process (the product default)")
    ap.add_argument("--overflow", type=int, default=0, help="POWERBOT_DB_MAX_OVERFLOW per process (the product default)")
    ap.add_argument("--run-timeout", type=float, default=45.0)
    ap.add_argument("--pg", default=os.environ.get("POWERBOT_TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--redis", default=None, help="Redis URL for the gateways (rate-limit counters, tokens)")
    ap.add_argument("--pg-restart", action="store_true", help="restart PostgreSQL during the 2-worker run")
    args = ap.parse_args()
    args.tmp = tempfile.mkdtemp(prefix="loadbench-")
    started = time.monotonic()
    from intents.model import train_if_needed

    # One model for every worker (trained or loaded once here; the repo's models/ is left alone).
    train_if_needed(ROOT / "training_data", Path(args.tmp) / "models")

    core_db = await new_database(args.pg, "loadcore")
    core_port = free_port()
    core_env = base_env() | {"POWERBOT_CORE_DATABASE_URL": core_db, "POWERBOT_CORE_PORT": str(core_port),
                             "POWERBOT_DATA_DIR": args.tmp, "POWERBOT_LOG_LEVEL": "WARNING"}
    core = subprocess.Popen([exe(), "core", "serve", "--seed"], env=core_env, cwd=ROOT,
                            stdout=open(Path(args.tmp) / "core.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    results: list[Result] = []
    print(f"load_bench: {args.customers} concurrent customers (half REST, half WeChat safe mode), "
          f"{args.messages} messages each, PostgreSQL, pool {args.pool}+{args.overflow}/process, "
          f"{os.cpu_count()} CPUs", flush=True)
    print(HDR)
    print("-" * len(HDR), flush=True)
    try:
        core_url = f"http://127.0.0.1:{core_port}"
        await wait_http(core_url + "/healthz", core, timeout=120)
        async with run_wechat_api() as wx:
            for n in args.workers:
                results.append(await one_run(args, n, core_url, wx.url, core.pid))
                print(row(results[-1]), flush=True)
    finally:
        stop(core)
        await drop_database(args.pg, core_db)

    print(f"\ntotal bench time {time.monotonic() - started:.0f}s; logs in {args.tmp}")


async def _main_cancellable() -> None:
    # SIGTERM/SIGINT (e.g. `timeout`): cancel, so the finally blocks stop the servers and drop
    # the databases instead of leaving them behind.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    try:
        await main()
    except asyncio.CancelledError:
        print("interrupted: servers stopped, databases dropped", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(_main_cancellable())
