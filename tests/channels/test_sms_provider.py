"""Unit tests of the pure helpers the local SMS provider (``sms_platform``) and our channel
share: signatures, phone numbers, segments, keywords, rate windows, timestamps."""

from __future__ import annotations

import json

from sms_platform import SECRET, hmac_hex


# --- unit tests of the pure helpers the provider and our channel share -------------------
def test_our_signature_matches_the_providers_independent_hmac() -> None:
    from channels.sms import sign, verify_signature

    body = json.dumps({"from": "+8613800138000", "text": "查电费"}, ensure_ascii=False).encode()
    assert sign(SECRET, body) == hmac_hex(SECRET, body)
    assert verify_signature(SECRET, body, hmac_hex(SECRET, body).upper())
    assert not verify_signature(SECRET, body, hmac_hex("other", body))
    assert not verify_signature(SECRET, body + b" ", hmac_hex(SECRET, body))
    assert not verify_signature(SECRET, body, None)


def test_phone_numbers_are_normalised_to_e164() -> None:
    from common.phones import sms_number as normalize_phone

    for raw in ("13800138000", "+8613800138000", "8613800138000", "+86 138-0013-8000", "008613800138000"):
        assert normalize_phone(raw) == "+8613800138000", raw
    assert normalize_phone("+14155550100") == "+14155550100"
    # SMS cannot reach a landline: not a sender, not a recipient
    for bad in ("", None, "abc", "12345", "1380013800x", "010-12345678"):
        assert normalize_phone(bad) is None, bad


def test_segments_follow_the_ucs2_rule() -> None:
    from channels.sms import MAX_PARTS, split_segments

    assert split_segments("电" * 70) == ["电" * 70]
    parts = split_segments("电" * 71)
    assert [len(p) for p in parts] == [67, 4]
    assert "".join(parts) == "电" * 71
    # a character outside the BMP takes two UCS-2 units and is never split
    emoji = "😀" * 40  # 80 units
    parts = split_segments(emoji)
    assert [len(p) for p in parts] == [33, 7] and "".join(parts) == emoji
    long = split_segments("电" * 2000)
    assert len(long) == MAX_PARTS and long[-1].endswith("…") and len(long[-1]) <= 67


def test_keywords_are_whole_message_and_case_insensitive() -> None:
    from channels.sms import keyword_of

    for t in ("STOP", "stop", " Stop. ", "TD", "td", "退订", "退订。", "Unsubscribe"):
        assert keyword_of(t) == "stop", t
    for t in ("START", "恢复"):
        assert keyword_of(t) == "start", t
    for t in ("stop the outage", "我要退订电费通知吗", "TDX", "查电费"):
        assert keyword_of(t) is None, t


async def test_inbound_limit_counts_per_number() -> None:
    from common.ratelimit import Limiter

    w = Limiter()
    assert [await w.hit("in:a", 3) for _ in range(4)] == [True, True, True, False]
    assert await w.hit("in:b", 3)


def test_plain_english_uses_gsm7_limits() -> None:
    from channels.sms import split_segments

    assert split_segments("a" * 160) == ["a" * 160]
    assert [len(p) for p in split_segments("a" * 161)] == [153, 8]
    assert split_segments("€" * 80) == ["€" * 80]
    assert [len(p) for p in split_segments("€" * 81)] == [76, 5]  # extension chars count twice
    assert [len(p) for p in split_segments("a" * 100 + "电")] == [67, 34]  # one CJK char → UCS-2


def test_timestamps_in_seconds_milliseconds_and_iso() -> None:
    from channels.sms import parse_timestamp

    assert parse_timestamp(1764150000) == 1764150000
    assert parse_timestamp("1764150000000") == 1764150000
    assert parse_timestamp("2025-11-26T09:40:00Z") == parse_timestamp("2025-11-26T17:40:00+08:00") == 1764150000
    assert parse_timestamp("2025-11-26T09:40:00") == 1764150000  # naive = UTC
    assert parse_timestamp("yesterday") is None and parse_timestamp(None) is None
