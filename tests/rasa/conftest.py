"""The action server as Rasa meets it: ``powerbot rasa actions`` as a subprocess, pointed at the
module's reference core (``core``), on a free port."""

from __future__ import annotations

import os
import subprocess

import aiohttp
import pytest_asyncio

from processes import free_port, powerbot_exe
from rasa_calls import ActionServer
from stack import wait_until


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def action_server(core, tmp_path_factory):  # type: ignore[no-untyped-def]
    """``powerbot rasa actions`` on a free port, pointed at the module's core."""
    tmp = tmp_path_factory.mktemp("rasa_actions")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")} | {
        "POWERBOT_CORE_URL": core.url, "POWERBOT_DATA_DIR": str(tmp)}
    log = tmp / "actions.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([powerbot_exe(), "rasa", "actions", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = ActionServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)

    async def up() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            async with aiohttp.ClientSession() as s, s.get(server.url + "/health", timeout=aiohttp.ClientTimeout(total=1)) as r:
                return r.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    try:
        await wait_until(up, timeout=60, interval=0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


