"""OpenAPI 3.1 document of the gateway's own HTTP APIs, served at ``/openapi.json`` with a
local documentation page at ``/docs`` (a gateway feature: ``setup(app)``).

Documented: the Rasa-shaped REST channel, the operator notify API (bearer token), the agent
console's JSON API (session cookie + CSRF header) and the health endpoints. Every error is an
RFC 9457 problem document (``application/problem+json``). The platform webhooks (WeChat,
Alipay, SMS) follow their platforms' own contracts and are not part of this document.
``tests/operations/test_api_docs.py`` checks the document against the running gateway with Schemathesis.
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
                "custom": {"type": "object", "description": "kind of reply (e.g. pay_link) and its data (e.g. pay_url; "
                                                            "a bill's figures in bill)"},
                "sender": {"type": "object", "description": "who is talking: the bot, an agent (by name) or the system",
                           "properties": {"role": {"type": "string", "enum": ["bot", "agent", "system", "customer"]},
                                          "name": {"type": "string"}}},
            },
        },
        "Transcript": {
            "type": "object",
            "required": ["messages", "cursor"],
            "properties": {
                "messages": {"type": "array", "items": {"type": "object"},
                             "description": "what the sender wrote and was answered, oldest first (at most 200)"},
                "cursor": {"type": "integer", "description": "poll cursor after everything delivered so far"},
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
        **_console_schemas(),
        **_nlu_schemas(),
    }


def _nlu_schemas() -> dict[str, Any]:
    """POST /model/parse (bot/rasa/parse.py): Rasa's NLU HTTP shape."""
    ranked = {"type": "object", "required": ["name", "confidence"],
              "properties": {"name": {"type": ["string", "null"]}, "confidence": {"type": "number"}}}
    return {
        "ParseRequest": {"type": "object", "required": ["text"],
                         "properties": {"text": {"type": "string", "maxLength": 4000},
                                        "message_id": {"type": ["string", "integer"],
                                                       "description": "accepted, as Rasa does, and not used"}},
                         "examples": [{"text": "查一下户号3100000001上个月的电费"}]},
        "ParseResult": {
            "type": "object", "required": ["text", "intent", "entities", "intent_ranking"],
            "description": "Rasa's /model/parse answer; below the fallback threshold the intent is nlu_fallback "
                           "with the threshold as its confidence",
            "properties": {
                "text": {"type": "string"},
                "intent": ranked,
                "entities": {"type": "array", "items": {
                    "type": "object", "required": ["entity", "value"],
                    "properties": {"entity": {"type": "string"}, "value": {},
                                   "start": {"type": "integer"}, "end": {"type": "integer"},
                                   "confidence_entity": {"type": "number"}, "extractor": {"type": "string"}}}},
                "intent_ranking": {"type": "array", "items": ranked},
            },
        },
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


_SENDER_Q = _q("sender", {"type": "string", "minLength": 1, "maxLength": SENDER_MAX, "pattern": CLEAN_TEXT},
               "sender id", required=True)


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
            "responses": {"200": {**_ok(_ref("BotReplies")), "headers": {"X-Reply-Pending": {
                              "description": "1: the answer was not ready within POWERBOT_REST_REPLY_WAIT_SECONDS; "
                                             "it follows through GET /webhooks/rest/messages",
                              "schema": {"type": "string", "enum": ["1"]}}}},
                          "400": _resp("BadRequest"), "413": _resp("PayloadTooLarge"), "429": _resp("TooManyRequests")},
        }},
        "/webhooks/rest/transcript": {"get": {
            "operationId": "rest_transcript",
            "summary": "What a web chat sender wrote and was answered (a reloaded page restores it), and the poll cursor",
            "tags": ["rest channel"], "security": [],
            "parameters": [
                _SENDER_Q,
            ],
            "responses": {"200": _ok(_ref("Transcript")), "400": _resp("BadRequest")},
        }},
        "/webhooks/rest/messages": {"get": {
            "operationId": "rest_poll",
            "summary": "Replies that arrived later (an agent's answer, a delayed answer), after a cursor",
            "tags": ["rest channel"], "security": [],
            "parameters": [
                _SENDER_Q,
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
        "/model/parse": {"post": {
            "operationId": "nlu_parse",
            "summary": "Parse a message with powerbot's NLU, answered in the shape of Rasa's NLU HTTP API",
            "description": "For Rasa tooling. Callers on this host, or with the operator token (the `token` query "
                           "parameter, as Rasa's --auth-token, or a bearer token).",
            "tags": ["nlu"], "security": [{}, {"operatorToken": []}, {"operatorTokenQuery": []}],
            "parameters": [_q("token", {"type": "string"}, "POWERBOT_OPERATOR_TOKEN (Rasa's convention)")],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ParseRequest")}}},
            "responses": {"200": _ok(_ref("ParseResult")), "400": _resp("BadRequest"),
                          "401": _resp("Unauthorized"), "403": _resp("Forbidden"), "413": _resp("PayloadTooLarge")},
        }},
        **_console_paths(),
    }



# ------------------------------------------------------------------ the agent console
# bot/console/views.py: the JSON API the console's pages use, and the login form that opens a
# session. Reads need the session cookie; writes also the session's CSRF token in a header.
HTML = {"text/html": {"schema": {"type": "string"}}}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
COUNT = {"type": "integer", "minimum": 0}
# bot.console.views._text: a string with something besides white space, no NUL (cut at 2000)
NOT_BLANK = {"type": "string", "pattern": r"^[^\u0000]*[^\s\u0000][^\u0000]*$"}


def _console_schemas() -> dict[str, Any]:
    from bot.console.summary import REVEALABLE
    from bot.dialogue.handoff import PRIORITIES

    status = {"type": "string", "enum": ["waiting", "assigned", "released"]}
    return {
        "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
        "ConsoleMe": {"type": "object", "required": ["name", "role", "csrf"],
                      "properties": {"name": {"type": "string"}, "role": {"enum": ["agent", "supervisor"]},
                                     "csrf": {"type": "string", "description": "send it back as X-CSRF-Token"}}},
        "QueueItem": {
            "type": "object",
            "description": "An active handoff. Everyone sees that it is queued or held and by whom; "
                           "`last_message` (masked) only those who may see the conversation (`visible`).",
            "required": ["handoff_id", "conversation_id", "display", "visible", "channel", "channel_label", "reason",
                         "reason_label", "priority", "priority_label", "status", "agent", "created_at",
                         "waiting_seconds", "sla_breached", "customer_messages", "reopenable", "customer_label",
                         "last_message"],
            "properties": {
                "handoff_id": {"type": "integer"},
                "conversation_id": {"type": "string", "description": "channel:sender, phone and e-mail masked"},
                "display": {"type": "string"},
                "visible": {"type": "boolean"},
                "channel": {"type": "string"},
                "channel_label": {"type": "string"},
                "reason": {"type": "string"},
                "reason_label": {"type": "string"},
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "priority_label": {"type": "string"},
                "status": {"type": "string", "enum": ["waiting", "assigned", "released"]},
                "sla_breached": {"type": "boolean", "description": "waiting longer than its priority allows"},
                "customer_messages": {**COUNT, "description": "customer messages since the handoff (the "
                                                              "console counts unread ones from it)"},
                "reopenable": {"type": "boolean", "description": "released and not queued or held again"},
                "customer_label": {**NULLABLE_STR, "description": "the customer's linked account, masked, with the "
                                                                  "masked holder name once the core has given it; null "
                                                                  "when no account is linked or the caller may not see it"},
                "agent": NULLABLE_STR,
                "created_at": {"type": "string", "format": "date-time"},
                "waiting_seconds": {"type": "integer"},
                "last_message": {"type": "string", "maxLength": 120},
            },
        },
        "Queue": {"type": "object", "required": ["queue", "agents_online"],
                  "properties": {"queue": {"type": "array", "items": _ref("QueueItem")},
                                 "agents_online": {"type": "array", "items": {"type": "string"}},
                                 "name_search": {"type": "string", "enum": ["ok", "unavailable", "skipped"],
                                                 "description": "with `q`: whether customers were also searched by "
                                                                "name in the core (skipped: `q` cannot be a name; "
                                                                "unavailable: the core did not answer in time)"}}},
        "CannedItem": {"type": "object", "required": ["id", "shortcut", "text", "updated_by", "updated_at"],
                       "properties": {"id": {"type": "integer"}, "shortcut": {"type": "string"},
                                      "text": {"type": "string"}, "updated_by": NULLABLE_STR,
                                      "updated_at": {"type": "string", "format": "date-time"}}},
        "Canned": {"type": "object", "required": ["canned"],
                   "properties": {"canned": {"type": "array", "items": _ref("CannedItem")}}},
        "CannedIn": {"type": "object", "required": ["shortcut", "text"],
                     "properties": {"shortcut": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,32}$",
                                                 "description": "typed after / in the editor (unique)"},
                                    "text": {**NOT_BLANK, "description": "cut at 2000 characters"}},
                     "examples": [{"shortcut": "hello2", "text": "您好，我来为您处理。"}]},
        "AssignIn": {"type": "object", "required": ["agent"],
                     "properties": {"agent": {**NOT_BLANK, "description": "an active agent's name, not the holder"}}},
        "Labels": {"type": "object", "required": ["intents", "slots"],
                   "description": "Readable names of intents and slot keys, per language",
                   "properties": {"intents": {"type": "object"}, "slots": {"type": "object"}}},
        "Reopened": {"type": "object", "required": ["ok", "handoff_id", "agent"],
                     "properties": {"ok": {"const": True}, "handoff_id": {"type": "integer",
                                                                          "description": "the new handoff"},
                                    "agent": {"type": "string"}}},
        "Agents": {"type": "object", "required": ["agents"], "properties": {"agents": {"type": "array", "items": {
            "type": "object", "required": ["name", "role", "online"],
            "properties": {"name": {"type": "string"}, "role": {"enum": ["agent", "supervisor"]},
                           "online": {"type": "boolean"}}}}}},
        "ConsoleStats": {
            "type": "object",
            "description": "Live queue and agents; conversations, escalations and satisfaction over the last "
                           "`window_hours`. Computed at most every 5 s.",
            "required": ["queue_length", "in_progress", "average_wait_seconds", "longest_wait_seconds",
                         "average_handled_wait_seconds", "agents_online", "agents_online_count", "conversations",
                         "conversations_with_agent", "conversations_escalated", "automation_rate",
                         "satisfaction_average", "satisfaction_count", "satisfaction_distribution", "window_hours",
                         "conversations_contained", "containment_rate", "per_agent", "sla_breaches", "trend"],
            "properties": {
                "queue_length": COUNT, "in_progress": COUNT, "average_wait_seconds": COUNT,
                "longest_wait_seconds": COUNT, "average_handled_wait_seconds": NULLABLE_INT,
                "agents_online": {"type": "array", "items": {"type": "string"}}, "agents_online_count": COUNT,
                "conversations": COUNT, "conversations_with_agent": COUNT, "conversations_escalated": COUNT,
                "automation_rate": {"type": ["number", "null"]},
                "satisfaction_average": {"type": ["number", "null"], "minimum": 1, "maximum": 5},
                "satisfaction_count": COUNT,
                "satisfaction_distribution": {"type": "object", "description": "score 1–5 → answers",
                                              "additionalProperties": COUNT},
                "window_hours": {"type": "integer"},
                "conversations_contained": COUNT,
                "containment_rate": {"type": ["number", "null"], "description": "conversations finished without "
                                     "an agent and without an unanswered escalation / conversations "
                                     "(automation_rate is the same figure)"},
                "per_agent": {"type": "array", "items": {
                    "type": "object", "required": ["agent", "load", "handled", "average_handle_seconds",
                                                   "satisfaction_average", "satisfaction_count"],
                    "properties": {"agent": {"type": "string"}, "load": COUNT, "handled": COUNT,
                                   "average_handle_seconds": NULLABLE_INT,
                                   "satisfaction_average": {"type": ["number", "null"]},
                                   "satisfaction_count": COUNT}}},
                "sla_breaches": {"type": "array", "items": {
                    "type": "object", "required": ["handoff_id", "display", "priority", "waiting_seconds",
                                                   "sla_seconds"],
                    "properties": {"handoff_id": {"type": "integer"}, "display": {"type": "string"},
                                   "priority": {"type": "string"}, "priority_label": {"type": "string"},
                                   "waiting_seconds": COUNT, "sla_seconds": COUNT}}},
                "trend": {"type": "array", "maxItems": 24, "items": {
                    "type": "object", "required": ["hour", "conversations", "escalations"],
                    "properties": {"hour": {"type": "string", "format": "date-time"}, "conversations": COUNT,
                                   "escalations": COUNT}}},
            },
        },
        "HistoryItem": {
            "type": "object",
            "description": "One item of the conversation, masked; `masked` says masking changed its text "
                           "(the holder may reveal it by its `id`).",
            "required": ["id", "kind", "text", "masked", "at"],
            "properties": {
                "id": {"type": "string", "pattern": r"^[em][0-9]+$",
                       "description": "e<event id> or m<console message id>"},
                "kind": {"type": "string", "description": "customer, bot, agent, note or system"},
                "text": {"type": "string"},
                "masked": {"type": "boolean"},
                "at": {"type": "string", "format": "date-time"},
                "intent": NULLABLE_STR,
                "confidence": {"type": ["number", "null"]},
                "entities": {"type": "array", "items": {"type": "object"}},
                "slots": {"type": "object"},
                "agent": NULLABLE_STR,
            },
        },
        "HandoffDetail": {
            "type": "object",
            "required": ["handoff", "events", "slots", "masked_slots", "account", "customer"],
            "properties": {
                "handoff": {
                    "type": "object",
                    "required": ["id", "conversation_id", "display", "channel", "status", "agent", "reason",
                                 "reason_label", "priority", "priority_label", "summary", "mine", "can_act",
                                 "waiting_seconds"],
                    "properties": {
                        "id": {"type": "integer"}, "conversation_id": {"type": "string"}, "display": {"type": "string"},
                        "channel": {"type": "string"}, "status": status, "agent": NULLABLE_STR,
                        "reason": {"type": "string"}, "reason_label": {"type": "string"},
                        "priority": {"type": "string"}, "priority_label": {"type": "string"},
                        "summary": NULLABLE_STR,
                        "mine": {"type": "boolean", "description": "the caller holds it"},
                        "can_act": {"type": "boolean", "description": "the caller may reply, note, transfer, close, reveal"},
                        "waiting_seconds": COUNT,
                    },
                },
                "events": {"type": "array", "items": _ref("HistoryItem")},
                "slots": {"type": "object", "description": "the conversation's slots, masked"},
                "masked_slots": {"type": "array", "items": {"type": "string"}},
                "account": {
                    "type": "object", "required": ["found", "accounts"],
                    "description": "the customer's accounts at the core (at most 3), masked; `error` when the "
                                   "core could not be asked",
                    "properties": {"found": {"type": "boolean"}, "error": {"type": "string"},
                                   "accounts": {"type": "array", "items": {"type": "object", "required": ["index"]}}},
                },
                "customer": {
                    "type": "object", "required": ["name", "account", "verified", "channel", "channel_label",
                                                   "display", "earlier"],
                    "description": "who the customer is (masked) and their other conversations on every channel "
                                   "of the same accounts (`visible`: the caller may open it)",
                    "properties": {
                        "name": NULLABLE_STR, "account": NULLABLE_STR, "verified": {"type": "boolean"},
                        "channel": {"type": "string"}, "channel_label": {"type": "string"},
                        "display": {"type": "string"},
                        "earlier": {"type": "array", "items": {
                            "type": "object", "required": ["handoff_id", "display", "channel", "status", "visible"],
                            "properties": {"handoff_id": NULLABLE_INT, "display": {"type": "string"},
                                           "channel": {"type": "string"}, "status": {"type": "string"},
                                           "visible": {"type": "boolean"}}}},
                    },
                },
            },
        },
        "TextIn": {"type": "object", "required": ["text"], "properties": {"text": {
            **NOT_BLANK, "description": "cut at 2000 characters"}}, "examples": [{"text": "您好，我来为您处理。"}]},
        "TransferIn": {"type": "object", "required": ["agent"],
                       "properties": {"agent": {**NOT_BLANK, "description": "an active agent's name, not the holder"}}},
        "CloseIn": {"type": "object", "properties": {"note": {"type": "string", "description": "an optional closing note"}}},
        "RevealIn": {
            "description": "One datum: a field of the n-th account of the summary, a slot of the conversation, "
                           "or the text of one history item (its `id`).",
            "oneOf": [
                {"type": "object", "required": ["field"], "not": {"anyOf": [{"required": ["slot"]}, {"required": ["message"]}]},
                 "properties": {"field": {"enum": list(REVEALABLE)},
                                "index": {"type": "integer", "minimum": 0, "maximum": 99, "default": 0}}},
                {"type": "object", "required": ["slot"], "not": {"required": ["message"]},
                 "properties": {"slot": {"type": "string"}}},
                {"type": "object", "required": ["message"], "not": {"required": ["slot"]},
                 "properties": {"message": {"type": "string"}}},
            ],
        },
        "Taken": {"type": "object", "required": ["ok", "handoff_id", "agent"],
                  "properties": {"ok": {"const": True}, "handoff_id": {"type": "integer"}, "agent": {"type": "string"}}},
        "Replied": {"type": "object", "required": ["ok", "id", "outbox_id"],
                    "properties": {"ok": {"const": True}, "id": {"type": "integer"},
                                   "outbox_id": {"type": ["integer", "null"],
                                                 "description": "the outbox row that carries it to the customer"}}},
        "Noted": {"type": "object", "required": ["ok", "id"],
                  "properties": {"ok": {"const": True}, "id": {"type": "integer"}}},
        "Transferred": {"type": "object", "required": ["ok", "agent"],
                        "properties": {"ok": {"const": True}, "agent": {"type": "string"}}},
        "Revealed": {"type": "object", "required": ["field", "value"],
                     "properties": {"field": {"type": "string"}, "value": {"type": "string"}}},
        "LoginForm": {
            "type": "object", "required": ["csrf_token", "name", "password"],
            "properties": {"csrf_token": {"type": "string", "description": "the login page's token (also in its cookie)"},
                           "name": {"type": "string"}, "password": {"type": "string", "format": "password"}},
        },
        "LogoutForm": {"type": "object", "properties": {"csrf_token": {
            "type": "string", "description": "the session's CSRF token, when not sent as X-CSRF-Token"}}},
    }


