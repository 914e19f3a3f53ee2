"""What the pipeline runs for each message (``TurnHandler``): load → decide → commit.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol


from bot.dialogue.tracker_store import TrackerStore
from bot.dialogue.turn import Committed, Snapshot, TurnResult
from channels.base import Message, Reply

log = logging.getLogger("powerbot.pipeline")


class TurnHandler(Protocol):
    """What the pipeline runs for each message: load → decide → commit.

    ``store`` reads the turn's ``Snapshot`` and plans the writes of its ``TurnResult`` (None: a
    handler without a tracker, whose results are replies only); ``probe`` is a scalar SQL
    expression the snapshot also reads for a wrapper (see ``bot.console.hooks``);
    ``after_commit`` runs once the turn is committed and may add replies (queued right behind)."""

    store: TrackerStore | None
    probe: Any

    async def decide(self, message: Message, snapshot: Snapshot | None) -> TurnResult: ...

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]: ...


class DialogueHandler(Protocol):
    """A handler that only answers (no tracker): wrapped into a ``TurnHandler``."""

    async def handle(self, message: Message) -> list[Reply]: ...


class RepliesOnly:
    """A ``TurnHandler`` around a handler that only answers (``handle(message) -> replies``)."""

    store = None
    probe = None

    def __init__(self, inner: DialogueHandler) -> None:
        self.inner = inner

    async def decide(self, message: Message, snapshot: Snapshot | None) -> TurnResult:
        return TurnResult(message=message, replies=list(await self.inner.handle(message)))

    async def after_commit(self, result: TurnResult, committed: Committed) -> list[Reply]:
        return []


def as_turn_handler(handler: Any) -> TurnHandler:
    return handler if hasattr(handler, "decide") else RepliesOnly(handler)


class TransientError(Exception):
    """Raised by the handler when a dependency (the core) is down: retry later."""
