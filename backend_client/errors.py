"""Typed failures of the core API, so callers can turn each into a polite answer."""

from __future__ import annotations

from typing import Any


class CoreError(Exception):
    """Base class: the core refused or could not serve a request."""

    def __init__(self, message: str, *, status: int | None = None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problem: dict[str, Any] = problem or {}

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.message)

    @property
    def code(self) -> str | None:
        """Machine-readable reason from the problem document (e.g. ``amount_exceeds_owed``)."""
        c = self.problem.get("code")
        return str(c) if c else None


class CoreUnavailable(CoreError):
    """Connection refused / timeout / 5xx / circuit open: try again later, or hand off."""


class NotFound(CoreError):
    """404: unknown account, bill, work order, ..."""


class ValidationFailed(CoreError):
    """400/422: the request was rejected; ``problem['errors']`` lists the fields at fault."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.problem.get("errors") or [])


class Conflict(CoreError):
    """409: idempotency key reused with another body, slot full, illegal transition..."""
