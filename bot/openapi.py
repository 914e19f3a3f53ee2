"""OpenAPI 3.1 document of the gateway's own HTTP APIs, served at ``/openapi.json`` with a
local documentation page at ``/docs`` (a gateway feature: ``setup(app)``).

Documented: the Rasa-shaped REST channel, the operator notify API (bearer token), the agent
console's JSON API (session cookie + CSRF header) and the health endpoints. Every error is an
RFC 9457 problem document (``application/problem+json``). The platform webhooks (WeChat,
Alipay, SMS) follow their platforms' own contracts and are not part of this document.
``tests/test_api_docs.py`` checks the document against the running gateway with Schemathesis.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiohttp import web

PROBLEM_CT = "application/problem+json"
SENDER_MAX = 128
# channels.base.is_clean: no C0/C1 control characters but tab and newlines, no lone surrogates;
# and not blank
CLEAN_TEXT = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f]" \
             r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resp(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_CT: {"schema": _ref("Problem")}}}


def _schemas() -> dict[str, Any]:
    from bot.notify.texts import CHANNELS, TOPIC_ALIASES

    button = {"type": "object", "required": ["title", "payload"],
              "properties": {"title": {"type": "string"}, "payload": {"type": "string"}}}
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; extension members (error, reason, message, code, …) may follow.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "description": "a URI reference naming the problem type"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
            },
            "additionalProperties": True,
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {
            "type": "object",
            "required": ["ready"],
            "description": "Everyone sees `ready`; an operator (loopback caller, operator token or a console "
                           "supervisor) also sees each check, each channel and the outbox backlog.",
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                "channels": {"type": "object", "additionalProperties": {"type": "object"}},
                "outbox": {"type": "object"},
            },
        },
        "RestMessage": {
            "type": "object",
            "required": ["sender", "message"],
            "properties": {
                "sender": {"type": "string", "minLength": 1, "maxLength": SENDER_MAX, "pattern": CLEAN_TEXT,
                           "description": "the customer's id on this channel (not blank, no control characters)"},
                "message": {"type": "string", "description": "the customer's text (cut at 4000 characters)"},
                "message_id": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 200, "pattern": CLEAN_TEXT},
                                         {"type": "integer"}, {"type": "null"}],
                               "description": "1–200 characters; a repeated id is answered once (idempotency); "
                                              "absent or null: a fresh one"},
                "metadata": {"type": "object", "description": "kept with the message"},
            },
        },
        "Button": button,
        "BotReply": {
            "type": "object",
            "required": ["recipient_id", "text"],
            "properties": {
                "recipient_id": {"type": "string"},
                "text": {"type": "string"},
                "buttons": {"type": "array", "items": _ref("Button")},
                "custom": {"type": "object", "description": "kind of reply (e.g. pay_link) and its data (e.g. pay_url)"},
            },
        },
        "BotReplies": {"type": "array", "items": _ref("BotReply"),
                       "description": "the bot's answers in order; [] for a repeated message_id or an answer still on its way"},
        "PolledMessages": {
            "type": "object",
            "required": ["messages", "cursor"],
            "properties": {
                "messages": {"type": "array", "items": _ref("BotReply")},
                "cursor": {"type": "integer", "description": "pass as `after` on the next poll"},
            },
        },
        "Topic": {"type": "string", "enum": sorted(TOPIC_ALIASES)},
        "NotifyChannel": {"type": "string", "enum": list(CHANNELS)},
        "SubscriptionIn": {
            "type": "object",
            "required": ["account_number", "topic", "channel", "identity"],
            "properties": {
                "account_number": {"type": "string", "pattern": r"^\d{10,13}$", "description": "account number, 10–13 digits"},
                "topic": _ref("Topic"),
                "channel": _ref("NotifyChannel"),
                "identity": {"type": "string", "minLength": 1, "maxLength": 200,
                             "description": "a mobile number for sms (normalised to E.164), an e-mail address for "
                                            "email, the user id on wechat/alipay"},
            },
        },
        "Subscription": {
            "type": "object",
            "required": ["id", "account_number", "topic", "channel", "identity"],
            "properties": {
                "id": {"type": "integer"},
                "account_number": {"type": "string"},
                "topic": {"type": "string", "description": "the core's topic (outage, bill, work_order, payment)"},
                "channel": {"type": "string"},
                "identity": {"type": "string"},
                "created_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "SubscriptionList": {"type": "object", "required": ["subscriptions"],
                             "properties": {"subscriptions": {"type": "array", "items": _ref("Subscription")}}},
        "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer", "minimum": 0}}},
        "NoticeStats": {
            "type": "object",
            "required": ["notices"],
            "properties": {"notices": {
                "type": "object", "description": "channel → status (pending, sent, dead, …) → count",
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}},
        },
        "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}, "additionalProperties": True},
        "TextIn": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}},
        "ConsoleMe": {"type": "object", "required": ["name", "role", "csrf"],
                      "properties": {"name": {"type": "string"}, "role": {"enum": ["agent", "supervisor"]},
                                     "csrf": {"type": "string", "description": "send it back as X-CSRF-Token"}}},
    }


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _problem_response("Malformed request"),
        "Unauthorized": _problem_response("Missing or wrong credentials"),
        "Forbidden": _problem_response("Not allowed (operator API disabled, CSRF token wrong, role too low)"),
        "NotFound": _problem_response("No such resource"),
        "Conflict": _problem_response("State changed"),
        "PayloadTooLarge": _problem_response("Body over POWERBOT_MAX_BODY_BYTES"),
        "Unprocessable": _problem_response("Well-formed but invalid values"),
        "TooManyRequests": {
            "description": "Rate limited (per client IP); retry after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {PROBLEM_CT: {"schema": _ref("Problem")}},
        },
        "CoreUnavailable": _problem_response("The core service is unavailable; retry later"),
    }


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _paths() -> dict[str, Any]:
    operator = [{"operatorToken": []}]
    notify_errors = {"401": _resp("Unauthorized"), "403": _resp("Forbidden"),
                     "422": _resp("Unprocessable"), "503": _resp("CoreUnavailable")}
    sub_filters = [
        _q("account_number", {"type": "string", "pattern": r"^\d{10,13}$"}, "account number, 10–13 digits (required)", required=True),
        _q("topic", _ref("Topic"), "only this topic"),
        _q("channel", _ref("NotifyChannel"), "only this channel"),
        _q("identity", {"type": "string", "maxLength": 200}, "only this channel identity"),
    ]
    session = [{"consoleSession": []}]
    write = [{"consoleSession": [], "csrfHeader": []}]
    hid = {"name": "hid", "in": "path", "required": True, "description": "handoff id",
           "schema": {"type": "integer", "minimum": 1}}
    console_errors = {"401": _resp("Unauthorized"), "403": _resp("Forbidden")}
    handoff_errors = {**console_errors, "400": _resp("BadRequest"), "404": _resp("NotFound"), "409": _resp("Conflict"),
                      "413": _resp("PayloadTooLarge")}

    def console_get(op_id: str, summary: str, schema: dict[str, Any], supervisor: bool = False) -> dict[str, Any]:
        return {"get": {"operationId": op_id, "summary": summary + (" (supervisors)" if supervisor else ""),
                        "tags": ["console"], "security": session,
                        "responses": {"200": _ok(schema), **console_errors}}}

    def console_post(op_id: str, summary: str, body: dict[str, Any] | None, schema: dict[str, Any],
                     body_required: bool = True) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["console"], "security": write,
                              "parameters": [hid], "responses": {"200": _ok(schema), **handoff_errors}}
        if body is not None:
            op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
        return {"post": op}

    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "tags": ["health"], "security": [],
                             "responses": {"200": _ok(_ref("Health"))}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: database and core reachable", "tags": ["health"],
                            "security": [],
                            "responses": {"200": _ok(_ref("Readiness"), "Ready"),
                                          "503": _ok(_ref("Readiness"), "Not ready")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics (operators: this host, "
                             "the operator token or a supervisor's session)", "tags": ["health"],
                             "security": [{}, {"operatorToken": []}, {"consoleSession": []}],
                             "responses": {"200": {"description": "Prometheus text exposition",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           "403": _resp("Forbidden")}}},
        "/webhooks/rest": {"get": {"operationId": "rest_health", "summary": "REST channel health", "tags": ["rest channel"],
                                   "security": [], "responses": {"200": _ok(_ref("Health"))}}},
        "/webhooks/rest/webhook": {"post": {
            "operationId": "rest_webhook",
            "summary": "Send a customer message; answers with the bot's replies (Rasa REST channel)",
            "tags": ["rest channel"], "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RestMessage")}}},
            "responses": {"200": _ok(_ref("BotReplies")), "400": _resp("BadRequest"),
                          "413": _resp("PayloadTooLarge"), "429": _resp("TooManyRequests")},
        }},
        "/webhooks/rest/messages": {"get": {
            "operationId": "rest_poll",
            "summary": "Replies that arrived later (an agent's answer, a delayed answer), after a cursor",
            "tags": ["rest channel"], "security": [],
            "parameters": [
                _q("sender", {"type": "string", "minLength": 1, "maxLength": SENDER_MAX, "pattern": CLEAN_TEXT},
                   "sender id", required=True),
                _q("after", {"type": "integer", "minimum": -1, "maximum": 2**63 - 1},
                   "cursor of the previous poll; 0 on a fresh page"),
            ],
            "responses": {"200": _ok(_ref("PolledMessages")), "400": _resp("BadRequest")},
        }},
        "/api/v1/notify/subscriptions": {
            "get": {"operationId": "notify_list", "summary": "Subscriptions of an account", "tags": ["notify"],
                    "security": operator, "parameters": sub_filters,
                    "responses": {"200": _ok(_ref("SubscriptionList")), **notify_errors}},
            "post": {"operationId": "notify_subscribe", "summary": "Subscribe an account to a topic on a channel (idempotent)",
                     "tags": ["notify"], "security": operator,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SubscriptionIn")}}},
                     "responses": {"201": _ok(_ref("Subscription"), "Subscribed"), "400": _resp("BadRequest"),
                                   "413": _resp("PayloadTooLarge"), **notify_errors}},
            "delete": {"operationId": "notify_unsubscribe", "summary": "Remove an account's matching subscriptions",
                       "tags": ["notify"], "security": operator, "parameters": sub_filters,
                       "responses": {"200": _ok(_ref("Deleted")), **notify_errors}},
        },
        "/api/v1/notify/stats": {"get": {
            "operationId": "notify_stats", "summary": "Notices per channel and status (dead letters included)",
            "tags": ["notify"], "security": operator,
            "responses": {"200": _ok(_ref("NoticeStats")), "401": _resp("Unauthorized"), "403": _resp("Forbidden")},
        }},
        "/console/api/me": console_get("console_me", "The logged-in agent and the CSRF token", _ref("ConsoleMe")),
        "/console/api/queue": console_get("console_queue", "Waiting and taken handoffs, agents online",
                                          {"type": "object", "required": ["queue", "agents_online"],
                                           "properties": {"queue": {"type": "array", "items": {"type": "object"}},
                                                          "agents_online": {"type": "array", "items": {"type": "string"}}}}),
        "/console/api/canned": console_get("console_canned", "Canned answers",
                                           {"type": "object", "required": ["canned"], "properties": {"canned": {}}}),
        "/console/api/agents": console_get("console_agents", "Agents and who is online",
                                           {"type": "object", "required": ["agents"],
                                            "properties": {"agents": {"type": "array", "items": {"type": "object"}}}},
                                           supervisor=True),
        "/console/api/stats": console_get("console_stats", "Queue and handling figures", {"type": "object"}, supervisor=True),
        "/console/api/handoffs/{hid}": {"get": {
            "operationId": "console_handoff", "summary": "A handoff: conversation events, masked slots, account",
            "tags": ["console"], "security": session, "parameters": [hid],
            "responses": {"200": _ok({"type": "object", "required": ["handoff", "events"]}),
                          **console_errors, "404": _resp("NotFound"), "503": _resp("CoreUnavailable")},
        }},
        "/console/api/handoffs/{hid}/take": console_post("console_take", "Take a waiting handoff", None, _ref("Ok")),
        "/console/api/handoffs/{hid}/reply": console_post("console_reply", "Answer the customer", _ref("TextIn"), _ref("Ok")),
        "/console/api/handoffs/{hid}/note": console_post("console_note", "Add an internal note", _ref("TextIn"), _ref("Ok")),
        "/console/api/handoffs/{hid}/transfer": console_post(
            "console_transfer", "Hand over to another agent",
            {"type": "object", "required": ["agent"], "properties": {"agent": {"type": "string", "minLength": 1}}}, _ref("Ok")),
        "/console/api/handoffs/{hid}/close": console_post(
            "console_close", "Close the handoff (the bot takes the conversation back)",
            {"type": "object", "properties": {"note": {"type": "string"}}}, _ref("Ok"), body_required=False),
        "/console/api/handoffs/{hid}/reveal": console_post(
            "console_reveal", "Reveal one masked value (audited)",
            {"type": "object", "properties": {"field": {"type": "string"}, "index": {"type": "integer"},
                                              "slot": {"type": "string"}, "message": {"type": "string"}}},
            {"type": "object", "required": ["field", "value"]}),
    }


@lru_cache(maxsize=1)
def build_gateway_openapi() -> dict[str, Any]:
    """The gateway's OpenAPI 3.1 document (a new dict per process; do not mutate it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        app_version = version("powerbot")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        app_version = "0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "powerbot gateway",
            "version": app_version,
            "description": "The gateway's own HTTP APIs: the Rasa-shaped REST channel, the operator notify API, "
                           "the agent console's JSON API and health checks. Errors are RFC 9457 problem details "
                           "(application/problem+json).",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "rest channel", "description": "Rasa-compatible REST channel (web chat, tests, `powerbot shell`)"},
            {"name": "notify", "description": "Operator API for notification subscriptions: "
                                              "Authorization: Bearer $POWERBOT_OPERATOR_TOKEN (403 when unset)"},
            {"name": "console", "description": "The agent console's JSON API: log in at /console/login; "
                                               "writes need the X-CSRF-Token header (from /console/api/me)"},
            {"name": "health"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer",
                                  "description": "POWERBOT_OPERATOR_TOKEN"},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "pb_console",
                                   "description": "session cookie set by POST /console/login"},
                "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                               "description": "the session's CSRF token (GET /console/api/me → csrf)"},
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_gateway_openapi())


async def docs(request: web.Request) -> web.Response:
    from common.apidocs import docs_page

    return web.Response(text=docs_page("powerbot gateway API", "openapi.json"), content_type="text/html",
                        headers={"Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
