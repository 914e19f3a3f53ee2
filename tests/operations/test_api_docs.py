"""The OpenAPI documents of the gateway and the core, checked against the running servers with
Schemathesis (stateless: no 5xx, status codes documented, content types and bodies as the
document says), and the local documentation pages."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import sys
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bot.console.views import COOKIE, CSRF_HEADER
from bot.console.views import routes as console_routes
from core.app import ROUTES
from stack import run_core, run_gateway
from console_support import AgentClient, Customer, make_agent

CORE_TOKEN = "core-secret-token"
OPERATOR_TOKEN = "operator-secret-token"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest_asyncio.fixture
async def stack(tmp_path, interpreter):  # type: ignore[no-untyped-def]
    async with run_core(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}", token=CORE_TOKEN) as core:
        async with run_gateway(
            f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
            core_api_token=CORE_TOKEN, operator_token=OPERATOR_TOKEN,
            rate_limit_per_ip_per_minute=0, rate_limit_per_sender_per_minute=0,
        ) as gw:
            async with aiohttp.ClientSession() as http:
                yield core, gw, http


async def schemathesis(schema_url: str, token: str | None, *args: str, max_examples: int = 6,
                       stateful: bool = False) -> tuple[int, str]:
    """Run the Schemathesis CLI against a server of this event loop; (exit code, output).
    ``token``: sent as a bearer token (None: no Authorization header; ``args`` may carry other
    headers). POWERBOT_SCHEMATHESIS_EXAMPLES=N raises the examples per operation for a deeper run."""
    max_examples = int(os.environ.get("POWERBOT_SCHEMATHESIS_EXAMPLES", max_examples))
    auth = ("-H", f"Authorization: Bearer {token}") if token else ()
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", schema_url, "--checks", CHECKS, "--max-examples", str(max_examples),
        "--seed", "22", "--generation-database", "none", "--workers", "1", "--no-color",
        "--phases", "examples,coverage,fuzzing" + (",stateful" if stateful else ""), "--request-timeout", "20",
        *auth, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"},
        cwd=tempfile.gettempdir(),  # it may leave a .schemathesis directory behind
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def test_gateway_document_holds_against_the_server(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, _ = stack
    code, out = await schemathesis(
        gw.url + "/openapi.json", OPERATOR_TOKEN,
        "--include-path-regex", r"^/(webhooks/rest|api/v1/notify|healthz|metrics)",
    )
    assert code == 0, out[-6000:]
    assert re.search(r"Tested: 10\b", out), out[-3000:]  # REST (4), notify (4), /healthz, /metrics; none skipped


async def test_core_document_holds_against_the_server(stack) -> None:  # type: ignore[no-untyped-def]
    core, _, _ = stack
    code, out = await schemathesis(core.url + "/api/v1/openapi.json", CORE_TOKEN, max_examples=3)
    assert code == 0, out[-6000:]
    tested = re.search(r"Tested: (\d+)", out)
    # every operation (ROUTES and /metrics) but the document itself (Schemathesis leaves its own
    # schema URL alone), none skipped
    assert tested and int(tested.group(1)) == len(ROUTES), out[-3000:]


# GET+POST /console/login, 7 reads under /console/api, 8 handoff actions, 3 canned writes, websocket
CONSOLE_OPERATIONS = 21
OTHER_CONSOLE_PATHS = ("/console/login", "/console/logout", "/console/ws")


async def _console_session(gw, name: str) -> tuple[AgentClient, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """Log ``name`` in through the real login form; the client and the headers that carry its
    session (cookie) and CSRF token to Schemathesis."""
    agent = AgentClient(gw.url)
    r = await agent.login(name)
    assert r.status == 302 and agent.csrf, r.status
    cookie = next(c.value for c in agent.http.cookie_jar if c.key == COOKIE)
    return agent, ("-H", f"Cookie: {COOKIE}={cookie}", "-H", f"{CSRF_HEADER}: {agent.csrf}")


async def test_console_document_holds_against_the_server(stack) -> None:  # type: ignore[no-untyped-def]
    """The console API as a logged-in agent and as a supervisor: handoffs 1 (alice's), 2
    (waiting) and 3 (bob's) exist, so the documented 200s, 403s and 409s all come up."""
    _, gw, http = stack
    for name, role in (("alice", "agent"), ("bob", "agent"), ("sue", "supervisor")):
        await make_agent(gw, name, role=role)
    for i in range(3):
        texts = await Customer(http, gw.url, f"docs-{i}").say("转人工")
        assert any("人工" in t for t in texts), texts
    alice, alice_headers = await _console_session(gw, "alice")
    bob, _ = await _console_session(gw, "bob")
    sue, sue_headers = await _console_session(gw, "sue")
    try:
        assert (await alice.post("/console/api/handoffs/1/take"))[0] == 200
        assert (await bob.post("/console/api/handoffs/3/take"))[0] == 200
        code, out = await schemathesis(gw.url + "/openapi.json", None, "--include-path-regex",
                                       r"^/console/(api/|login|ws)", *alice_headers, stateful=True)
        assert code == 0, out[-6000:]
        assert re.search(rf"Tested: {CONSOLE_OPERATIONS}\b", out), out[-3000:]
        # the supervisor's figures and another agent's conversation, read by a supervisor
        code, out = await schemathesis(gw.url + "/openapi.json", None, "--include-operation-id", "console_stats",
                                       "--include-operation-id", "console_handoff", *sue_headers, max_examples=3)
        assert code == 0, out[-6000:]
        assert re.search(r"Tested: 2\b", out), out[-3000:]
        # last: logging out ends the session the runs above used
        code, out = await schemathesis(gw.url + "/openapi.json", None, "--include-operation-id", "console_logout",
                                       *alice_headers, max_examples=2)
        assert code == 0, out[-6000:]
        assert re.search(r"Tested: 1\b", out), out[-3000:]
        assert (await alice.get("/console/api/me"))[0] == 401
    finally:
        for client in (alice, bob, sue):
            await client.close()


async def test_documents_declare_auth_and_problem_errors(stack) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    async with http.get(gw.url + "/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path in ("/webhooks/rest/webhook", "/webhooks/rest/messages", "/api/v1/notify/subscriptions",
                 "/api/v1/notify/stats", "/console/api/me", "/console/api/handoffs/{hid}/reply", "/healthz", "/readyz"):
        assert path in paths, path
    assert doc["components"]["securitySchemes"]["operatorToken"] == {
        "type": "http", "scheme": "bearer", "description": "POWERBOT_OPERATOR_TOKEN"}
    assert paths["/api/v1/notify/stats"]["get"]["security"] == [{"operatorToken": []}]
    assert {"consoleSession": [], "csrfHeader": []} in paths["/console/api/handoffs/{hid}/take"]["post"]["security"]
    # every route of the console's JSON API and its login form is documented, with its method
    console = [r for r in console_routes() if r.path.startswith("/console/api/") or r.path in OTHER_CONSOLE_PATHS]
    assert len(console) == CONSOLE_OPERATIONS + 1  # and the logout
    for route in console:
        assert route.method.lower() in paths.get(route.path, {}), (route.method, route.path)
    assert {"consoleSession": [], "csrfHeader": []} in paths["/console/api/handoffs/{hid}/close"]["post"]["security"]
    assert paths["/console/api/queue"]["get"]["security"] == [{"consoleSession": []}]
    assert doc["components"]["securitySchemes"]["consoleSession"]["in"] == "cookie"
    # every documented error response is a problem document, but the login form's: a browser
    # form, answered with the login page again (HTML) saying what went wrong
    responses = doc["components"]["responses"]
    for item in paths.values():
        for op in item.values():
            for code, resp in op["responses"].items():
                if op["operationId"] == "console_login" and code in ("401", "403", "429"):
                    assert list(resp["content"]) == ["text/html"]
                    continue
                if int(code) >= 400 and code != "503":
                    resp = responses[resp["$ref"].rsplit("/", 1)[1]] if "$ref" in resp else resp
                    assert list(resp["content"]) == ["application/problem+json"], (op["operationId"], code)

    async with http.get(core.url + "/api/v1/openapi.json") as r:  # open without the token
        assert r.status == 200
        core_doc = await r.json()
    assert core_doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert core_doc["security"] == [{"bearerAuth": []}]
    assert core_doc["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in core_doc["paths"]["/api/v1/accounts/{account_number}"]["get"]["responses"]
    async with http.get(core.url + "/api/v1/accounts/3100000001") as r:
        assert r.status == 401 and r.content_type == "application/problem+json"


@pytest.mark.parametrize("which", ["gateway", "core"])
async def test_docs_page_is_local(stack, which: str) -> None:  # type: ignore[no-untyped-def]
    core, gw, http = stack
    base = gw.url if which == "gateway" else core.url
    async with http.get(base + "/docs") as r:
        page = await r.text()
    assert r.status == 200 and r.content_type == "text/html"
    assert "http://" not in page and "https://" not in page and "//cdn" not in page  # nothing from elsewhere
    spec = "openapi.json" if which == "gateway" else "api/v1/openapi.json"
    assert f'const SPEC_URL = "{spec}"' in page
    async with http.get(f"{base}/{spec}") as r:  # what the page fetches, relative to /docs
        assert r.status == 200


async def test_gateway_errors_are_problem_documents(stack) -> None:  # type: ignore[no-untyped-def]
    _, gw, http = stack
    async with http.get(gw.url + "/api/v1/notify/stats") as r:
        assert r.status == 401 and r.content_type == "application/problem+json"
    async with http.get(gw.url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"}) as r:  # not for the public
        assert r.status == 403 and r.content_type == "application/problem+json"
    async with http.post(gw.url + "/webhooks/rest/webhook", data=b"x" * (gw.settings.max_body_bytes + 10),
                         headers={"Content-Type": "application/json"}) as r:
        body = await r.json(content_type=None)
        assert r.status == 413 and r.content_type == "application/problem+json"
        assert body["status"] == 413 and body["title"]


@pytest.mark.browser
async def test_docs_pages_render_in_a_browser_from_their_own_server(stack) -> None:  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    core, gw, _ = stack
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                           args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for base, op, secured_op in ((gw.url, "rest_webhook", "notify_stats"), (core.url, "get_account", "get_account")):
                page = await browser.new_page()
                requested: list[str] = []
                errors: list[str] = []
                page.on("request", lambda r, seen=requested: seen.append(r.url))
                page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
                await page.goto(base + "/docs")
                await page.wait_for_selector(f"details#{op}", timeout=10_000)
                await page.click(f"details#{op} > summary")
                assert await page.locator(f"details#{op} h4", has_text="Responses").count() == 1
                assert "🔒" in await page.locator(f"details#{secured_op} > summary").inner_text()
                assert await page.locator("h2", has_text="Authentication").count() == 1
                assert not errors, errors
                assert requested and all(u.startswith(base + "/") for u in requested), requested  # nothing from elsewhere
                await page.close()
        finally:
            await browser.close()
