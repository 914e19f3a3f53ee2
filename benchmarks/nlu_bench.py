"""NLU benchmark: training time, model size, parse latency p50/p99, batch throughput, RSS.

Run: ``.venv/bin/python benchmarks/nlu_bench.py`` (prints figures; not a timed test).
RSS is measured in a fresh child process that only loads the model and parses, so it shows
what a gateway process holding the model costs, not what training cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from intents.model import Interpreter, load
it = Interpreter(load(sys.argv[1]))
for t in ["停电了", "明天停电吗", "how much is my bill"] * 50:
    it.parse(t)
def rss_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
print(json.dumps({"rss_mb": rss_mb("VmRSS:"), "peak_rss_mb": rss_mb("VmHWM:")}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "training_data"))
    ap.add_argument("--test", default=str(ROOT / "tests" / "data" / "nlu_test.yml"))
    ap.add_argument("--rounds", type=int, default=5, help="passes over the test messages")
    args = ap.parse_args()

    from intents.loader import load_nlu_file
    from intents.model import Interpreter, load, train_if_needed

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        train_if_needed(args.data, tmp, force=True)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        size = (Path(tmp) / "nlu.pkl").stat().st_size
        t0 = time.perf_counter()
        interp = Interpreter(load(tmp))
        load_s = time.perf_counter() - t0

        texts = [e.text for e in load_nlu_file(args.test).examples]
        for t in texts:  # warm-up
            interp.parse(t)
        lat, cpu = [], []
        for _ in range(args.rounds):
            for t in texts:
                s, c = time.perf_counter(), time.thread_time()
                interp.parse(t)
                lat.append((time.perf_counter() - s) * 1000)
                cpu.append((time.thread_time() - c) * 1000)
        lat.sort()
        cpu.sort()
        batch = texts * args.rounds
        s = time.perf_counter()
        for t in batch:
            interp.parse(t)
        thr = len(batch) / (time.perf_counter() - s)

        child = subprocess.run([sys.executable, "-c", CHILD, tmp, str(ROOT)],
                               capture_output=True, text=True, check=True)
        mem = json.loads(child.stdout.strip().splitlines()[-1])

    q = statistics.quantiles(lat, n=100)
    qc = statistics.quantiles(cpu, n=100)
    print(f"load average         {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs; wall-clock figures include contention)")
    print(f"training time        {train_s:8.2f} s  (CPU {train_cpu:.2f} s)")
    print(f"model size           {size / 1e6:8.2f} MB")
    print(f"model load time      {load_s * 1000:8.1f} ms")
    print(f"parse latency p50    {q[49]:8.3f} ms   (n={len(lat)} single messages)")
    print(f"parse latency p99    {q[98]:8.3f} ms")
    print(f"parse latency max    {lat[-1]:8.3f} ms")
    print(f"parse CPU p50 / p99  {qc[49]:8.3f} / {qc[98]:.3f} ms")
    print(f"batch throughput     {thr:8.0f} msg/s (one thread)")
    print(f"RSS holding model    {mem['rss_mb']:8.1f} MB (peak {mem['peak_rss_mb']:.1f} MB)")


if __name__ == "__main__":
    main()
