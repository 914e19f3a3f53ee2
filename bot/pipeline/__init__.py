"""The message path: store a message, run its turn (load → decide → commit), hand back the replies.

``Pipeline`` (``bot.pipeline.pipeline``) is composed of one part per concern: the inbound queue
(``inbound``), the inline answers a channel waits for (``inline``), one conversation at a time
(``drain``), and the commit of a decided turn (``commit``). ``TurnHandler`` (``handler``) is
what it runs for each message.
"""

from bot.pipeline.handler import DialogueHandler, RepliesOnly, TransientError, TurnHandler, as_turn_handler
from bot.pipeline.pipeline import Pipeline
from bot.pipeline.shared import ConversationLocks

__all__ = ["ConversationLocks", "DialogueHandler", "Pipeline", "RepliesOnly", "TransientError", "TurnHandler",
           "as_turn_handler"]
