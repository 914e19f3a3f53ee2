"""A WeChat passive reply counts as delivered only once it was written: a connection WeChat
dropped (or a reply too late for WeChat's 5 s) leaves the answer to the customer-service API,
sent exactly once, also when WeChat retries the same MsgId."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest_asyncio

from stack import run_core, run_gateway, wait_until
from wechat_platform import APPID, SECRET, TOKEN, WeChatPusher, new_openid, run_wechat_api, text_xml


@pytest_asyncio.fixture
async def stack(tmp_path, interpreter, store_url) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as core, run_wechat_api() as api:
        async with run_gateway(store_url, core.url, interpreter,
                               wechat_appid=APPID, wechat_token=TOKEN, wechat_secret=SECRET,
                               wechat_api_base_url=api.url) as gw:
            yield gw, api


def _post_and_reset(url: str, params: dict[str, str], body: bytes) -> None:
    """Send a whole request, then drop the connection with a reset before any answer is read
    (WeChat's side gone: a network break, its 5 s deadline)."""
    u = urlsplit(url)
    head = (f"POST {u.path}?{urlencode(params)} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(head + body)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_a_dropped_passive_reply_is_sent_once_by_the_customer_service_api(stack) -> None:
    gw, api = stack
    p = WeChatPusher(gw.url)
    oid = new_openid()
    xml = text_xml(oid, "你好")
    params, body = p.build(xml)
    await asyncio.to_thread(_post_and_reset, p.url, params, body)
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http:  # WeChat retries the same MsgId: a duplicate
        again = await p.post(http, xml)
    assert again.body == "success"
    texts = await wait_until(lambda: api.texts_to(oid), timeout=25)
    assert texts and "95598" in "".join(texts)
    await asyncio.sleep(1.5)
    assert api.texts_to(oid) == texts  # once
