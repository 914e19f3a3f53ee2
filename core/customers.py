"""Customers looked up by name or by a batch of account numbers, answered with masked names only.

The agent console needs two things the account endpoints do not give: finding a customer by
(part of) their name, and the names of a whole queue's accounts in one call. Both answer the
account number and the holder's name masked the way the console masks it (first character,
then one ``*`` per further character), never the full name: a list must not reveal who the
customers are; an agent who needs the full name opens the conversation and reveals it there
(audited by the console).

Names are matched as a substring, case-insensitively for Latin letters and with runs of
whitespace read as one space; exact matches come first, then names that start with the query,
then the rest, each by account number. Results are capped (``limit``, at most ``MAX_LIMIT``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import models as m
from .problems import ProblemError, bad_param
from .service import ACCOUNT_PATTERN, parse_int

NAME_MIN = 2  # a single character (a bare surname) would list a large share of all customers
NAME_MAX = 64  # the store's column width
DEFAULT_LIMIT = 20
MAX_LIMIT = 50
BATCH_MAX = 50  # account numbers per batched call (a console queue page)
_SPACES = re.compile(r"\s+")


def mask_name(name: str) -> str:
    """The holder's name as lists may show it: ``张伟`` → ``张*``, ``Wei Zhang`` → ``W*********``."""
    return (name[:1] + "*" * max(1, len(name) - 1)) if name else ""


def clean_name(raw: str | None) -> str:
    """The ``name`` query as matched (trimmed, whitespace runs as one space), or a 400 problem."""
    if raw is None:
        raise bad_param("name", "required")
    name = _SPACES.sub(" ", raw).strip()
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise bad_param("name", "must not contain control or unassigned characters")
    if not NAME_MIN <= len(name) <= NAME_MAX:
        raise bad_param("name", f"must be {NAME_MIN}–{NAME_MAX} characters")
    if not any(ch.isalpha() for ch in name):
        raise bad_param("name", "must contain a letter (search account numbers with the account endpoints)")
    return name


def clean_account_numbers(raw: str | None) -> list[str]:
    """``account_numbers``: comma-separated 户号, 1 to ``BATCH_MAX`` of them, duplicates once."""
    if raw is None or not raw.strip():
        raise bad_param("account_numbers", "required")
    numbers = [part.strip() for part in raw.split(",")]
    if any(not ACCOUNT_PATTERN.match(n) for n in numbers):
        raise bad_param("account_numbers", "must be comma-separated account numbers of 10–13 digits")
    numbers = list(dict.fromkeys(numbers))
    if len(numbers) > BATCH_MAX:
        raise bad_param("account_numbers", f"at most {BATCH_MAX} account numbers")
    return numbers


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _doc(no: str, name: str) -> dict[str, Any]:
    return {"account_number": no, "masked_name": mask_name(name)}


async def lookup(sm: async_sessionmaker[AsyncSession], query: dict[str, str]) -> dict[str, Any]:
    """``GET /customers``: exactly one of ``name`` (with an optional ``limit``) or ``account_numbers``."""
    has_name, has_numbers = "name" in query, "account_numbers" in query
    if has_name == has_numbers:
        raise ProblemError(400, "missing_filter" if not has_name else "conflicting_filters",
                           "give exactly one of name or account_numbers")
    if has_numbers:
        if "limit" in query:
            raise bad_param("limit", "only with name (a batch answers every account it is given)")
        numbers = clean_account_numbers(query["account_numbers"])
        async with sm() as s:
            rows = dict((await s.execute(
                select(m.Account.account_number, m.Account.holder_name).where(m.Account.account_number.in_(numbers))
            )).tuples().all())
        return {"customers": [_doc(n, rows[n]) for n in numbers if n in rows]}
    name = clean_name(query["name"])
    limit = parse_int("limit", query.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
    folded = name.lower()
    column = func.lower(m.Account.holder_name)
    rank = case((column == folded, 0), (column.like(_like(folded) + "%", escape="\\"), 1), else_=2)
    async with sm() as s:
        rows = (await s.execute(
            select(m.Account.account_number, m.Account.holder_name)
            .where(column.like("%" + _like(folded) + "%", escape="\\"))
            .order_by(rank, m.Account.account_number)
            .limit(limit)
        )).tuples().all()
    return {"customers": [_doc(no, holder) for no, holder in rows]}
