"""RFC 9457 problem details raised by the core's handlers and services."""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    TITLES = {
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        413: "Payload Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Content",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }

    def __init__(self, status: int, code: str, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.extra = extra

    def document(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"urn:powerbot:core:problem:{self.code}",
            "title": self.TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            doc["instance"] = instance
        if self.errors is not None:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


def not_found(what: str, key: object) -> ProblemError:
    return ProblemError(404, f"{what}_not_found", f"{what.replace('_', ' ')} {key} not found")


def bad_param(name: str, reason: str) -> ProblemError:
    return ProblemError(400, "invalid_parameter", f"query/path parameter {name!r}: {reason}", errors=[{"loc": [name], "msg": reason}])
