"""Helpers shared by the console tests (no tests here): agents, browser-less clients, customers."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from bot.app import SESSIONMAKER
from bot.console.auth import add_agent

PASSWORD = "correct horse battery"


async def make_agent(gw, name: str, role: str = "agent", password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    async with gw.app[SESSIONMAKER]() as s, s.begin():
        await add_agent(s, name, password, role)


class AgentClient:
    """An agent's browser without the browser: its own cookie jar, the CSRF token of its session."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> "AgentClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with self.http.get(self.base + "/console/login") as r:
            page = await r.text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = await self.http.post(self.base + "/console/login", data={"csrf_token": token, "name": name, "password": password},
                                 allow_redirects=False)
        await r.read()
        if r.status == 302:
            async with self.http.get(self.base + "/console/api/me") as me:
                self.csrf = (await me.json())["csrf"]
        return r

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path, allow_redirects=False) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def post(self, path: str, data: dict | None = None, *, csrf: str | None | bool = True) -> tuple[int, Any]:
        headers = {}
        if csrf is True and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        elif isinstance(csrf, str):
            headers["X-CSRF-Token"] = csrf
        async with self.http.post(self.base + path, json=data or {}, headers=headers, allow_redirects=False) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def queue(self) -> list[dict[str, Any]]:
        status, body = await self.get("/console/api/queue")
        assert status == 200, body
        return body["queue"]

    async def handoff_for(self, conversation_id: str) -> dict[str, Any] | None:
        for item in await self.queue():
            if item["conversation_id"] == conversation_id:
                return item
        return None


class Customer:
    """A web-chat customer on the REST channel (Rasa shape), with the poll endpoint for late replies."""

    def __init__(self, http: aiohttp.ClientSession, base: str, sender: str) -> None:
        self.http, self.base, self.sender = http, base, sender
        self.cursor = 0
        self.received: list[str] = []

    @property
    def conversation_id(self) -> str:
        return f"rest:{self.sender}"

    async def say(self, text: str) -> list[str]:
        async with self.http.post(self.base + "/webhooks/rest/webhook", json={"sender": self.sender, "message": text}) as r:
            assert r.status == 200, await r.text()
            texts = [m["text"] for m in await r.json()]
        self.received.extend(texts)
        return texts

    async def poll(self) -> list[str]:
        async with self.http.get(self.base + "/webhooks/rest/messages",
                                 params={"sender": self.sender, "after": str(self.cursor)}) as r:
            body = await r.json()
        self.cursor = body["cursor"]
        texts = [m["text"] for m in body["messages"]]
        self.received.extend(texts)
        return texts
