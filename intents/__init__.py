"""powerbot NLU: Rasa-format data, intent classification, entity extraction, fallback."""

from .model import FALLBACK, Interpreter, load_or_train

__all__ = ["FALLBACK", "Interpreter", "load_or_train"]
