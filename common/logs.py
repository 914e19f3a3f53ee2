"""Logging setup (``structlog`` over the standard library) with customer PII masked in every field.

One pipeline for both kinds of log call: ``logging.getLogger(...).info("… %s", x)`` (most of
the code) and ``structlog.get_logger(...).info("event", key=value)`` (the access log, the turn
and outbox lines). Either way a line has ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``,
the request id when one is bound (``structlog.contextvars``), and its own fields — each a JSON
member in JSON mode (``POWERBOT_LOG_JSON``), ``key=value`` pairs in text mode. Every string in
every field goes through ``common.pii.mask_text`` before it is rendered.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import Any

import orjson
import structlog
from structlog.stdlib import ProcessorFormatter

from common.pii import mask_text


class PiiFilter(logging.Filter):
    """Masks a record's formatted message: for handlers outside ``setup_logging``'s pipeline."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        record.msg, record.args = mask_text(msg), None
        return True


# mask_text looks for digits (phones, accounts, ID cards, house numbers), "@" (e-mail) or
# Chinese address words: an ASCII string with neither digits nor "@" cannot hold any of them
_MAYBE_PII = re.compile(r"[\d@]")
# fields the logging pipeline writes itself; a request id is refused at the door (and never
# generated) when it could read as personal data (``common.observe.request_id_from``)
_OWN_FIELDS = frozenset({"ts", "level", "logger", "duration_ms", "status", "request_id"})


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        if value.isascii() and _MAYBE_PII.search(value) is None:
            return value
        return mask_text(value)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):  # a phone or account number passed as a number
        if -10**9 < value < 10**9:  # shorter than any of them
            return value
        text = str(value)
        masked = mask_text(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_masked(v) for v in value]
    return mask_text(str(value))


def mask_fields(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: PII masked in every field, the message and the traceback included.

    A structlog call is masked before its record is made (``_STRUCTLOG_CHAIN``), so any handler
    — not only ours — sees it masked; the formatter then skips it. Only what is added later
    (a traceback) is masked again."""
    if event_dict.pop("_masked", False):
        if "exception" in event_dict:
            event_dict["exception"] = _masked(event_dict["exception"])
        return event_dict
    for key, value in event_dict.items():
        if key not in _OWN_FIELDS:
            event_dict[key] = _masked(value)
    return event_dict


def _mark_masked(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict["_masked"] = True
    return event_dict


def _tidy(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if event_dict.get("request_id", "") is None:
        del event_dict["request_id"]
    level = event_dict.get("level")
    if isinstance(level, str):
        event_dict["level"] = level.upper()
    return event_dict


def _dumps(doc: dict[str, Any], **_kw: Any) -> str:
    return orjson.dumps(doc, default=str).decode()  # UTF-8 as is: Chinese stays readable


def _formatter_chain(*render: Any) -> list[Any]:
    """What both formatters do to a line before rendering it: exceptions as text, PII masked."""
    return [ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
            mask_fields, _tidy, *render]


class JsonFormatter(ProcessorFormatter):
    """One JSON object per line, fields as members, PII masked (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(foreign_pre_chain=_PRE_CHAIN, processors=_formatter_chain(
            structlog.processors.EventRenamer("msg"), structlog.processors.JSONRenderer(serializer=_dumps)))


class TextFormatter(ProcessorFormatter):
    """``ts LEVEL logger: message key=value ...`` for a terminal, PII masked."""

    def __init__(self) -> None:
        super().__init__(foreign_pre_chain=_PRE_CHAIN, processors=_formatter_chain(_render_text))


def _render_text(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
    head = f"{event_dict.pop('ts', '')} {event_dict.pop('level', '')} {event_dict.pop('logger', '')}: " \
           f"{event_dict.pop('event', '')}"
    exc = event_dict.pop("exception", None)
    tail = " ".join(f"{k}={v}" for k, v in event_dict.items())
    line = f"{head} {tail}" if tail else head
    return f"{line}\n{exc}" if exc else line


# Applied to records from the standard library's loggers (structlog's own run _STRUCTLOG_CHAIN).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("powerbot_request_id", default=None)


def add_request_id(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The request id of the work this line belongs to (set by the HTTP middleware and by the
    pipeline for a turn): one context variable read, not a copy of the whole context."""
    if "request_id" not in event_dict:
        rid = REQUEST_ID.get()
        if rid is not None:
            event_dict["request_id"] = rid
    return event_dict


_PRE_CHAIN: list[Any] = [
    add_request_id,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
]
_STRUCTLOG_CHAIN: list[Any] = [
    structlog.stdlib.filter_by_level,  # first: a line below the level costs nothing more
    add_request_id,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    mask_fields,
    _mark_masked,
    ProcessorFormatter.wrap_for_formatter,
]


def configure_structlog() -> None:
    """structlog loggers hand their event dicts to the standard library's handlers (and so to
    the formatter ``setup_logging`` installs). Idempotent; done at import so a structlog
    logger made before ``setup_logging`` routes through the same pipeline."""
    structlog.configure(
        processors=_STRUCTLOG_CHAIN,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def setup_logging(level: str = "INFO", json_format: bool = False) -> None:
    configure_structlog()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # powerbot.access replaces it
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)


configure_structlog()
