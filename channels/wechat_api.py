"""The few WeChat server APIs the bot calls, over the app's aiohttp session.

wechatpy's ``WeChatClient`` is synchronous (``requests``) and hard-codes the token URL, so
the calls are made here with aiohttp: token, customer-service message, template message and
custom menu. The access token is cached across processes (``TokenCache``), refreshed a few
minutes before it expires and once more when WeChat says it is invalid (40001/40014/42001).
Secrets (app secret, token) never reach a log line: URLs carrying them are not logged.
Every failed call, the token's included, is counted in ``powerbot_platform_api_errors_total``
(platform ``wechat``, the API's path, the errcode or ``unreachable``/``http_<status>``/``bad_answer``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from channels.wechat_store import TokenCache
from common.clock import utcnow
from common.metrics import platform_api_error

log = logging.getLogger("powerbot.channels.wechat")

TOKEN_ERRORS = {40001, 40014, 42001}
REFRESH_MARGIN = timedelta(minutes=5)
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)


class WeChatAPIError(Exception):
    """WeChat answered with a non-zero errcode (or could not be reached: errcode None)."""

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"wechat errcode={errcode} errmsg={errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatAPI:
    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        base_url: str,
        cache: TokenCache,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.cache = cache
        self.http = http
        self._key = f"wechat:access_token:{appid}"
        self._local: tuple[str, datetime] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ token
    async def access_token(self, *, force: bool = False) -> str:
        now = utcnow()
        if not force and self._local and self._local[1] - REFRESH_MARGIN > now:
            return self._local[0]
        async with self._lock:
            now = utcnow()
            if not force:
                if self._local and self._local[1] - REFRESH_MARGIN > now:
                    return self._local[0]
                cached = await self.cache.get(self._key)
                if cached and cached[1] - REFRESH_MARGIN > now:
                    self._local = cached
                    return cached[0]
            token, expires_at = await self._fetch_token()
            self._local = (token, expires_at)
            await self.cache.set(self._key, token, expires_at)
            return token

    async def invalidate(self, token: str) -> None:
        if self._local and self._local[0] == token:
            self._local = None
        await self.cache.discard(self._key, token)

    async def _fetch_token(self) -> tuple[str, datetime]:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
        try:
            async with self._session().get(self.base_url + "token", params=params, timeout=HTTP_TIMEOUT) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("wechat token fetch failed: %s", type(exc).__name__)
            platform_api_error("wechat", "token", "unreachable")
            raise WeChatAPIError(None, type(exc).__name__) from None
        except ValueError as exc:
            log.warning("wechat token fetch failed: %s", type(exc).__name__)
            platform_api_error("wechat", "token", "bad_answer")
            raise WeChatAPIError(None, type(exc).__name__) from None
        if not isinstance(data, dict) or "access_token" not in data:
            errcode = data.get("errcode") if isinstance(data, dict) else None
            log.warning("wechat token refused errcode=%s", errcode)
            platform_api_error("wechat", "token", errcode if errcode is not None else "bad_answer")
            raise WeChatAPIError(errcode, str(data.get("errmsg", "")) if isinstance(data, dict) else "bad answer")
        expires_in = int(data.get("expires_in") or 7200)
        log.info("wechat access token refreshed (expires in %ss)", expires_in)
        return str(data["access_token"]), utcnow() + timedelta(seconds=expires_in)

    def _session(self) -> aiohttp.ClientSession:
        if self.http is None or self.http.closed:
            raise WeChatAPIError(None, "no HTTP session")
        return self.http

    # ------------------------------------------------------------------ calls
    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with the access token; refetch the token once if WeChat refuses it."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for attempt in (1, 2):
            token = await self.access_token(force=False)
            try:
                async with self._session().post(
                    self.base_url + path,
                    params={"access_token": token},
                    data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    timeout=HTTP_TIMEOUT,
                ) as resp:
                    if resp.status >= 500:
                        platform_api_error("wechat", path, f"http_{resp.status}")
                        raise WeChatAPIError(None, f"HTTP {resp.status}")
                    data = await resp.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                platform_api_error("wechat", path, "unreachable")
                raise WeChatAPIError(None, type(exc).__name__) from None
            except ValueError as exc:
                platform_api_error("wechat", path, "bad_answer")
                raise WeChatAPIError(None, type(exc).__name__) from None
            if not isinstance(data, dict):
                platform_api_error("wechat", path, "bad_answer")
                raise WeChatAPIError(None, "bad answer")
            try:
                errcode = int(data.get("errcode") or 0)
            except (TypeError, ValueError):
                platform_api_error("wechat", path, "bad_answer")
                raise WeChatAPIError(None, "bad answer") from None
            if errcode:
                platform_api_error("wechat", path, errcode)
            if errcode in TOKEN_ERRORS and attempt == 1:
                log.info("wechat refused the access token (errcode=%s); fetching a new one", errcode)
                await self.invalidate(token)
                continue
            if errcode:
                raise WeChatAPIError(errcode, str(data.get("errmsg", "")))
            return data
        raise WeChatAPIError(None, "unreachable")  # pragma: no cover

    async def send_text(self, openid: str, content: str) -> dict[str, Any]:
        return await self.post(
            "message/custom/send", {"touser": openid, "msgtype": "text", "text": {"content": content}}
        )

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, Any], url: str | None = None
    ) -> dict[str, Any]:
        fields = {k: (v if isinstance(v, dict) else {"value": str(v)}) for k, v in data.items()}
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": fields}
        if url:
            payload["url"] = url
        return await self.post("message/template/send", payload)

    async def create_menu(self, menu: dict[str, Any]) -> dict[str, Any]:
        return await self.post("menu/create", menu)
