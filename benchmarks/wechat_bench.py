"""WeChat channel throughput and latency: the full encrypted round trip vs two yardsticks on the same box.

    python benchmarks/wechat_bench.py [--seconds 8] [--concurrency 50,200] [--paced 200] [--think 1,3]
                                      [--paced-seconds 20] [--db-url URL | --pg [URL]] [--only bare,crypto,full]
                                      [--rounds N]

Three servers, each in its own process, driven by the same load generator (this process):

- ``bare``: an aiohttp handler answering a fixed string (what the box can do at all);
- ``crypto``: verify the signature, decrypt the AES message, encrypt a fixed reply — no NLU,
  no database (the floor any safe-mode WeChat endpoint pays);
- ``full``: the real gateway in safe mode with the real core, NLU and dialogue engine: verify,
  decrypt, persist, NLU, dialogue, outbox, encrypted passive reply. The reference core (the
  utility's system behind the gateway) runs in a process of its own, as in production; its CPU
  per message is printed apart.

Two kinds of load. Every conversation is one openid sending messages one after another, each
with a new MsgId, six messages per customer, then a new customer takes the slot.

- closed loop (saturation throughput, every server, each ``--concurrency``): a conversation
  sends its next message as soon as it has the answer. Prints messages/s, p50/p99, the server's
  CPU per message and the ratios; the throughput target (full >= 30% of crypto-only) is judged
  here.
- paced (latency target, the full path only; ``--paced 0`` skips it): ``--paced`` conversations
  (default 200) whose customers read the answer and then "type" for a think time drawn
  uniformly from ``--think`` (default 1-3 s) before the next message; the conversations start
  spread over the first think interval, which is also the warm-up. p99 <= 50 ms is judged here
  (200 closed-loop conversations answered within 50 ms would need 4000 msg/s, more than the
  crypto-only yardstick itself).

The box is shared: the server's CPU ms per message is the steadier figure; rates and latencies
move with the neighbours' load.

Measured 2026-11-26 (before and after the first hot-path work; load average 3-5):

    SQLite      bare 2680/2473  crypto 1429/1420  full c=50 102/s p50 453 ms p99 715 ms (10.2 ms CPU/msg)
                                                  full c=200 71/s p50 2.8 s p99 3.2 s, no timeouts
    PostgreSQL                                    full c=50 44/s p50 870 ms p99 2.1 s (17.5 ms CPU/msg)
                                                  full c=200 collapses (44/s < 200 conversations / 4 s)

Measured 2026-11-28 on the shared 2-CPU box. Morning, idle box, before this day's work (one
server process, SQLite): bare 3391/s, crypto-only 1902/s (0.57 ms CPU/msg), full 91/s at c=50
(p50 516 ms, p99 787 ms) and 92/s at c=200 (p99 2.4 s), ~12-13 ms CPU/msg.

After the day's work (one-statement tracker snapshot, Core statements, ON CONFLICT statements
compiled once, SQLite BEGIN sent with the first statement, group commit of turn write-sets on
SQLite). Run back to back with the previous code (d1bd143) while another engineer's test suite
and benchmarks were running (load average 1.3-2.3, so rates are low and latencies long):

                 full c=50              full c=200             paced 200 (think 1-3 s)
    SQLite before  73/s  14.7 ms CPU/msg  62/s  18.0 ms CPU/msg   67/s  p50 909 ms  p99 1.8 s
           after  163/s   6.8 ms CPU/msg 172/s   6.5 ms CPU/msg   92/s  p50  53 ms  p99 604 ms
    PG     before  55/s  19.4 ms CPU/msg  collapses (241 errors)  49/s  p50 2.1 s   p99 3.2 s
           after  108/s   9.8 ms CPU/msg 105/s  10.4 ms CPU/msg   86/s  p50  87 ms  p99 1.05 s

    same run, yardsticks (SQLite server): bare 3519/2808, crypto-only 2544/1766 msg/s (0.44-0.59 ms CPU/msg)

Again back to back at load average ~1 (SQLite, c=50, 10 s): before 68/s 15.7 ms CPU/msg, after
167/s 6.3 ms CPU/msg. The same code measured 3.6-5.3 ms CPU/msg and 193-279 msg/s at c=50 in
quieter moments of the day (175 msg/s at c=200; paced 200: 96-97 msg/s, p50 17-35 ms, p99
111-232 ms): the box's state moves the CPU figure too, so compare runs made back to back.

Targets NOT met: the full path is 6-18% of crypto-only by measured rates (CPU-normalised
6-12%: ~3.6-6.8 ms against ~0.45 ms per message), and the paced p99 is 0.1-0.6 s against 50 ms. What remains per
message on SQLite: SQLAlchemy execution of ~6 statements in ~2 transactions (tracker snapshot,
grouped turn write, grouped inbound insert and inline mark), the new customer's path every
sixth message (identity link with ORM objects, the core's account lookup over HTTP, the WeChat
window ledger), NLU ~0.25 ms, aiohttp + crypto ~0.5 ms. The paced tail comes from queueing on
the single SQLite connection and from full garbage collections (~50-70 ms each, a few per run).

Measured 2026-12-01 (quiet box; the reference core now runs in its own process, as in
production, and its CPU is printed apart — 0.25-0.4 ms per message). After running SQLite
statements on the event loop's thread (a trip to aiosqlite's thread cost ~100 us of CPU and up
to the 5 ms GIL switch interval of latency), Core statements for a new sender's first turn and
one greenlet per hot transaction:

                 full c=50              full c=200             paced 200 (think 1-3 s)
    SQLite before 172/s  6.3 ms CPU/msg   168/s  6.5 ms CPU/msg    91/s  p50 42 ms  p99 721 ms
           after  378-417/s 2.7-2.9 ms    393-428/s 2.6-2.8 ms     98/s  p50 9 ms   p99 35-39 ms
    PG     before 164/s  6.4 ms CPU/msg   137/s  7.9 ms CPU/msg    94/s  p50 50 ms  p99 350 ms
           after  (not run)               188/s  5.5 ms CPU/msg    96/s  p50 29 ms  p99 211 ms

    yardsticks: bare 2675-3424/s, crypto-only 2322-2923/s (0.37-0.40 ms CPU/msg)

The latency target (p99 <= 50 ms, 200 paced conversations) is met on SQLite; on PostgreSQL it
is not (p99 ~0.2 s). The throughput target is not met: the full path is 14-18% of crypto-only
(CPU-normalised 14-15%: ~2.6 ms against ~0.4 ms per message). What the 2.6 ms are (py-spy,
SQLite): SQLAlchemy executing ~5 statements in ~2.5 transactions ~40%, NLU ~15% (0.25-0.4 ms),
aiohttp + XML + AES ~15%, the dialogue policy and replies ~10%.

Measured 2026-12-01 afternoon, the box slower and noisier than in the morning (the morning's
code, interleaved run by run with the new: 2.9-4.2 ms CPU/msg). After WAL checkpoints on a
worker thread (inside a commit they took 5-50 ms of the loop: 43 of 6,087 commits >= 5 ms),
inline-delivery marks riding on the next grouped turn write, driver calls without a greenlet
switch inside ``in_transaction`` (a trivial transaction 233 -> 175 us of CPU), and the turn's
snapshot prefetched in the inbound insert (SQLite) or the lease / previous write (PostgreSQL):

                 full c=50              full c=200             paced 200 (think 1-3 s)
    SQLite old   247-315/s 2.9-4.2 ms   281-371/s 2.9-3.9 ms   97-98/s  p99 53-139 ms
           new   270-431/s 2.5-3.9 ms   283-436/s 2.6-3.9 ms   98/s     p99 35-65 ms (six runs)
    PG     old   131/s  7.6 ms          -                      88/s     p99 603 ms
           new   125-154/s 6.5-7.7 ms   121/s  8.7 ms          91-92/s  p99 656-667 ms

    commits per message (counted at c=50): 1.9 -> 0.68; statements 3.6 -> 3.4
    yardsticks: bare 2158-2877/s, crypto-only 1705-2922/s (0.38-0.61 ms CPU/msg)

Paced, by a customer's message (new code): the first message of a new sender p50 17 ms, p99
59 ms (the core's account lookup over HTTP waits p50 5.5 ms, p99 27 ms); the others p50
8-10 ms, p99 33-40 ms.

The final code of the day (a new sender's first turn inside the grouped turn write too), one
full run: bare 2488/2248, crypto-only 1856/1949 msg/s (0.57/0.51 ms CPU/msg); full SQLite
407/s (2.73 ms) at c=50 and 424/s (2.60 ms) at c=200 -> 22% of crypto-only (CPU-normalised
20%): NOT met; paced 200: p50 12.1 ms, p99 43.9 ms (first messages p99 54 ms, the others
40-46 ms): met. PostgreSQL the same hour: 85-125 msg/s, 7.7-10.9 ms CPU/msg, paced p99 345 ms.

Measured 2026-12-01, session 5 (precompiled hot statements run straight on SQLite's cursor, the
NLU parse ~45% cheaper, no index the hot path writes and nothing reads, GC tuned for serving,
group commits that let two loop turns join). Interleaved with the session's starting code
(d0fc175), three rounds each, the box's speed moving 2x within minutes:

                 full c=50                          full c=200
    SQLite old   343-461/s  2.47-3.33 ms CPU/msg    411-492/s  2.32-2.72 ms CPU/msg
           new   545-754/s  1.52-2.09 ms            678-807/s  1.38-1.63 ms
    crypto-only in the same rounds: 2163-3819/s, 0.27-0.47 ms CPU/msg

    full / crypto-only at c=200 (new): 22-36% by measured rates, 21-32% CPU-normalised;
    four whole-benchmark runs of the final code: 22-33% measured, 19-30% CPU-normalised ->
    the 30% target is reached in some runs, not reliably. --rounds 3 (medians): c=200 full/crypto
    26% (rounds 25/26/29%), CPU-normalised 23% (20/23/26%); c=50 23%; paced p99 33.2 ms.
    paced 200: p50 5.9-6.4 ms, p99 15.9-32.5 ms over five runs: met.
    commits per message (counted at c=50) 0.70 -> 0.43, SQLite pages written 13.6 -> 8.2.
    PostgreSQL (one run): c=50 169/s, 5.7 ms CPU/msg; paced p99 237 ms: not met there.

Measured 2026-12-01, session 6, on a box about twice as fast (crypto-only now at the issue's own
orientation figure). After the WeChat window renewal moved into the inbound insert (a "side
write": one commit less per new sender), JSON columns serialized with orjson, lighter waits in
the pipeline, and a RESTART checkpoint once the WAL passes 4,096 frames (PASSIVE alone let it
grow to 300 MB under sustained load). --rounds 3:

    bare 6566-7662/s; crypto-only c=50 7306-7418/s, c=200 5629-6240/s (0.14-0.17 ms CPU/msg)
    full SQLite c=50 1335-1505/s (0.75-0.86 ms), c=200 1055-1465/s (0.77-1.08 ms)
    full / crypto-only at c=200: 23% (rounds 19/22/23%), CPU-normalised 19%: NOT met
    paced 200: p50 3.3 ms, p99 29.3 ms: met
    PostgreSQL: c=50 300-387/s (2.6-3.2 ms), c=200 283/s, paced p99 21.6-27.6 ms: met
    PostgreSQL round trips per message (counted, c=50): ~21 -> 12.7 after the pool stopped
    pinging busy connections and the lease statements were folded (WITH .. INSERT/DELETE)

    interleaved with the session's starting code (aea7e27), ten pairs at c=200: median
    1280 -> 1390 msg/s, 0.90 -> 0.83 ms CPU/msg

Inside the store's transactions is 34% of the gateway's CPU (measured with thread CPU time
around every transaction); with the store free the full path would be ~0.5 ms per message,
about the 30% line: the target needs the whole per-message path a third cheaper.

Measured 2026-12-01, session 7. The box's speed moved by a third within the hour (the same
code: 0.61-0.65 ms CPU/msg at c=200 at first, 0.83-0.99 ms later; crypto-only stayed at
0.14-0.17 ms, so the full path, with its larger working set, suffers more from neighbours).
--rounds 3 late in the session:

    bare 5726-7640/s; crypto-only c=50 6697-7275/s, c=200 5379-7023/s (0.14-0.17 ms CPU/msg)
    full SQLite c=50 1237-1300/s (0.89-0.92 ms), c=200 1130-1357/s (0.83-0.99 ms)
    full / crypto-only at c=200: 19% (rounds 17/19/25%), CPU-normalised 16%: NOT met
    paced 200: p50 3.6 ms, p99 12.0 ms: met
    PostgreSQL (one run): c=50 346/s (2.72 ms), c=200 382/s (2.52 ms), paced p99 20.1 ms: met

Where the SQLite time goes (thread CPU around each statement, c=200): ~130 us per message in
SQLite's own calls - commits 29, the snapshot read 20, the outbox insert 19, the inbound
insert 18, the events 14, the inline marks 13, the rest under 5 each. Upper bounds, measured
by removing the work outright (not kept; replies or history would be lost): no dialogue events
0.05-0.1 ms per message, NLU answered from a cache 0.1-0.15 ms. Tried and not kept: the hot
modules compiled with Cython 3 (slower: 0.68-0.72 against 0.61-0.65 ms, compiled coroutines
cost asyncio more), uvloop (no difference in three interleaved pairs).

Later the same session, after a turn's actions and slot changes moved into its user event
(event rows per message 4.7 -> 2.3), the outbox indexes were cut to the rows their queries
read (bot_0013), JSON columns were read with orjson, and on PostgreSQL the lease statement
and the turn's last statement were folded (round trips per message 12.7 -> 9.6):

    --rounds 3: bare 5411-8061/s; crypto-only c=200 5583-7430/s (0.14-0.17 ms CPU/msg)
    full SQLite c=50 1429-1839/s (0.62-0.80 ms), c=200 1364-1801/s (0.62-0.84 ms)
    full / crypto-only at c=200: 24% (rounds 24/24/29%), CPU-normalised 22% (20/22/26%): NOT met
    paced 200: p50 3.6 ms, p99 10.6 ms: met
    PostgreSQL (one run): c=50 507/s (1.86 ms), c=200 490/s (1.96 ms), paced p99 15.1 ms

Measured 2026-12-01, session 8, on a steadier box (interleaved A/B pairs within +-2%). The
session's starting code: c=200 0.88-0.89 ms CPU/msg, 1238-1244/s. Changes, each an
interleaved A/B at c=200: replies answered inline held on the inbound row instead of queued
in the outbox 0.88 -> 0.82 ms; group writes in power-of-two statement sizes (72 compiles in
one run before) and 96 turns at once on SQLite instead of 16: 0.88 -> 0.74-0.80 ms; the
inbound conversation index of waiting rows only (bot_0015) 0.78-0.79 -> 0.75-0.77 ms.
--rounds 3 of the final code:

    bare 5444-5552/s (load-generator bound); crypto-only c=200 4402-4631/s (0.22 ms CPU/msg,
    85-90% of a core)
    full SQLite c=50 1335-1373/s (0.82-0.85 ms), c=200 1369-1462/s (0.77-0.81 ms)
    full / crypto-only at c=200: 31% (rounds 31/31/32%): met; CPU-normalised 28% (27/28/28%)
    paced 200: p50 4.4 ms, p99 14.2 ms: met
    PostgreSQL (slower box today; the starting code the same): c=50 ~300/s (3.1-3.2 ms),
    c=200 279/s, paced p99 26.9 ms: met

    again on the final code, the box slower for every server (crypto-only 0.22-0.26 ms):
    full c=200 1317-1390/s (0.81-0.85 ms), crypto-only 4094-4329/s: 31/32/32% measured,
    29/30/31% CPU-normalised; paced p99 13.1 ms
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MESSAGES_PER_CUSTOMER = 6  # a conversation: six messages, then a new customer
TEXTS = ["你好", "电价是多少", "谢谢", "查电费", "峰谷电价怎么算", "你们几点上班"]


# ---------------------------------------------------------------------------- servers
def _serve(kind: str, port_q: "mp.Queue[int]", db_url: str | None, core_port: int = 0) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve_async(kind, port_q, db_url, core_port))


async def _serve_async(kind: str, port_q: "mp.Queue[int]", db_url: str | None, core_port: int) -> None:
    from aiohttp import web

    from wechat_platform import AES_KEY, APPID, SECRET, TOKEN

    if kind in ("bare", "crypto"):
        from wechatpy.crypto import WeChatCrypto

        from channels.wechat import render_text_reply, safe_parse_xml

        crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text="success")

        async def crypto_only(request: web.Request) -> web.Response:
            q = request.query
            body = await request.read()
            outer = safe_parse_xml(body)
            plain = crypto.decrypt_message({"Encrypt": outer["Encrypt"]}, q["msg_signature"], q["timestamp"], q["nonce"])
            xml = safe_parse_xml(plain)
            out = render_text_reply(xml["FromUserName"], xml["ToUserName"], "您好，请问有什么可以帮您？")
            return web.Response(
                text=crypto.encrypt_message(out, secrets.token_hex(8), str(int(time.time()))),
                content_type="application/xml",
            )

        app = web.Application()
        app.router.add_post("/channels/wechat", bare if kind == "bare" else crypto_only)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_q.put(runner.addresses[0][1])
        await asyncio.Event().wait()
        return

    from stack import run_core, run_gateway

    tmp = Path(tempfile.mkdtemp(prefix="wechat_bench_"))
    if kind == "core":  # the utility's core system: its own process, as in production
        async with run_core(f"sqlite+aiosqlite:///{tmp / 'core.db'}") as core:
            port_q.put(int(core.url.rsplit(":", 1)[1]))
            await asyncio.Event().wait()
        return

    from intents import load_or_train

    interpreter = load_or_train(data_dir=str(ROOT / "training_data"), model_dir=str(ROOT / "models"))
    core_url = f"http://127.0.0.1:{core_port}"
    async with run_gateway(
        db_url or f"sqlite+aiosqlite:///{tmp / 'bot.db'}", core_url, interpreter, data_dir=tmp,
        wechat_appid=APPID, wechat_token=TOKEN, wechat_aes_key=AES_KEY, wechat_secret=SECRET,
        wechat_api_base_url="http://127.0.0.1:9/cgi-bin/",
    ) as gw:
        from bot.runner import tune_gc

        tune_gc()  # as ``powerbot serve`` / ``make run`` do once the gateway is up
        port_q.put(int(gw.url.rsplit(":", 1)[1]))
        await asyncio.Event().wait()


# ---------------------------------------------------------------------------- load
async def _load(
    port: int, concurrency: int, seconds: float, check_reply: bool, think: tuple[float, float] | None = None
) -> dict[str, float]:
    """Closed loop (``think`` None): each conversation sends its next message as soon as the
    answer is in. Paced: after each answer the customer "types" for uniform(*think) seconds,
    and the conversations start spread over the first think interval."""
    import aiohttp
    import xmltodict

    from wechat_platform import AES_KEY, APPID, TOKEN, WeChatPusher, new_msg_id, new_openid, text_xml

    url = f"http://127.0.0.1:{port}"
    pusher = WeChatPusher(url, mode="safe", token=TOKEN, aes_key=AES_KEY, appid=APPID)
    latencies: list[float] = []
    errors = sent = 0
    start = time.perf_counter()
    warmup_until = start + (think[1] if think else min(1.0, seconds / 4))
    deadline = warmup_until + seconds if think else start + seconds
    rng = random.Random(42)

    async def conversation(http: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        oid = new_openid()
        i = 0
        if think:
            await asyncio.sleep(rng.uniform(0, think[1]))
        while time.perf_counter() < deadline:
            if i and i % MESSAGES_PER_CUSTOMER == 0:
                oid = new_openid()  # the next customer takes this slot (and stays under the per-sender limit)
            params, body = pusher.build(text_xml(oid, TEXTS[i % len(TEXTS)], msg_id=new_msg_id()))
            i += 1
            sent += 1
            t0 = time.perf_counter()
            try:
                async with http.post(pusher.url, params=params, data=body) as resp:
                    text = await resp.text()
                    ok = resp.status == 200 and (not check_reply or text not in ("", "success"))
            except aiohttp.ClientError:
                ok = False
            t1 = time.perf_counter()
            if ok and check_reply and i % 20 == 1:  # sample: the answer really is WeChat-readable
                doc = xmltodict.parse(text)["xml"]
                pusher.reader.decrypt_message(text, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            if t0 >= warmup_until and t0 < deadline:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
            if think:
                await asyncio.sleep(rng.uniform(*think))

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(conversation(http) for _ in range(concurrency)))
    measured = deadline - warmup_until
    lat = sorted(latencies)
    return {
        "rate": len(lat) / measured if measured > 0 else 0.0,
        "p50": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
        "n": len(lat),
        "errors": errors,
        "sent": sent,
    }


def _cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _run(
    kind: str, concurrencies: list[int], seconds: float, db_url: str | None,
    paced: tuple[int, float, float, float] | None = None,
) -> dict[int | str, dict[str, float]]:
    """Closed-loop runs at each concurrency, then (``paced`` = conversations, think min, think
    max, seconds) the paced run, all against one server process."""
    ctx = mp.get_context("spawn")
    q: mp.Queue[int] = ctx.Queue()
    core_proc = None
    core_port = 0
    if kind == "full":
        core_proc = ctx.Process(target=_serve, args=("core", q, None), daemon=True)
        core_proc.start()
        core_port = q.get(timeout=150)
    proc = ctx.Process(target=_serve, args=(kind, q, db_url, core_port), daemon=True)
    proc.start()
    try:
        port = q.get(timeout=150)
        out: dict[int | str, dict[str, float]] = {}
        runs: list[tuple[int | str, int, float, tuple[float, float] | None]] = [(c, c, seconds, None) for c in concurrencies]
        if paced:
            runs.append(("paced", paced[0], paced[3], (paced[1], paced[2])))
        for key, c, secs, think in runs:
            core_cpu0 = _cpu_seconds(core_proc.pid) if core_proc else 0.0
            cpu0, t0 = _cpu_seconds(proc.pid), time.perf_counter()
            r = out[key] = asyncio.run(_load(port, c, secs, check_reply=kind != "bare", think=think))
            cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.perf_counter() - t0
            core_cpu = (_cpu_seconds(core_proc.pid) - core_cpu0) if core_proc else 0.0
            # the server's CPU share says how much of a core it got on a shared box; CPU per
            # answered message is the figure that does not depend on the neighbours' load
            # (for the paced run: CPU over the whole run, warm-up included, per message sent)
            share = cpu / wall if wall else 0.0
            sent = (r["n"] + r["errors"]) * (wall / secs if think is None else 1.0)
            per_msg = 1000 * cpu / max(1, sent) if think is None else 1000 * cpu / max(1, r["sent"])
            r["cpu_share"], r["cpu_ms"] = share, per_msg
            core_note = f"; core system {1000 * core_cpu / max(1, r['sent']):.2f} ms/msg" if core_proc else ""
            label = f"c={c:<4d}" if think is None else f"paced {c} (think {think[0]:g}-{think[1]:g} s)"
            print(f"  {kind:6s} {label} {r['rate']:8.0f} msg/s  p50 {r['p50']:6.1f} ms  "
                  f"p99 {r['p99']:6.1f} ms  (n={r['n']}, errors={r['errors']}; server CPU "
                  f"{share:.0%} of a core, ~{per_msg:.2f} ms/msg"
                  f"{core_note})", flush=True)
        return out
    finally:
        for p in (proc, core_proc):
            if p is not None:
                p.terminate()
                p.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (default 8)")
    ap.add_argument("--concurrency", default="50,200", help="concurrent conversations (default 50,200)")
    ap.add_argument("--db-url", default=None, help="bot store for the full path (default: SQLite in a temp dir)")
    ap.add_argument("--only", default="bare,crypto,full", help="servers to run (default bare,crypto,full)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every server this many times, one after another, and judge the medians (default 1)")
    ap.add_argument("--paced", type=int, default=200, metavar="N",
                    help="paced run of the full path: N conversations with think time (default 200; 0 = none)")
    ap.add_argument("--think", default="1,3", help="paced think time range in seconds (default 1,3)")
    ap.add_argument("--paced-seconds", type=float, default=20.0, help="measured seconds of the paced run (default 20)")
    ap.add_argument("--pg", nargs="?", const=os.environ.get(
        "POWERBOT_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"), default=None,
        help="bot store on a fresh PostgreSQL database created on this server (dropped after)")
    args = ap.parse_args()
    if args.pg:
        with _fresh_pg(args.pg) as url:
            args.db_url = url
            _main(args)
        return
    _main(args)


@contextlib.contextmanager
def _fresh_pg(server_url: str):  # type: ignore[no-untyped-def]
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(server_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"wxbench_{uuid.uuid4().hex[:10]}"

    async def sql(stmt: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(stmt)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _medians(rounds: list[dict[str, dict]], concs: list[int]) -> dict[str, dict]:
    """Per server and concurrency, the median of each figure over the rounds (the paced run is
    only in the first). The box's speed drifts within minutes; rounds that run the servers one
    after another, again and again, see the same drift."""
    out: dict[str, dict] = {}
    for kind in rounds[0]:
        out[kind] = dict(rounds[0][kind])
        for c in concs:
            out[kind][c] = {k: statistics.median(rd[kind][c][k] for rd in rounds) for k in rounds[0][kind][c]}
    return out


def _main(args: argparse.Namespace) -> None:
    concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    lo, hi = (float(x) for x in args.think.split(","))
    paced = (args.paced, lo, hi, args.paced_seconds) if args.paced else None
    os.chdir(ROOT)
    print(f"WeChat safe-mode benchmark: {args.seconds:.0f}s per closed-loop run, concurrency {concs}"
          f"{f', paced run {args.paced} conversations think {lo:g}-{hi:g} s for {args.paced_seconds:.0f}s' if paced else ''}, "
          f"{os.cpu_count()} CPUs, server and load generator in separate processes, full-path store: "
          f"{'PostgreSQL' if args.db_url and args.db_url.startswith('postgresql') else 'SQLite'}", flush=True)
    kinds = [k for k in ("bare", "crypto", "full") if k in args.only.split(",")]
    rounds = []
    for r in range(max(1, args.rounds)):
        if args.rounds > 1:
            print(f"round {r + 1} of {args.rounds}", flush=True)
        rounds.append({kind: _run(kind, concs, args.seconds, args.db_url,
                                  paced if kind == "full" and r == 0 else None) for kind in kinds})
    results = _medians(rounds, concs) if len(rounds) > 1 else rounds[0]
    if "full" in results and paced:
        f = results["full"]["paced"]
        print(f"\npaced (latency target): {args.paced} conversations, think {lo:g}-{hi:g} s, "
              f"{MESSAGES_PER_CUSTOMER} messages per customer: {f['rate']:.0f} msg/s  p50 {f['p50']:.1f} ms  "
              f"p99 {f['p99']:.1f} ms  errors {f['errors']:.0f} -> p99 <= 50 ms: "
              f"{'met' if f['p99'] <= 50 and not f['errors'] else 'NOT met'}")
    if len(kinds) < 3 or not concs:
        return
    print("\nclosed loop (saturation throughput; each conversation sends again as soon as it has the answer):")
    print(f"{'conc':>5} {'bare/s':>9} {'crypto/s':>9} {'full/s':>9} {'full/crypto':>12} {'full/bare':>10} "
          f"{'full p50':>9} {'full p99':>9} {'CPU ms/msg crypto|full':>23} {'CPU-normalised':>15}")
    for c in concs:
        b, cr, f = results["bare"][c], results["crypto"][c], results["full"][c]
        norm = cr["cpu_ms"] / f["cpu_ms"] if f["cpu_ms"] else 0.0
        print(f"{c:>5} {b['rate']:>9.0f} {cr['rate']:>9.0f} {f['rate']:>9.0f} "
              f"{f['rate'] / cr['rate'] if cr['rate'] else 0:>11.0%} {f['rate'] / b['rate'] if b['rate'] else 0:>10.0%} "
              f"{f['p50']:>7.1f}ms {f['p99']:>7.1f}ms {cr['cpu_ms']:>11.2f} | {f['cpu_ms']:<9.2f} {norm:>14.0%}")
    top = max(concs)
    if len(rounds) > 1:
        ratios = sorted(rd["full"][top]["rate"] / rd["crypto"][top]["rate"] for rd in rounds if rd["crypto"][top]["rate"])
        norms = sorted(rd["crypto"][top]["cpu_ms"] / rd["full"][top]["cpu_ms"] for rd in rounds if rd["full"][top]["cpu_ms"])
        print(f"\n(the table: medians of {len(rounds)} rounds) per round at c={top}: full/crypto "
              + ", ".join(f"{x:.0%}" for x in ratios) + "; CPU-normalised " + ", ".join(f"{x:.0%}" for x in norms))
        ratio, norm = statistics.median(ratios), statistics.median(norms)
    else:
        f, cr = results["full"][top], results["crypto"][top]
        ratio = f["rate"] / cr["rate"] if cr["rate"] else 0.0
        norm = cr["cpu_ms"] / f["cpu_ms"] if f["cpu_ms"] else 0.0
    print(f"\ntarget: full >= 30% of crypto-only at c={top}: {'met' if ratio >= 0.30 else 'NOT met'} "
          f"(measured rates{', median of the rounds' if len(rounds) > 1 else ''}: {ratio:.0%}; CPU-normalised {norm:.0%})")
    if paced:
        pf = results["full"]["paced"]
        print(f"target: p99 <= 50 ms at {args.paced} paced conversations: "
              f"{'met' if pf['p99'] <= 50 and not pf['errors'] else 'NOT met'} (p99 {pf['p99']:.1f} ms)")
    print("CPU-normalised = crypto CPU per message / full CPU per message: the rate ratio the two servers "
          "would show with the same CPU (the box is shared, so measured rates also reflect the neighbours). "
          f"A closed loop of {top} conversations answered within 50 ms would need {top / 0.05:.0f} msg/s; "
          "the latency target is judged on the paced run.")


if __name__ == "__main__":
    main()
