"""``powerbot core seed`` and ``powerbot core serve`` as an operator runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend_client import CoreClient, CoreUnavailable

POWERBOT = str(Path(sys.executable).with_name("powerbot"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")}
    env.update({"POWERBOT_DATA_DIR": str(tmp_path / "var"), **extra})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_core_seed_then_serve(tmp_path):
    port = _free_port()
    env = _env(tmp_path, POWERBOT_CORE_PORT=str(port))
    seeded = subprocess.run([POWERBOT, "core", "seed", "--accounts", "50"], env=env, capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded 50 accounts" in seeded.stdout and "3100000001" in seeded.stdout
    assert "13800138000" not in seeded.stdout  # phones are masked
    assert (tmp_path / "var" / "core.db").exists()
    proc = subprocess.Popen([POWERBOT, "core", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async with CoreClient(f"http://127.0.0.1:{port}", timeout=2, retries=0, breaker_threshold=1000) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert (await c.health()).status == "ok"
                    break
                except CoreUnavailable:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"core did not start: {proc.stdout.read() if proc.stdout else ''}")
                    await asyncio.sleep(0.2)
            acc = await c.get_account("3100000001")
            assert acc.holder_name == "张伟"
            assert len(await c.list_halls()) >= 3
            doc = await c._request("GET", "/openapi.json")
            assert doc["openapi"].startswith("3.1")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