HANDOFF_OPERATIONS = ("console_handoff", "console_take", "console_reply", "console_note", "console_transfer",
                      "console_close", "console_reveal")


def _with_links(item: dict[str, Any], hid_from: str) -> dict[str, Any]:
    """OpenAPI links from an operation's 200 answer to every handoff operation (a client's next
    step; Schemathesis' stateful phase follows them)."""
    op = next(iter(item.values()))
    own = op["operationId"]
    op["responses"]["200"]["links"] = {
        f"{target.removeprefix('console_')}": {"operationId": target, "parameters": {"hid": hid_from}}
        for target in HANDOFF_OPERATIONS if target != own}
    return item


def _console_paths() -> dict[str, Any]:
    read = [{"consoleSession": []}]
    write = [{"consoleSession": [], "csrfHeader": []}]
    hid = {"name": "hid", "in": "path", "required": True, "example": 1,
           "description": "handoff id (anything but 1–19 digits within a BIGINT is a 404)",
           "schema": {"type": "integer", "minimum": 1}}
    unauth = {"401": _resp("Unauthorized")}
    wrote = {"400": _resp("BadRequest"), **unauth,
             "403": _problem_response("CSRF token missing or wrong (csrf), or the conversation is another "
                                      "agent's (not_yours)"),
             "404": _resp("NotFound"), "409": _problem_response("Not taken or already closed (not_assigned), "
                                                                "or changed meanwhile (conflict)"),
             "413": _resp("PayloadTooLarge")}

    def get(op_id: str, summary: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"get": {"operationId": op_id, "summary": summary, "tags": ["console"], "security": read,
                        "responses": {"200": _ok(schema), **unauth, **more}}}

    def act(op_id: str, summary: str, body: str | None, schema: str, description: str = "",
            body_required: bool = True, **more: Any) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["console"], "security": write,
                              "parameters": [hid], "responses": {"200": _ok(_ref(schema)), **wrote, **more}}
        if description:
            op["description"] = description
        if body is not None:
            op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
        return {"post": op}

    redirect = {"description": "See Location", "headers": {"Location": {"schema": {"type": "string"}}}}
    cid = {"name": "cid", "in": "path", "required": True, "example": 1, "description": "canned answer id",
           "schema": {"type": "integer", "minimum": 1}}

    def canned_write(op_id: str, summary: str, with_id: bool) -> dict[str, Any]:
        op: dict[str, Any] = {
            "operationId": op_id, "summary": summary, "tags": ["console"], "security": write,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CannedIn")}}},
            "responses": {"200": _ok(_ref("CannedItem")), "400": _resp("BadRequest"), **unauth,
                          "403": _problem_response("CSRF token missing or wrong"),
                          "409": _problem_response("The shortcut is taken (conflict)"),
                          "413": _resp("PayloadTooLarge")}}
        if with_id:
            op["parameters"] = [cid]
            op["responses"]["404"] = _resp("NotFound")
        return {"post": op}

    def query(name: str, values: tuple[str, ...] | None, description: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": list(values)} if values else {"type": "string", "maxLength": 100}
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    from bot.console.service import CHANNEL_LABELS, STATUSES, VIEWS
    from bot.dialogue.handoff import PRIORITIES

    queue_op = get("console_queue", "Handoffs by view, filters and search, and the agents online", _ref("Queue"),
                   **{"400": _resp("BadRequest")})
    queue_op["get"]["description"] = (
        "Default: the open handoffs (waiting: most urgent, then oldest first; then those being handled). "
        "Closed ones (`status=released`) are those the caller may see, most recent first.")
    queue_op["get"]["parameters"] = [
        query("view", VIEWS, "mine: held by the caller; unassigned: waiting; all"),
        query("channel", tuple(CHANNEL_LABELS), "only this channel"),
        query("priority", PRIORITIES, "only this priority"),
        query("status", STATUSES, "open (waiting and assigned, the default), waiting, assigned, released, any"),
        query("q", None, "search conversation ids, messages, notes and customer data (account numbers, and "
                         "customers' names through the core: their conversations on every channel)"),
    ]
    return {
        "/console/login": {
            "get": {"operationId": "console_login_page", "summary": "The login page; sets the login CSRF cookie",
                    "tags": ["console login"], "security": [],
                    "responses": {"200": {"description": "The login form (its hidden csrf_token field matches the "
                                                         "pb_console_login cookie it sets)", "content": HTML},
                                  "302": {**redirect, "description": "Already logged in: to /console"}}},
            "post": {
                "operationId": "console_login", "summary": "Log in: opens a session (cookie pb_console)",
                "description": "A browser form: answers with a redirect, or the login page again with the reason "
                               "(HTML). The same answer whether the name is unknown or the password wrong; "
                               "repeated failures lock the name for 15 minutes.",
                "tags": ["console login"], "security": [{"loginCsrfCookie": []}],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": _ref("LoginForm")}}},
                "responses": {
                    "302": {**redirect, "description": "Logged in: to /console, with the session cookie"},
                    "400": _resp("BadRequest"),
                    "401": {"description": "Wrong name or password (the login page)", "content": HTML},
                    "403": {"description": "Login CSRF token missing or wrong (the login page)", "content": HTML},
                    "413": _resp("PayloadTooLarge"),
                    "429": {"description": "Name locked after repeated failures (the login page)", "content": HTML},
                },
            },
        },
        "/console/logout": {"post": {
            "operationId": "console_logout", "summary": "Log out: ends the session",
            "tags": ["console login"], "security": write,
            "requestBody": {"required": False, "content": {
                "application/x-www-form-urlencoded": {"schema": _ref("LogoutForm")}}},
            "responses": {"302": {**redirect, "description": "To /console/login (also when not logged in)"},
                          "400": _resp("BadRequest"), "403": _problem_response("CSRF token missing or wrong"),
                          "413": _resp("PayloadTooLarge")},
        }},
        "/console/ws": {"get": {
            "operationId": "console_ws", "summary": "Live events (websocket)",
            "description": "A websocket upgrade with the session cookie (and no foreign Origin). The server "
                           "sends JSON events: `hello`, then queue events (`queued`, `taken`, `transferred`, "
                           "`closed`) to every agent, and conversation events (`message`, `reply`, `note`, …) "
                           "only to those who may see that conversation. The client sends `ping` (or "
                           "`{\"type\": \"ping\"}`) and gets `{\"type\": \"pong\"}`; anything else is answered "
                           "with `{\"type\": \"error\", \"problem\": …}`. Frames over 4096 bytes close the socket.",
            "tags": ["console"], "security": read,
            "responses": {"101": {"description": "Switching to the websocket"},
                          "400": _problem_response("Not a websocket handshake"), **unauth,
                          "403": _problem_response("Foreign Origin (bad_origin)")},
        }},
        "/console/api/me": get("console_me", "The logged-in agent and the CSRF token for writes", _ref("ConsoleMe")),
        "/console/api/queue": _with_links(queue_op, "$response.body#/queue/0/handoff_id"),
        "/console/api/canned": {**get("console_canned", "Canned answers", _ref("Canned")),
                                "post": canned_write("console_canned_create", "Add a canned answer", False)["post"]},
        "/console/api/canned/{cid}": {"put": canned_write("console_canned_update", "Change a canned answer", True)["post"],
                                      "delete": {"operationId": "console_canned_delete", "summary": "Remove a canned answer",
                                                 "tags": ["console"], "security": write, "parameters": [cid],
                                                 "responses": {"200": _ok(_ref("Ok")), **unauth,
                                                               "403": _problem_response("CSRF token missing or wrong"),
                                                               "404": _resp("NotFound")}}},
        "/console/api/labels": get("console_labels", "Readable intent and slot names (zh, en)", _ref("Labels")),
        "/console/api/agents": get("console_agents", "Active agents and who is online (transfer targets)",
                                   _ref("Agents")),
        "/console/api/stats": get("console_stats", "Supervisor figures (supervisors only)", _ref("ConsoleStats"),
                                  **{"403": _problem_response("Not a supervisor")}),
        "/console/api/handoffs/{hid}": {"get": {
            "operationId": "console_handoff",
            "summary": "A handoff: its conversation (masked), slots (masked) and the customer's accounts",
            "description": "Waiting handoffs: every agent; assigned or released ones: their (last) holder and "
                           "supervisors (a supervisor's look at another agent's conversation is audited).",
            "tags": ["console"], "security": read, "parameters": [hid],
            "responses": {"200": _ok(_ref("HandoffDetail")), **unauth,
                          "403": _problem_response("Another agent's conversation (not_yours)"),
                          "404": _resp("NotFound")},
        }},
        "/console/api/handoffs/{hid}/take": _with_links(act(
            "console_take", "Take a waiting handoff (of two agents racing, exactly one wins)", None, "Taken",
            **{"409": _problem_response("Already taken by someone, or closed (taken)")}), "$response.body#/handoff_id"),
        "/console/api/handoffs/{hid}/reply": act(
            "console_reply", "Answer the customer on their channel (holder or supervisor)", "TextIn", "Replied"),
        "/console/api/handoffs/{hid}/note": act(
            "console_note", "Add an internal note (never sent to the customer)", "TextIn", "Noted"),
        "/console/api/handoffs/{hid}/transfer": act(
            "console_transfer", "Hand an assigned handoff over to another active agent", "TransferIn", "Transferred",
            description="400 unknown_agent: no such active agent; 400 same_agent: it is already theirs."),
        "/console/api/handoffs/{hid}/close": act(
            "console_close", "Close the handoff: the bot takes the conversation back and asks for a 1–5 score",
            "CloseIn", "Ok", body_required=False),
        "/console/api/handoffs/{hid}/reveal": act(
            "console_reveal", "The unmasked value of one datum (holder or supervisor; always audited)",
            "RevealIn", "Revealed", description="404: nothing to reveal there.",
            **{"503": _resp("CoreUnavailable")}),
        "/console/api/handoffs/{hid}/reopen": act(
            "console_reopen", "Reopen a closed conversation: a new handoff held by the caller (its last holder "
            "or a supervisor)", None, "Reopened",
            description="409 conflict: not closed, or queued or held again meanwhile."),
        "/console/api/handoffs/{hid}/assign": act(
            "console_assign", "Give a waiting (or held) handoff to an agent (supervisors only)", "AssignIn",
            "Transferred", description="403 forbidden: not a supervisor; 400 unknown_agent / same_agent."),
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
            {"name": "console", "description": "The agent console's JSON API: log in at /console/login "
                                               "(session cookie pb_console); writes need the X-CSRF-Token header "
                                               "(from /console/api/me)"},
            {"name": "console login", "description": "The console's login form (HTML; a browser's flow)"},
            {"name": "nlu", "description": "powerbot's NLU in Rasa's NLU HTTP shape (POST /model/parse)"},
            {"name": "health"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer",
                                  "description": "POWERBOT_OPERATOR_TOKEN"},
                "operatorTokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                                       "description": "POWERBOT_OPERATOR_TOKEN as Rasa's ?token= (POST /model/parse)"},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": "pb_console",
                                   "description": "session cookie set by POST /console/login"},
                "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                               "description": "the session's CSRF token (GET /console/api/me → csrf)"},
                "loginCsrfCookie": {"type": "apiKey", "in": "cookie", "name": "pb_console_login",
                                    "description": "set by GET /console/login; its value is also the form's "
                                                   "csrf_token"},
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
