"""Customer text: every sentence a customer reads is a response in ``training_data/domain.yml``.

``TextService`` renders them (``Domain.render``: the ``language`` condition, an optional
``channel`` variant) with the brand settings as placeholders every response may use::

    {brand}        POWERBOT_BRAND_NAME         国家电网
    {brand_short}  POWERBOT_BRAND_SHORT_NAME   国网
    {brand_en}     POWERBOT_BRAND_NAME_EN      State Grid
    {service}      POWERBOT_SERVICE_NAME       国网电力客服
    {assistant}    POWERBOT_ASSISTANT_NAME     小e
    {hotline}      POWERBOT_HOTLINE            95598
    {app}          POWERBOT_APP_NAME           网上国网

One service is built by the app wiring and handed to the pipeline, the rate limiter, the
channels (``ChannelContext.texts``), notifications and the console. A text without values is
rendered once and kept, so the hot path pays a dictionary lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.dialogue.domain import Domain, Rendered

if TYPE_CHECKING:  # pragma: no cover
    from bot.settings import Settings


def brand_placeholders(settings: Settings | None) -> dict[str, str]:
    if settings is None:
        from bot.settings import Settings

        settings = Settings()
    return {
        "brand": settings.brand_name,
        "brand_short": settings.brand_short_name,
        "brand_en": settings.brand_name_en,
        "service": settings.service_name,
        "assistant": settings.assistant_name,
        "hotline": settings.hotline,
        "app": settings.app_name,
    }


class TextService:
    """Named customer texts from ``domain.yml``, with the brand filled in."""

    def __init__(self, settings: Settings | None = None, *, domain: Domain | None = None) -> None:
        self.placeholders = brand_placeholders(settings)
        if domain is None:
            domain = Domain(placeholders=self.placeholders)
        else:
            domain.placeholders = {**self.placeholders, **domain.placeholders}
        self.domain = domain
        self._fixed: dict[tuple[str, str, str], str] = {}

    def has(self, name: str) -> bool:
        return self.domain.has(name)

    def render(self, name: str, /, *, lang: str = "zh", channel: str = "", seed: str = "", **values: Any) -> Rendered:
        return self.domain.render(name, lang=_lang(lang), channel=channel, seed=seed, **values)

    def text(self, name: str, /, *, lang: str = "zh", channel: str = "", **values: Any) -> str:
        """The response's text; without values it is rendered once and then looked up."""
        if values:
            return self.domain.render(name, lang=_lang(lang), channel=channel, **values).text
        key = (name, lang, channel)
        got = self._fixed.get(key)
        if got is None:
            got = self._fixed[key] = self.domain.render(name, lang=_lang(lang), channel=channel).text
        return got

    def by_lang(self, name: str, /, *, channel: str = "") -> dict[str, str]:
        """``{"zh": ..., "en": ...}`` for a text without values."""
        return {lang: self.text(name, lang=lang, channel=channel) for lang in ("zh", "en")}


def _lang(lang: str | None) -> str:
    return "en" if lang == "en" else "zh"
