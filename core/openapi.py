"""OpenAPI 3.1 document of the core API, built from the route table and the pydantic schemas."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from . import schemas as sc

# Paths that need no token (core.app.OPEN_PATHS, repeated here to keep this module free of the app).
OPEN_PATHS = frozenset({"/healthz", "/api/v1/openapi.json"})
_PATH_PARAM = re.compile(r"{(\w+)}")
_PATH_PARAM_DOC = {
    "account_number": ("户号, 10–13 digits", {"type": "string", "pattern": sc.ACCOUNT_RE}),
    "out_trade_no": ("merchant order number", {"type": "string", "pattern": sc.TRADE_NO_RE}),
    "outage_id": ("outage id", {"type": "integer", "minimum": 1}),
    "work_order_id": ("WO + 12 digits", {"type": "string", "pattern": r"^WO\d{12}$"}),
    "hall_id": ("hall id", {"type": "integer", "minimum": 1}),
    "appointment_id": ("appointment id", {"type": "integer", "minimum": 1}),
    "category": ("tariff category (residential, commercial)", {"type": "string"}),
}


# Query parameters whose form is the same on every route (bounds such as a route's largest
# ``limit`` are in the description; out of bounds is a 400 problem).
_QUERY_PARAM_SCHEMA: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1},
    "after_id": {"type": "integer", "minimum": 0},
    "month": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
    "date": {"type": "string", "format": "date"},
    "kwh": {"type": "number", "minimum": 0},
    "peak_kwh": {"type": "number", "minimum": 0},
    "valley_kwh": {"type": "number", "minimum": 0},
    "name": {"type": "string", "minLength": 2, "maxLength": 64},
    "account_numbers": {"type": "string", "pattern": r"^\d{10,13}(,\d{10,13}){0,49}$"},
}


def build_openapi(routes: tuple[Any, ...]) -> dict[str, Any]:
    return _build(routes)


@lru_cache(maxsize=4)
def _build(routes: tuple[Any, ...]) -> dict[str, Any]:
    models = {sc.Problem}
    for r in routes:
        for model in (r.body, r.response):
            if model is not None:
                models.add(model)
    ordered = sorted(models, key=lambda mdl: mdl.__name__)
    keys = [(mdl, "validation" if any(r.body is mdl for r in routes) else "serialization") for mdl in ordered]
    _, top = models_json_schema(keys, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    schemas = top.get("$defs", {})
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        params: list[dict[str, Any]] = []
        for name in _PATH_PARAM.findall(r.path):
            desc, schema = _PATH_PARAM_DOC.get(name, (name, {"type": "string"}))
            params.append({"name": name, "in": "path", "required": True, "description": desc, "schema": schema})
        for name, desc in r.query:
            schema = _QUERY_PARAM_SCHEMA.get(name, {"type": "string"})
            params.append({"name": name, "in": "query", "required": False, "description": desc, "schema": schema})
        if r.idempotency_header:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "same key + same body → the same resource (200); another body → 409",
                    "schema": {"type": "string", "maxLength": 128},
                }
            )
        ok_content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.response.__name__}"}}} if r.response else {
            "application/json": {"schema": {"type": "object"}}
        }
        responses: dict[str, Any] = {"200": {"description": "OK", "content": ok_content}}
        if r.created:
            responses["201"] = {"description": "Created", "content": ok_content}
        for code, desc in (("400", "Bad parameter"), ("404", "Not found"), ("409", "Conflict"), ("422", "Invalid body")):
            responses[code] = {"description": desc, "content": problem}
        open_path = r.path in OPEN_PATHS
        if not open_path:
            responses["401"] = {"description": "Missing or wrong bearer token (when the core has one)", "content": problem}
        if r.body is not None:
            responses["413"] = {"description": "Body too large", "content": problem}
            responses["415"] = {"description": "Body is not application/json", "content": problem}
        if r.path.endswith("/healthz"):
            responses["503"] = {"description": "Database unreachable",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HealthOut"}}}}
        op: dict[str, Any] = {
            "operationId": r.handler.__name__ + ("_v1" if r.path.startswith("/api/v1/healthz") else ""),
            "summary": r.summary,
            "tags": list(r.tags),
            "parameters": params,
            "responses": responses,
        }
        if open_path:
            op["security"] = []  # open to load balancers and to readers of this document
        if r.body is not None:
            op["requestBody"] = {
                "required": r.method != "DELETE",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    paths["/metrics"] = {"get": {  # served by core.app next to ROUTES: Prometheus text, not JSON
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "tags": ["ops"],
        "responses": {
            "200": {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": {"description": "Missing or wrong bearer token (when the core has one)", "content": problem},
        },
    }}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "powerbot thin core",
            "version": "1.0.0",
            "description": "Accounts, bills, payments, outages, work orders, halls, tariffs, subscriptions and an event feed "
            "of a 95598-style utility. Money as decimal strings (CNY), times ISO 8601 with offset. "
            "Errors are RFC 9457 problem details (application/problem+json).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "security": [{"bearerAuth": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "POWERBOT_CORE_API_TOKEN (or the token file); every call but the health "
                    "check and this document needs it when the core is given a token",
                }
            },
        },
    }
