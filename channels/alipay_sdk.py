"""python-alipay-sdk glue: key loading, the gateway pin, charset-aware signatures, async calls.

Pinned to python-alipay-sdk 3.4.0: the gateway URL lives in the private ``AliPay._gateway``
(tests point it at loopback) and the SDK's HTTP calls are synchronous (urllib), so they run in
an executor. The SDK signs and verifies UTF-8 only and drops ``sign_type`` before verifying;
the service-window (生活号) gateway signs in the message's own charset (often GBK) with
``sign_type`` kept in the signed string, so that rule is implemented here with the SDK's keys.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig
from Cryptodome.Hash import SHA, SHA256
from Cryptodome.PublicKey import RSA
from Cryptodome.Signature import PKCS1_v1_5

from channels.base import DeliveryError
from common.metrics import platform_api_error

log = logging.getLogger("powerbot.channels.alipay")

SDK_VERSION = "3.4.0"
SUCCESS_CODE = "10000"
# Alipay codes worth retrying: 20000 service unavailable, 20001 token/auth hiccup, 40004 with
# SYSTEM_ERROR sub codes is handled below; everything else is a permanent business failure.
RETRYABLE_CODES = {"20000", "20001", "aop.ACQ.SYSTEM_ERROR"}

UNREACHABLE = "unreachable"  # DeliveryError.code: the gateway gave no answer
BAD_ANSWER = "bad_answer"  # DeliveryError.code: the gateway's answer cannot be read

CHARSETS = {"gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030", "utf-8": "utf-8", "utf8": "utf-8"}


class AlipayKeyError(ValueError):
    """A configured key cannot be read or is not an RSA key (the message never holds the key)."""


def _to_pem(raw: str, *, private: bool) -> str:
    """Accept a PEM or the bare base64 body copied from the Alipay console; return PEM."""
    text = raw.replace("\\n", "\n").strip()
    try:
        if "-----BEGIN" in text:
            key = RSA.import_key(text)
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = RSA.import_key(der)
    except (ValueError, IndexError, TypeError, binascii.Error) as exc:
        raise AlipayKeyError(f"not a valid RSA {'private' if private else 'public'} key ({type(exc).__name__})") from None
    if private and not key.has_private():
        raise AlipayKeyError("the app private key setting holds a public key")
    return (key if private else key.publickey()).export_key("PEM").decode()


def load_key(value: Any, file: Path | None, *, private: bool, what: str) -> str | None:
    """PEM from a SecretStr / string setting or from a file; None when neither is set."""
    raw: str | None = None
    if value is not None:
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        raw = raw or None
    if raw is None and file is not None:
        try:
            raw = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise AlipayKeyError(f"{what}: cannot read key file ({exc.strerror})") from None
    if raw is None:
        return None
    try:
        return _to_pem(raw, private=private)
    except AlipayKeyError as exc:
        raise AlipayKeyError(f"{what}: {exc}") from None


def make_client(appid: str, app_private_pem: str, alipay_public_pem: str, gateway_url: str,
                *, notify_url: str | None = None, timeout: float = 10.0) -> AliPay:
    import importlib.metadata

    version = importlib.metadata.version("python-alipay-sdk")
    if version != SDK_VERSION:  # the gateway pin below touches a private attribute
        log.warning("python-alipay-sdk %s found, %s expected; gateway pin may not apply", version, SDK_VERSION)
    client = AliPay(
        appid=appid,
        app_notify_url=notify_url,
        app_private_key_string=app_private_pem,
        alipay_public_key_string=alipay_public_pem,
        sign_type="RSA2",
        debug=False,
        config=AliPayConfig(timeout=timeout),
    )
    if not hasattr(client, "_gateway"):
        raise RuntimeError("python-alipay-sdk has no _gateway attribute; pin python-alipay-sdk==3.4.0")
    client._gateway = gateway_url  # noqa: SLF001 - documented pin, see module docstring
    return client


def gateway_of(client: AliPay) -> str:
    return client._gateway  # noqa: SLF001


def app_public_key_b64(client: AliPay) -> str:
    """Our app public key as the bare base64 the Alipay console shows (verifygw answer)."""
    der = client.app_private_key.publickey().export_key("DER")
    return base64.b64encode(der).decode()


# --- charset-aware signatures (service window rule) ---------------------------------------
def normalise_charset(charset: str | None, default: str = "gbk") -> str:
    key = (charset or default).strip().lower()
    if key not in CHARSETS:
        raise ValueError("unsupported charset")
    return CHARSETS[key]


def sign_content(params: Mapping[str, str]) -> str:
    """Alipay's ``getSignCheckContentV2``: every non-empty param but ``sign``, sorted, k=v&..."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v not in (None, ""))


