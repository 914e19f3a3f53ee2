"""Dialogue engine: tracker store, rules + forms policy, identity, handoff.

``DialogueEngine.handle(message) -> list[Reply]`` is what the pipeline calls.
"""

from bot.dialogue.engine import DialogueEngine

__all__ = ["DialogueEngine"]
