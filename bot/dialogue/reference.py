"""The core's reference data, kept a short while: tariff tables and the list of service halls.

They are the same for every customer and change with a tariff decision or a hall opening, not
per message, so a busy bot need not ask the core for them on every turn. Availability
(appointment slots), bills, accounts and work orders are never cached.

Expects of the class it is mixed into: ``self._reference`` (a dict, set up by the engine).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

REFERENCE_TTL = 60.0  # seconds a tariff table / hall list of the core is reused


class ReferenceData:
    """``reference(kind, key, fetch)`` (mixed into ``DialogueEngine``)."""

    _reference: dict[tuple[str, Any], tuple[float, Any]]

    async def reference(self, kind: str, key: Any, fetch: Callable[..., Awaitable[Any]]) -> Any:
        """``fetch(key)`` (or ``fetch()`` for no key), reused for ``REFERENCE_TTL`` seconds."""
        now = time.monotonic()
        hit = self._reference.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await (fetch(key) if key is not None else fetch())
        if len(self._reference) > 1000:
            self._reference.clear()
        self._reference[(kind, key)] = (now + REFERENCE_TTL, value)
        return value
