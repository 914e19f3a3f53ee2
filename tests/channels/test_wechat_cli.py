"""`powerbot wechat menu FILE.yml` against the local WeChat API (a real subprocess)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.migrate import BOT_MIGRATIONS, upgrade
from bot.wechat_cli import MenuError, validate_menu
from wechat_platform import APPID, SECRET, run_wechat_api

ROOT = Path(__file__).resolve().parents[2]
MENU = ROOT / "channels" / "wechat_menu.yml"


async def powerbot(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


async def test_menu_created_with_cached_token(tmp_path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    await upgrade(db, BOT_MIGRATIONS)
    async with run_wechat_api() as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_")}
        env.update(POWERBOT_WECHAT_APPID=APPID, POWERBOT_WECHAT_SECRET=SECRET, POWERBOT_WECHAT_TOKEN="t",
                   POWERBOT_WECHAT_API_BASE_URL=api.url, POWERBOT_DATABASE_URL=db, POWERBOT_DATA_DIR=str(tmp_path))
        code, out = await powerbot("wechat", "menu", str(MENU), env=env)
        assert code == 0, out
        assert "menu created" in out
        assert len(api.menus) == 1
        top = api.menus[0]["button"]
        assert [b["name"] for b in top] == ["电费服务", "停电报修", "更多"]
        keys = {s.get("key") for b in top for s in b["sub_button"]}
        assert {"BILL", "OUTAGE", "REPAIR", "HUMAN"} <= keys
        assert SECRET not in out
        # The second run reuses the token cached in the bot store.
        code, out = await powerbot("wechat", "menu", str(MENU), env=env)
        assert code == 0, out
        assert api.token_requests == 1 and len(api.menus) == 2

        bad = tmp_path / "bad.yml"
        bad.write_text("button:\n  - {type: click, name: 查电费}\n", encoding="utf-8")
        code, out = await powerbot("wechat", "menu", str(bad), env=env)
        assert code != 0 and "key" in out
        assert len(api.menus) == 2


@pytest.mark.parametrize(
    "doc",
    [
        {"button": []},
        {"button": [{"type": "click", "name": "a", "key": "A"}] * 4},
        {"button": [{"name": "x", "sub_button": [{"type": "click", "name": "a", "key": "A"}] * 6}]},
        {"button": [{"type": "view", "name": "a", "url": "javascript:alert(1)"}]},
        {"button": [{"type": "teleport", "name": "a", "key": "A"}]},
        {"button": [{"type": "click", "name": "名字太长了超过十六字节", "key": "A"}]},
        "not a menu",
    ],
)
def test_menu_validation(doc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MenuError):
        validate_menu(doc)


def test_channel_on_only_with_settings() -> None:
    from bot.settings import Settings
    from bot.texts import TextService
    from channels.base import ChannelContext
    from channels.wechat import WeChatChannel, from_context

    def ctx(**kw):  # type: ignore[no-untyped-def]
        s = Settings(**kw)
        return ChannelContext(settings=s, processor=None, sessionmaker=None, http=None, core=None,  # type: ignore[arg-type]
                              texts=TextService(s))

    assert from_context(ctx()) is None
    assert from_context(ctx(wechat_appid=APPID)) is None
    assert from_context(ctx(wechat_token="t")) is None
    ch = from_context(ctx(wechat_appid=APPID, wechat_token="t"))
    assert isinstance(ch, WeChatChannel)
    assert ch.readiness() == {"on": True, "mode": "plaintext", "outbound": False}
    from wechat_platform import AES_KEY

    safe = from_context(ctx(wechat_appid=APPID, wechat_token="t", wechat_aes_key=AES_KEY, wechat_secret=SECRET))
    assert safe.readiness() == {"on": True, "mode": "safe", "outbound": True}
