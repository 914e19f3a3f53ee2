"""``powerbot shell``: chat with a running gateway from the terminal (REST channel)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import click


def _post(url: str, sender: str, text: str, timeout: float) -> list[dict]:
    req = urllib.request.Request(
        url.rstrip("/") + "/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - operator-given URL
        return json.loads(r.read().decode("utf-8"))


def _poll(url: str, sender: str, after: int, timeout: float) -> tuple[list[dict], int]:
    """Replies that arrived later (an agent's, an answer that was not ready in time)."""
    query = urllib.parse.urlencode({"sender": sender, "after": after})
    with urllib.request.urlopen(url.rstrip("/") + "/webhooks/rest/messages?" + query, timeout=timeout) as r:  # noqa: S310
        body = json.loads(r.read().decode("utf-8"))
    return body.get("messages") or [], int(body.get("cursor") or after)


def default_url() -> str:
    """Where the gateway of these settings answers: POWERBOT_PUBLIC_URL when set, else
    POWERBOT_HOST:POWERBOT_PORT (a wildcard host is reached on this machine's loopback)."""
    from bot.settings import get_settings

    s = get_settings()
    if s.public_url:
        return s.public_url.rstrip("/")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(s.host, s.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{s.port}"


@click.command()
@click.option("--url", default=None,
              help="Gateway base URL [default: POWERBOT_PUBLIC_URL, else http://POWERBOT_HOST:POWERBOT_PORT].")
@click.option("--sender", default=None, help="Sender id (default: a fresh one per session).")
@click.option("--timeout", default=40.0, show_default=True, help="Seconds to wait for an answer.")
def shell(url: str | None, sender: str | None, timeout: float) -> None:
    """Chat with the bot in the terminal against the running services. Ctrl-D or /exit quits."""
    url = url or default_url()
    sender = sender or f"shell-{uuid.uuid4().hex[:8]}"
    click.echo(f"powerbot shell — {url} as {sender}. Type a message; /exit to quit. Buttons: type the number.")
    buttons: list[dict] = []
    cursor = 0

    def show(replies: list[dict]) -> None:
        for r in replies:
            who = (r.get("sender") or {}).get("name") if (r.get("sender") or {}).get("role") == "agent" else None
            click.echo(click.style(f"{who or '95598'}> ", fg="green") + r.get("text", ""))
            custom = r.get("custom") or {}
            if custom.get("pay_url"):
                click.echo(f"        pay: {custom['pay_url']}")
            for b in r.get("buttons") or []:
                buttons.append(b)
                click.echo(f"        [{len(buttons)}] {b['title']}")

    def catch_up(wait: float) -> bool:
        """Show what arrived since the last look; with ``wait``, keep looking that long."""
        nonlocal cursor
        deadline = time.monotonic() + wait
        while True:
            try:
                later, cursor = _poll(url, sender, cursor, timeout)
            except (urllib.error.URLError, OSError, ValueError):
                return False
            if later:
                show(later)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)

    while True:
        catch_up(0)
        try:
            text = click.prompt("你", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        text = text.strip()
        if text in ("/exit", "/quit"):
            return
        if not text:
            continue
        if text.isdigit() and buttons and 1 <= int(text) <= len(buttons) and len(text) <= 2:
            text = buttons[int(text) - 1]["payload"]
        try:
            replies = _post(url, sender, text, timeout)
        except (urllib.error.URLError, OSError) as exc:
            click.echo(click.style(f"[gateway unreachable: {exc}]", fg="red"))
            continue
        buttons = []
        show(replies)
        if not replies and not catch_up(min(timeout, 30.0)):
            click.echo(click.style("95598> ", fg="green") + "(no reply yet — an agent or a delayed answer will follow)")
