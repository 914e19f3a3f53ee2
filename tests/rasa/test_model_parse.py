"""``POST /model/parse`` on the gateway: powerbot's NLU in the shape of Rasa's NLU HTTP API
(``rasa run --enable-api``, Rasa Open Source 3.6), who may call it, and bad input as RFC 9457
problems."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from intents.model import Interpreter
from stack import run_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPERATOR_TOKEN = "parse-operator-token"
REMOTE = {"X-Forwarded-For": "203.0.113.7"}  # relayed by a proxy: not a caller on this host


@pytest_asyncio.fixture(loop_scope="module")
async def gw(core, interpreter, tmp_path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", core.url, interpreter, data_dir=tmp_path,
                           notify_enabled=False, operator_token=OPERATOR_TOKEN) as g:
        yield g


async def parse(http, gw, body, *, params=None, headers=None):  # type: ignore[no-untyped-def]
    kw = {"json": body} if not isinstance(body, bytes) else {"data": body, "headers": {"Content-Type": "application/json"}}
    if headers:
        kw["headers"] = {**kw.get("headers", {}), **headers}
    async with http.post(gw.url + "/model/parse", params=params, **kw) as r:
        return r.status, r.content_type, await r.json(content_type=None)


async def test_rasa_parse_shape_with_entities(gw, http) -> None:
    text = "查一下户号3100000001上个月的电费"
    status, ctype, body = await parse(http, gw, {"text": text, "message_id": "m-1"})
    assert status == 200 and ctype == "application/json"
    assert set(body) == {"text", "intent", "entities", "intent_ranking"}
    assert body["text"] == text
    assert body["intent"]["name"] == "bill_query" and 0.5 < body["intent"]["confidence"] <= 1.0
    account = next(e for e in body["entities"] if e["entity"] == "account_number")
    assert account["value"] == "3100000001" and text[account["start"]:account["end"]] == "3100000001"
    assert account["extractor"]
    month = next(e for e in body["entities"] if e["entity"] == "month")
    assert len(month["value"]) == 7 and month["value"][4] == "-"  # YYYY-MM, resolved from 上个月
    ranking = body["intent_ranking"]
    assert ranking[0] == body["intent"] and all(set(r) == {"name", "confidence"} for r in ranking)
    assert [r["confidence"] for r in ranking] == sorted((r["confidence"] for r in ranking), reverse=True)


async def test_payload_names_its_intent_like_rasa(gw, http) -> None:
    status, _, body = await parse(http, gw, {"text": '/bill_query{"account_number": "3100000001"}'})
    assert status == 200
    assert body["intent"] == {"name": "bill_query", "confidence": 1.0}
    assert [(e["entity"], e["value"]) for e in body["entities"]] == [("account_number", "3100000001")]
    # the classifier alone does not take "/affirm" for affirm: the payload rule does
    status, _, body = await parse(http, gw, {"text": "/affirm"})
    assert body["intent"] == {"name": "affirm", "confidence": 1.0}


async def test_out_of_scope_and_below_threshold_are_nlu_fallback(gw, core, interpreter, http, tmp_path) -> None:
    status, _, body = await parse(http, gw, {"text": "帮我写一首关于大海的诗"})
    assert status == 200 and body["intent"]["name"] == "nlu_fallback"
    # a clear request, and the same request with a fallback threshold above its confidence:
    # nlu_fallback at the threshold (as Rasa's FallbackClassifier reports it), the real intent ranked
    text = "我想交电费"
    _, _, clear = await parse(http, gw, {"text": text})
    assert clear["intent"]["name"] == "pay_bill"
    strict = Interpreter(interpreter.state, fallback_threshold=min(1.0, clear["intent"]["confidence"] + 0.0001))
    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'strict.db'}", core.url, strict, data_dir=tmp_path,
                           notify_enabled=False) as g2:
        _, _, body = await parse(http, g2, {"text": text})
    assert body["intent"] == {"name": "nlu_fallback", "confidence": round(strict.fallback_threshold, 4)}
    assert body["intent_ranking"][0]["name"] == "nlu_fallback"
    assert "pay_bill" in [r["name"] for r in body["intent_ranking"][1:]]


async def test_bad_input_is_a_problem_document(gw, http) -> None:
    for bad in (b"{not json", b"[1, 2]", b"{}", b'{"text": 5}', b'{"text": "x", "message_id": {"a": 1}}',
                ('{"text": "' + "电" * 4001 + '"}').encode()):
        status, ctype, body = await parse(http, gw, bad)
        assert status == 400 and ctype == "application/problem+json", (bad[:40], status)
        assert body["status"] == 400 and body["title"] and body["detail"]
    status, ctype, body = await parse(http, gw, {"text": "你好"}, params={"emulation_mode": "luis"})
    assert status == 400 and "emulation_mode" in body["detail"]


async def test_from_elsewhere_only_with_the_operator_token(gw, interpreter, core, http, tmp_path) -> None:
    status, ctype, body = await parse(http, gw, {"text": "你好"}, headers=REMOTE)
    assert status == 401 and ctype == "application/problem+json"
    status, _, _ = await parse(http, gw, {"text": "你好"}, headers=REMOTE, params={"token": "wrong"})
    assert status == 401
    # Rasa's convention (?token=, as with --auth-token) and a bearer token both work
    status, _, body = await parse(http, gw, {"text": "你好"}, headers=REMOTE, params={"token": OPERATOR_TOKEN})
    assert status == 200 and body["intent"]["name"] == "greet"
    status, _, body = await parse(http, gw, {"text": "你好"},
                                  headers={**REMOTE, "Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert status == 200 and body["intent"]["name"] == "greet"
    # a gateway without an operator token serves this host only
    async with run_gateway(f"sqlite+aiosqlite:///{tmp_path / 'open.db'}", core.url, interpreter, data_dir=tmp_path,
                           notify_enabled=False) as g2:
        status, ctype, _ = await parse(http, g2, {"text": "你好"}, headers=REMOTE)
        assert status == 403 and ctype == "application/problem+json"
        status, _, _ = await parse(http, g2, {"text": "你好"})
        assert status == 200


async def test_openapi_documents_the_operation(gw, http) -> None:
    async with http.get(gw.url + "/openapi.json") as r:
        doc = await r.json()
    op = doc["paths"]["/model/parse"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ParseRequest"}
    assert {"400", "401", "403"} <= set(op["responses"])
    result = doc["components"]["schemas"]["ParseResult"]
    _, _, body = await parse(http, gw, {"text": "我家停电了"})
    assert set(result["required"]) == set(body) and set(body) <= set(result["properties"])
    assert {"operatorTokenQuery": []} in op["security"]
