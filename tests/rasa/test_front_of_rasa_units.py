"""The Rasa backend's parts on their own: Rasa's answer read per channel, a typed button title
read back, the REST client's failures (all of them the pipeline's "busy, retry later"), and the
settings that choose the backend."""

from __future__ import annotations

import aiohttp
import pytest

from bot.app import default_handler_factory, handler_factory_for
from bot.pipeline import TransientError
from bot.rasa.backend import RasaRestClient, RasaUnavailable
from bot.rasa.replies import chosen_payload, offered_buttons, read_answer
from bot.settings import Settings, SettingsError, load_settings
from channels.base import Message
from rasa_rest_server import collect, run_fake_rasa

URL = "https://rasa.example.com/a.png"


def msg(channel: str = "rest", text: str = "x") -> Message:
    return Message(channel=channel, sender_id="s-1", text=text, message_id="m-1")


def test_the_fake_collects_like_rasas_collecting_output_channel() -> None:
    out = collect("u", {"text": "a\n\nb", "custom": {"k": 1}, "image": URL})
    assert out == [{"recipient_id": "u", "text": "a"}, {"recipient_id": "u", "text": "b"},
                   {"recipient_id": "u", "custom": {"k": 1}}, {"recipient_id": "u", "image": URL}]
    assert collect("u", {"text": "a\n\nb", "buttons": [{"title": "t", "payload": "/p"}]}) == [
        {"recipient_id": "u", "text": "a\n\nb", "buttons": [{"title": "t", "payload": "/p"}]}]


def test_rasa_messages_become_replies_per_channel() -> None:
    rasa = [
        {"recipient_id": "rest:s-1", "text": "请选择", "buttons": [{"title": "是", "payload": "/affirm"},
                                                                    {"title": "", "payload": "/x"}, "junk"]},
        {"recipient_id": "rest:s-1", "image": URL},
        {"recipient_id": "rest:s-1", "custom": {"card": {"a": 1}, "template_id": "T1", "sender": {"role": "agent"}}},
        {"recipient_id": "rest:s-1", "custom": {"text": "看这里", "url": "https://example.com/x"}},
        {"recipient_id": "rest:s-1", "attachment": {"type": "file", "payload": {"src": "https://example.com/f.pdf"}}},
        {"recipient_id": "rest:s-1", "text": 42},  # not a text: nothing to say
    ]
    web = read_answer(rasa, msg("rest"))
    assert web.handoff is None
    assert [(r.text, [b.payload for b in r.buttons]) for r in web.replies] == [
        ("请选择", ["/affirm"]), (URL, []), ("", []), ("看这里", []), ("https://example.com/f.pdf", [])]
    assert web.replies[1].metadata == {"image": URL}
    # custom keys a channel acts on are dropped; the rest passes to the REST client
    assert web.replies[2].metadata == {"card": {"a": 1}}
    assert web.replies[3].metadata == {"url": "https://example.com/x"}
    assert all(r.recipient_id == "s-1" and r.channel == "rest" for r in web.replies)

    sms = read_answer(rasa, msg("sms"))
    # a text channel: the links are the text, a custom payload only with something to show
    assert [r.text for r in sms.replies] == ["请选择", URL, "看这里", "https://example.com/f.pdf"]
    assert all(not r.metadata.get("image") and "template_id" not in r.metadata for r in sms.replies)
    assert offered_buttons(sms) == [["是", "/affirm"]]


def test_handoff_convention() -> None:
    rasa = [{"recipient_id": "r", "custom": {"handoff": True, "reason": "hazard", "priority": "emergency",
                                             "summary": "电线落地"}}]
    answer = read_answer(rasa, msg("wechat"))
    assert answer.handoff is not None and answer.handoff.as_tuple() == ("hazard", "emergency", "电线落地")
    assert answer.replies == []  # the convention itself is not shown
    odd = read_answer([{"recipient_id": "r", "custom": {"handoff": 1, "reason": "bored", "priority": "asap",
                                                        "note": "kept"}}], msg("rest"))
    assert odd.handoff is not None and odd.handoff.as_tuple() == ("request_human", "normal", None)
    assert [r.metadata for r in odd.replies] == [{"note": "kept"}]
    assert read_answer([{"recipient_id": "r", "custom": {"handoff": False}}], msg("rest")).handoff is None


