"""Process-wide configuration from ``POWERBOT_*`` environment variables.

One settings class serves the gateway, the core and the CLI so an operator has a single
table to read (README). Unknown ``POWERBOT_`` variables are refused at start: a typo in a
deployment manifest must not silently fall back to a default.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings_parts import CORE_TOKEN_FILE, core_token, log_level

ENV_PREFIX = "POWERBOT_"

# Variables read by the test suite or CI, not by the service itself.
_TEST_ONLY = {"POWERBOT_TEST_DATABASE_URL", "POWERBOT_TEST_REDIS_URL"}


class SettingsError(RuntimeError):
    """Raised when the environment holds an unknown or invalid POWERBOT_ variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    # --- network -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    core_host: str = "127.0.0.1"
    core_port: int = Field(8081, ge=1, le=65535)
    core_url: str | None = None  # base URL of the core API; default derived from core_host/port
    public_url: str | None = None  # how customers/platforms reach the gateway (links in messages)

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path("./var")
    database_url: str | None = None  # bot store; default sqlite under data_dir
    core_database_url: str | None = None  # core store; default sqlite under data_dir
    db_pool_size: int = Field(16, ge=1, le=200)
    db_max_overflow: int = Field(0, ge=0, le=200)
    redis_url: str | None = None

    # --- NLU -----------------------------------------------------------------------------
    nlu_data_dir: Path = Path("training_data")
    nlu_model_dir: Path = Path("models")
    nlu_fallback_threshold: float | None = Field(None, ge=0.0, le=1.0)
    nlu_ambiguity_threshold: float | None = Field(None, ge=0.0, le=1.0)

    # --- dialogue backend: powerbot's own engine, or a Rasa assistant decides each turn ----
    # (bot/rasa/backend.py: Rasa's REST channel, POST {rasa_url}/webhooks/rest/webhook)
    dialogue_backend: Literal["powerbot", "rasa"] = "powerbot"
    rasa_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(?:/\S*)?$")  # base URL of the Rasa server
    rasa_timeout_seconds: float = Field(2.0, gt=0, le=60)  # then the turn is "busy" and retried later

    # --- operations ----------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = False
    core_timeout_seconds: float = Field(5.0, gt=0, le=120)
    # Shared bearer token between gateway and core: the core API holds bills, phone numbers and
    # addresses, so when set the core refuses every /api/v1 call without it (health and the
    # OpenAPI document stay open). `powerbot run` makes one per run when unset.
    core_api_token: SecretStr | None = None
    # extra years of public holidays / adjusted working days for SLA working days (YAML, the
    # format in core/work_calendar.py; the published years come from chinese-calendar)
    work_calendar_file: Path | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # hostile traffic (bot/ratelimit.py); counters in Redis when redis_url is set; 0 = off
    rate_limit_per_sender_per_minute: int = Field(30, ge=0)  # per (channel, sender), every channel
    rate_limit_per_ip_per_minute: int = Field(600, ge=0)  # per client IP, on rate_limit_ip_paths only
    rate_limit_ip_paths: str = "/webhooks/,/console/login"  # comma-separated path prefixes (POST)
    rate_limit_trust_forwarded: bool = False  # behind a reverse proxy: client IP from X-Forwarded-For
    demo_seed: bool = True  # `powerbot run` seeds demo data into an empty core store

    # --- brand: placeholders of every customer text in training_data/domain.yml ----------
    # ({brand}, {brand_short}, {brand_en}, {service}, {assistant}, {hotline}, {app}); a utility
    # that is not State Grid sets these and changes no installed file.
    brand_name: str = "国家电网"  # {brand}
    brand_short_name: str = "国网"  # {brand_short}
    brand_name_en: str = "State Grid"  # {brand_en}
    service_name: str = "国网电力客服"  # {service}: the official-account / life-account name
    assistant_name: str = "小e"  # {assistant}: the virtual assistant's name
    hotline: str = "95598"  # {hotline}: the customer-service telephone number
    app_name: str = "网上国网"  # {app}: the utility's own customer app
    # the web chat page (/chat): its accent colour (CSS hex) and how long the REST webhook waits
    # for a turn's answer before answering [] (the page then says "busy" and polls for the answer)
    chat_primary_color: str = Field("#00706b", pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
    rest_reply_wait_seconds: float = Field(2.0, ge=0, le=60)

    # --- channels (a channel without its settings is off) -----------------------------
    wechat_appid: str | None = None
    wechat_secret: SecretStr | None = None
    wechat_token: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    wechat_api_base_url: str = "https://api.weixin.qq.com/cgi-bin/"
    wechat_reply_wait_seconds: float = Field(4.0, ge=0, le=4.5)  # passive-reply wait (WeChat deadline 5 s)
    # payments against the demo core through a page on the gateway (payments/sandbox.py): None
    # = on in `powerbot run` with demo data, off everywhere else
    payment_sandbox: bool | None = None
    alipay_appid: str | None = None
    alipay_app_private_key: SecretStr | None = None
    alipay_app_private_key_file: Path | None = None
    alipay_public_key: SecretStr | None = None
    alipay_public_key_file: Path | None = None
    alipay_gateway_url: str = "https://openapi.alipay.com/gateway.do"
    sms_api_base_url: str | None = None
    sms_api_key: str | None = None
    sms_secret: SecretStr | None = None
    sms_sender: str = "95598"
    smtp_host: str = "127.0.0.1"
    smtp_port: int | None = None  # inbound SMTP server port; None = email inbound off
    smtp_max_message_bytes: int = 5_242_880
    smtp_relay_host: str | None = None
    smtp_relay_port: int = 25
    smtp_relay_starttls: bool = False
    smtp_relay_username: str | None = None
    smtp_relay_password: SecretStr | None = None
    mail_from: str = "service@powerbot.local"
    sms_inbound_per_minute: int = Field(10, ge=0)  # per number; 0 = unlimited
    sms_outbound_per_minute: int = Field(30, ge=0)  # per number; 0 = unlimited
    sms_timeout_seconds: float = Field(10.0, gt=0, le=120)
    smtp_relay_timeout_seconds: float = Field(30.0, gt=0, le=300)

    # --- notifications and outbox (bot/notify) -------------------------------------------
    notify_enabled: bool = True  # run the event-feed producer in the gateway
    notify_poll_seconds: float = Field(2.0, gt=0, le=3600)
    notify_start_from: Literal["latest", "beginning"] = "latest"  # first start: skip or replay old events
    notify_quiet_hours: str = "22:00-08:00"  # local time; "" = no quiet hours
    notify_quiet_channels: str = "sms"  # comma-separated channels whose non-urgent notices wait
    notify_timezone: str = "Asia/Shanghai"
    notify_wechat_template_id: str | None = None  # WeChat template for notices outside the 48-h window
    notify_bill_due_days: int = Field(3, ge=0, le=60)  # remind unpaid bills due within N days; 0 = off
    operator_token: SecretStr | None = None  # bearer token of /api/v1/notify/*; unset = API off
    outbox_max_attempts: int = Field(8, ge=1, le=100)  # then the row is dead-lettered
    outbox_batch_size: int = Field(100, ge=1, le=5000)
    outbox_concurrency: int = Field(50, ge=1, le=2000)
    outbox_pipelines: int = Field(1, ge=1, le=16)  # concurrent claim loops per process
    sms_batch_size: int = Field(100, ge=1, le=200)  # notices per request to the provider's batch endpoint
    outbox_sending_lease_seconds: float = Field(120.0, gt=0)  # 'sending' rows of a crashed process retried after

    # --- retention (bot/retention.py); 0 = keep forever ------------------------------------
    retention_days: int = Field(30, ge=0)  # finished inbound messages and outbox rows
    history_retention_days: int = Field(365, ge=0)  # dialogue events (conversation history)
    retention_interval_seconds: float = Field(3600.0, gt=0)  # how often the gateway purges

    # --- console -------------------------------------------------------------------------
    session_secret: SecretStr | None = None
    cookie_secure: bool = False

    @model_validator(mode="after")
    def _rasa_needs_url(self) -> "Settings":
        if self.dialogue_backend == "rasa" and not self.rasa_url:
            raise ValueError("POWERBOT_RASA_URL is required when POWERBOT_DIALOGUE_BACKEND=rasa")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        return log_level(v)

    # --- derived values ------------------------------------------------------------------
    @property
    def bot_db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'bot.db').resolve()}"

    @property
    def core_db_url(self) -> str:
        return self.core_database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'core.db').resolve()}"

    @property
    def core_base_url(self) -> str:
        return (self.core_url or f"http://{self.core_host}:{self.core_port}").rstrip("/")

    @property
    def core_token_file(self) -> Path:
        return self.data_dir / CORE_TOKEN_FILE

    def core_token(self) -> str | None:
        """The core API token: POWERBOT_CORE_API_TOKEN, else the one `powerbot run` keeps under
        the data directory (so the CLI and a restarted run talk to the same embedded core)."""
        return core_token(self.core_api_token, self.data_dir)

    def ensure_core_token(self) -> str:
        """The token, created (random, file mode 0600) when none is configured yet."""
        token = self.core_token()
        if token is None:
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            token = secrets.token_urlsafe(32)
            fd = os.open(self.core_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(token)
        return token

    def safe_dump(self) -> dict[str, object]:
        """Settings for logs: secrets masked, database passwords removed."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "***" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value and "@" in value:
                scheme, rest = value.split("://", 1)
                out[name] = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
            else:
                out[name] = value
        return out


def _check_unknown(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | _TEST_ONLY
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise SettingsError(
            "unknown setting(s): " + ", ".join(unknown) + " — see the settings table in README.md"
        )


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, failing with the variable's name on bad input."""
    _check_unknown(dict(os.environ))
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{ENV_PREFIX}{field.upper()}: {msg}" if field else msg)  # no field: a rule across settings
        raise SettingsError("invalid setting(s): " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
