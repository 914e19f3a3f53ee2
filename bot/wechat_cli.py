"""``powerbot wechat ...``: operator commands for the WeChat official account."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

MENU_TYPES = {"click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
              "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "view_limited"}


class MenuError(ValueError):
    pass


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def validate_menu(doc: Any) -> dict[str, Any]:
    """Check a menu against WeChat's rules (3 top buttons, 5 sub buttons, name lengths, keys)."""
    if isinstance(doc, list):
        doc = {"button": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("button"), list):
        raise MenuError("the file must contain a 'button' list")
    top = doc["button"]
    if not 1 <= len(top) <= 3:
        raise MenuError("a menu has 1 to 3 top-level buttons")

    def check(b: Any, where: str, max_name: int) -> None:
        if not isinstance(b, dict) or not isinstance(b.get("name"), str) or not b["name"].strip():
            raise MenuError(f"{where}: every button needs a name")
        if _nbytes(b["name"]) > max_name:
            raise MenuError(f"{where}: name '{b['name']}' longer than {max_name} bytes")
        kind = b.get("type")
        if kind not in MENU_TYPES:
            raise MenuError(f"{where}: unknown type {kind!r}")
        if kind == "view" and not str(b.get("url", "")).startswith(("http://", "https://")):
            raise MenuError(f"{where}: a view button needs an http(s) url")
        if kind not in ("view", "miniprogram", "media_id", "view_limited"):
            key = b.get("key")
            if not isinstance(key, str) or not key or _nbytes(key) > 128:
                raise MenuError(f"{where}: a {kind} button needs a key of at most 128 bytes")

    for i, b in enumerate(top, 1):
        where = f"button {i}"
        if isinstance(b, dict) and "sub_button" in b:
            subs = b["sub_button"]
            if not isinstance(b.get("name"), str) or _nbytes(b["name"]) > 16:
                raise MenuError(f"{where}: name missing or longer than 16 bytes")
            if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
                raise MenuError(f"{where}: 1 to 5 sub buttons")
            for j, s in enumerate(subs, 1):
                check(s, f"{where}.{j}", 60)
        else:
            check(b, where, 16)
    return {"button": top}


async def _create_menu(menu: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    from bot.db import make_engine, make_sessionmaker
    from bot.settings import get_settings
    from channels.wechat_api import WeChatAPI
    from channels.wechat_store import TokenCache

    s = get_settings()
    if not s.wechat_appid or not s.wechat_secret:
        raise click.ClickException("POWERBOT_WECHAT_APPID and POWERBOT_WECHAT_SECRET are required")
    engine = make_engine(s.bot_db_url)
    try:
        # The token cache the gateway uses, so creating a menu does not invalidate its token.
        cache = TokenCache(None if s.redis_url else make_sessionmaker(engine), s.redis_url)
        async with aiohttp.ClientSession() as http:
            api = WeChatAPI(appid=s.wechat_appid, secret=s.wechat_secret.get_secret_value(),
                            base_url=s.wechat_api_base_url, cache=cache, http=http)
            try:
                return await api.create_menu(menu)
            finally:
                await cache.close()
    finally:
        await engine.dispose()


@click.group()
def wechat() -> None:
    """WeChat official account operations."""


@wechat.command("menu")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and print the menu JSON without calling WeChat.")
def menu(file: Path, dry_run: bool) -> None:
    """Create the custom menu from FILE.yml (WeChat's menu/create)."""
    import yaml

    from channels.wechat_api import WeChatAPIError

    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        m = validate_menu(doc)
    except (yaml.YAMLError, MenuError) as exc:
        raise click.ClickException(f"invalid menu: {exc}") from None
    if dry_run:
        click.echo(json.dumps(m, ensure_ascii=False, indent=2))
        return
    try:
        asyncio.run(_create_menu(m))
    except WeChatAPIError as exc:
        raise click.ClickException(f"WeChat refused the menu: errcode={exc.errcode} {exc.errmsg}") from None
    n = sum(len(b.get("sub_button", [])) or 1 for b in m["button"])
    click.echo(f"menu created: {len(m['button'])} top-level buttons, {n} actions")