def test_a_typed_title_is_read_back_as_the_payload() -> None:
    offered = [["查询电费", "/bill_query"], ["No thanks", "/deny"]]
    assert chosen_payload("查询电费", offered) == "/bill_query"
    assert chosen_payload(" · 查询电费。", offered) == "/bill_query"
    assert chosen_payload("no thanks!", offered) == "/deny"
    assert chosen_payload("/deny", offered) == "/deny"  # the web chat sends the payload itself
    assert chosen_payload("查询电费和电量", offered) is None
    assert chosen_payload("查询电费", []) is None and chosen_payload("查询电费", None) is None
    assert chosen_payload("。", offered) is None


async def test_every_rasa_failure_is_transient() -> None:
    assert issubclass(RasaUnavailable, TransientError)
    async with run_fake_rasa(script={"hi": [{"text": "hello"}]}) as rasa, aiohttp.ClientSession() as http:
        client = RasaRestClient(rasa.url + "/", session=http, timeout=0.3)
        assert await client.send("rest:a", "hi", input_channel="rest", metadata={}) == [
            {"recipient_id": "rest:a", "text": "hello"}]
        rasa.status = 500
        with pytest.raises(RasaUnavailable, match="HTTP 500"):
            await client.send("rest:a", "hi", input_channel="rest", metadata={})
        rasa.status = 200
        rasa.script["hi"] = lambda body: [{"text": "late"}]
        rasa.delay = 0.6
        with pytest.raises(RasaUnavailable, match="TimeoutError"):
            await client.send("rest:a", "hi", input_channel="rest", metadata={})
        rasa.delay = 0.0
        wrong = RasaRestClient(rasa.url + "/nowhere", session=http, timeout=0.3)
        with pytest.raises(RasaUnavailable, match="HTTP 404"):
            await wrong.send("rest:a", "hi", input_channel="rest", metadata={})
        await rasa.stop()
        with pytest.raises(RasaUnavailable, match="ClientConnectorError"):
            await client.send("rest:a", "hi", input_channel="rest", metadata={})
    # something answering 200 that is not Rasa's list of messages
    from aiohttp import web

    from loopback import serve_on_loopback

    async def not_rasa(request: web.Request) -> web.Response:
        return web.json_response({"not": "a list"})

    app = web.Application()
    app.router.add_post("/webhooks/rest/webhook", not_rasa)
    async with serve_on_loopback(app) as url, aiohttp.ClientSession() as http:
        with pytest.raises(RasaUnavailable, match="not a list"):
            await RasaRestClient(url, session=http, timeout=1).send("rest:a", "hi", input_channel="rest", metadata={})


def test_settings_choose_the_backend(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert handler_factory_for(Settings()) is default_handler_factory
    rasa = Settings(dialogue_backend="rasa", rasa_url="http://127.0.0.1:5005")
    assert handler_factory_for(rasa).__module__ == "bot.rasa.backend"
    monkeypatch.setenv("POWERBOT_DIALOGUE_BACKEND", "rasa")
    with pytest.raises(SettingsError, match="POWERBOT_RASA_URL is required"):
        load_settings()
    monkeypatch.setenv("POWERBOT_RASA_URL", "rasa:5005")
    with pytest.raises(SettingsError, match="POWERBOT_RASA_URL"):
        load_settings()
    monkeypatch.setenv("POWERBOT_RASA_URL", "http://rasa:5005")
    monkeypatch.setenv("POWERBOT_RASA_TIMEOUT_SECONDS", "0")
    with pytest.raises(SettingsError, match="POWERBOT_RASA_TIMEOUT_SECONDS"):
        load_settings()
    monkeypatch.delenv("POWERBOT_RASA_TIMEOUT_SECONDS")
    loaded = load_settings()
    assert loaded.rasa_url == "http://rasa:5005" and loaded.rasa_timeout_seconds == 2.0