def _digest(data: bytes, sign_type: str):  # type: ignore[no-untyped-def]
    if sign_type == "RSA2":
        return SHA256.new(data)
    if sign_type == "RSA":
        return SHA.new(data)
    raise ValueError("unsupported sign_type")


def verify_bytes(client: AliPay, data: bytes, signature: str, sign_type: str = "RSA2") -> bool:
    try:
        sig = base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        return bool(PKCS1_v1_5.new(client.alipay_public_key).verify(_digest(data, sign_type), sig))
    except (ValueError, TypeError):
        return False


def sign_bytes(client: AliPay, data: bytes, sign_type: str = "RSA2") -> str:
    signature = PKCS1_v1_5.new(client.app_private_key).sign(_digest(data, sign_type))
    return base64.b64encode(signature).decode()


# --- gateway calls -------------------------------------------------------------------------
def api_name(func_name: str, args: tuple[Any, ...]) -> str:
    """The Alipay method a call invokes: ``server_api``'s first argument, else the SDK method's
    name read back (``api_alipay_trade_query`` → ``alipay.trade.query``)."""
    if func_name == "server_api" and args and isinstance(args[0], str):
        return args[0]
    return func_name.removeprefix("api_").replace("_", ".")


async def call(client: AliPay, func_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one synchronous SDK gateway call in the executor; map failures to DeliveryError.

    Returns the verified response body (the ``*_response`` object) when ``code == 10000``.
    Every failure is a ``DeliveryError``: ``code`` is ``UNREACHABLE`` (no answer: network,
    timeout, HTTP error), ``BAD_ANSWER`` (an answer that cannot be read), ``bad_sign`` (not
    signed by Alipay), or Alipay's own (sub) code. Each one is counted in
    ``powerbot_platform_api_errors_total`` (platform ``alipay``, the method, that code), whoever
    made the call (the outbox's send, a payment's precreate or query).
    """
    try:
        return await _call(client, func_name, *args, **kwargs)
    except DeliveryError as exc:
        platform_api_error("alipay", api_name(func_name, args), exc.code or "error")
        raise


async def _call(client: AliPay, func_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    func = getattr(client, func_name)
    try:
        result = await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))
    except AliPayValidationError:
        # The answer's signature did not verify: not from Alipay, or a proxy mangled it.
        raise DeliveryError("alipay answer signature invalid", retryable=True, code="bad_sign") from None
    except AliPayException as exc:
        text = str(exc)
        code = "error_response"
        for c in ("40001", "40002", "40003", "40004", "40006", "20000", "20001"):
            if f'"{c}"' in text:
                code = c
                break
        raise DeliveryError(f"alipay error code={code}", retryable=code in RETRYABLE_CODES, code=code) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise DeliveryError(f"alipay gateway unreachable ({type(exc).__name__})", retryable=True,
                            code=UNREACHABLE) from None
    except Exception as exc:  # noqa: BLE001
        # JSON garbage, or an answer the SDK trips over (no response object, a list, a sign that
        # is not a string: AttributeError, KeyError, TypeError...): never an unmapped error
        raise DeliveryError(f"alipay gateway answer unreadable ({type(exc).__name__})", retryable=True,
                            code=BAD_ANSWER) from None
    if not isinstance(result, dict):
        raise DeliveryError("alipay gateway answer unreadable", retryable=True, code=BAD_ANSWER)
    code = str(result.get("code", ""))
    if code != SUCCESS_CODE:
        sub = str(result.get("sub_code", ""))
        retryable = code in RETRYABLE_CODES or sub.endswith("SYSTEM_ERROR")
        raise DeliveryError(f"alipay business failure code={code} sub_code={sub}", retryable=retryable, code=sub or code)
    return result
