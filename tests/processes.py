"""The gateway as a real ``powerbot serve`` subprocess, configured through POWERBOT_* only."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from stack import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def powerbot_exe() -> str:
    exe = Path(sys.executable).with_name("powerbot")
    return str(exe) if exe.exists() else "powerbot"


class GatewayProcess:
    """``powerbot serve`` as a subprocess, configured through POWERBOT_* variables only."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 1) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")} | env
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{env['POWERBOT_PORT']}"

    def start(self) -> None:
        args = [powerbot_exe(), "serve"] + (["--workers", str(self.workers)] if self.workers > 1 else [])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )

    async def ready(self, timeout: float = 60) -> None:
        async def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                async with aiohttp.ClientSession() as s, s.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    return r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return False

        await wait_until(up, timeout=timeout, interval=0.2)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
