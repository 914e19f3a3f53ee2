"""``POST /model/parse``: powerbot's NLU in the shape of Rasa's NLU HTTP API.

Rasa's server (``rasa run --enable-api``, ``rasa/server.py``, read at 3.6.2) parses
``{"text", "message_id"?}`` into ``{"text", "intent": {"name", "confidence"}, "entities":
[{"entity", "value", "start", "end", "extractor", ...}], "intent_ranking": [...]}``. The gateway
answers the same request the same way from powerbot's own interpreter (``intents``), so Rasa
tooling — an NLU pipeline calling an HTTP interpreter, ``rasa shell nlu``-style scripts, an
evaluation harness — can use powerbot's Chinese and English understanding of 95598 requests:

- below the fallback threshold (or too close to the runner-up) the intent is ``nlu_fallback``
  with the threshold as its confidence, as Rasa's ``FallbackClassifier`` reports it;
- a Rasa-style payload (``/intent`` or ``/intent{"entity": "value"}``) names its intent with
  confidence 1.0, as Rasa's ``RegexMessageHandler`` does;
- relative dates ("明天", "上个月") resolve against today's date in China.

Who may call it: like ``/metrics``, a caller on this host (not relayed by a proxy), or one with
the operator token — as Rasa's ``--auth-token``, in the ``token`` query parameter, or as a
bearer token. Bad input is a 400 RFC 9457 problem document.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from intents.payload import payload_entities, split_payload

MAX_TEXT = 4000  # the REST channel's limit on a customer message
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def _problem(status: int, title: str, detail: str) -> web.Response:
    """An RFC 9457 problem document (``error`` repeats the title as a code, like the gateway's others)."""
    return web.json_response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail,
         "error": title.lower().replace(" ", "_")},
        status=status, content_type="application/problem+json",
    )


def _local(request: web.Request) -> bool:
    if any(h in request.headers for h in _FORWARDING_HEADERS):
        return False  # relayed by a proxy: every caller would look local
    try:
        ip = ipaddress.ip_address((request.remote or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _token_given(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("token", "")


async def model_parse(request: web.Request) -> web.Response:
    from bot.app import INTERPRETER, SETTINGS

    if not _local(request):
        token = request.app[SETTINGS].operator_token
        secret = token.get_secret_value() if token is not None else ""
        if not secret:
            return _problem(403, "Forbidden", "/model/parse is open to this host only; set POWERBOT_OPERATOR_TOKEN "
                                              "to call it from elsewhere with ?token=")
        given = _token_given(request)
        if not given or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode()):
            return _problem(401, "Unauthorized", "the operator token is required: ?token=... or "
                                                 "Authorization: Bearer ...")
    if request.query.get("emulation_mode"):
        return _problem(400, "Bad Request", "emulation_mode is not supported: the answer is Rasa's own shape")
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _problem(400, "Bad Request", "the body must be a JSON object with 'text'")
    if not isinstance(body, dict):
        return _problem(400, "Bad Request", "the body must be a JSON object with 'text'")
    text = body.get("text")
    if not isinstance(text, str):
        return _problem(400, "Bad Request", "'text' must be a string (the message to parse)")
    if len(text) > MAX_TEXT:
        return _problem(400, "Bad Request", f"'text' is longer than {MAX_TEXT} characters")
    message_id = body.get("message_id")
    if message_id is not None and (isinstance(message_id, bool) or not isinstance(message_id, (str, int))):
        return _problem(400, "Bad Request", "'message_id' must be a string or an integer")
    interpreter = request.app[INTERPRETER]
    return web.json_response(parse_as_rasa(interpreter, text), dumps=_dumps)


def parse_as_rasa(interpreter: Any, text: str) -> dict[str, Any]:
    """The interpreter's parse of ``text`` in Rasa's ``/model/parse`` shape."""
    payload = split_payload(text.strip())
    known = set((getattr(interpreter, "metadata", None) or {}).get("intents") or [])
    if payload is not None and (not known or payload[0] in known):
        name, raw = payload
        return {"text": text, "intent": {"name": name, "confidence": 1.0},
                "entities": [{**e, "extractor": "RegexMessageHandler"} for e in (payload_entities(raw) if raw else [])],
                "intent_ranking": [{"name": name, "confidence": 1.0}]}
    from bot.dialogue.responses import CHINA_TZ

    parsed = interpreter.parse(text, datetime.now(CHINA_TZ).date())
    return {
        "text": text,
        "intent": parsed.get("intent") or {"name": "nlu_fallback", "confidence": 0.0},
        "entities": [_entity(e) for e in parsed.get("entities") or []],
        "intent_ranking": parsed.get("intent_ranking") or [],
    }


def _entity(e: dict[str, Any]) -> dict[str, Any]:
    out = {k: e[k] for k in ("entity", "value", "start", "end", "confidence_entity", "extractor") if k in e}
    out.setdefault("extractor", "powerbot")
    return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
