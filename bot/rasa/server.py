"""The action server a Rasa assistant calls (``powerbot rasa actions``): rasa-sdk's own server
(``rasa_sdk.endpoint.create_app``: ``POST /webhook``, ``GET /actions``, ``GET /health``) with
powerbot's actions registered one by one — the list is explicit, so what the server answers for
is what ``bot.rasa.actions`` and ``bot.rasa.validation`` say, nothing else that happens to be
imported.

The actions reach the core through one ``CoreClient`` (``bot.rasa.base.CORE``) configured from
powerbot's settings (``POWERBOT_CORE_URL``, ``POWERBOT_CORE_TIMEOUT_SECONDS``, the core token),
opened on the server's loop and closed when the server stops.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor

from bot.rasa import actions, validation
from bot.rasa.base import CORE
from bot.settings import Settings

DEFAULT_PORT = 5055  # Rasa's default action endpoint: http://localhost:5055/webhook


def executor() -> ActionExecutor:
    ex = ActionExecutor()
    for action in [*actions.registered(), *actions.asks_again(), *validation.registered()]:
        ex.register_action(action)
    return ex


def action_names() -> list[str]:
    return sorted(executor().actions)


async def _close_core(_app: Any, _loop: Any) -> None:
    await CORE.close()


def create_action_app(settings: Settings) -> Any:
    """rasa-sdk's Sanic app serving powerbot's actions against the core of ``settings``."""
    CORE.configure(settings.core_base_url, timeout=settings.core_timeout_seconds, token=settings.core_token())
    app = create_app(executor(), cors_origins="")
    app.register_listener(_close_core, "after_server_stop")
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    app = create_action_app(settings)
    app.run(host=host, port=port, workers=1, access_log=False, single_process=True)
