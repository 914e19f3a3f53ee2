"""The core's customer lookup (``GET /api/v1/customers``): by part of the holder's name or by a
batch of account numbers, answered with account numbers and masked names only; bad input is a
400 problem; behind the bearer token like the other bot-facing endpoints. The typed client's
two methods against the same server. SQLite and PostgreSQL (LIKE escaping and case folding)."""

from __future__ import annotations


import pytest
from sqlalchemy import select

from backend_client import CoreClient, Customer, ValidationFailed
from bot.db import make_engine, make_sessionmaker
from core import models as m
from core.app import create_core_app
from core.customers import mask_name
from core.seed import migrate_and_seed
from loopback import serve_on_loopback

API = "/api/v1"
TOKEN = "lookup-token"
# accounts added to the demo data, so each matching rule has a case that tells it apart
EXTRA = [
    ("3200000001", "张伟明"),       # 张伟 as a prefix
    ("3200000002", "欧阳张伟"),     # 张伟 inside
    ("3200000003", "Wei ZHANG"),    # Latin, upper case
    ("3200000004", "100%_电力"),    # LIKE wildcards in a name
    ("3200000005", "100 电力"),     # must not match "100%" as a pattern
] + [(str(3210000000 + i), f"测试户{i:02d}") for i in range(25)]  # more than the default limit


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:  # type: ignore[no-untyped-def]
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture
async def names(db_url: str) -> dict[str, str]:
    """The store migrated and seeded, plus EXTRA; every account number → holder name."""
    await migrate_and_seed(db_url, n_accounts=60)
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            for no, name in EXTRA:
                s.add(m.Account(account_number=no, holder_name=name, phone="13700000000", address="浦东新区测试路1号",
                                district="浦东新区"))
        async with make_sessionmaker(engine)() as s:
            return dict((await s.execute(select(m.Account.account_number, m.Account.holder_name))).tuples().all())
    finally:
        await engine.dispose()


@pytest.fixture
async def api(aiohttp_client, db_url, names):  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_core_app(db_url, token=TOKEN))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _lookup(api, **params):  # type: ignore[no-untyped-def]
    r = await api.get(API + "/customers", params=params, headers=AUTH)
    return r, await r.json(content_type=None)


def _expected(names: dict[str, str], query: str) -> list[str]:
    """The rule, written out independently: substring, Latin case folded, whitespace runs as
    one; exact first, then prefix, then inside; by account number within each."""
    q = " ".join(query.split()).lower()

    def norm(n: str) -> str:
        return n.lower()

    hits = [no for no, n in names.items() if q in norm(n)]
    return sorted(hits, key=lambda no: (0 if norm(names[no]) == q else 1 if norm(names[no]).startswith(q) else 2, no))


def test_mask_name() -> None:
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳张伟") == "欧***"
    assert mask_name("Li") == "L*"
    assert mask_name("") == ""


async def test_by_name_finds_exact_then_prefix_then_inside_masked(api, names) -> None:  # type: ignore[no-untyped-def]
    r, body = await _lookup(api, name="张伟", limit="50")
    assert r.status == 200, body
    got = [c["account_number"] for c in body["customers"]]
    assert got == _expected(names, "张伟")[:50]
    assert got[0] == "3100000001" and {"3200000001", "3200000002"} <= set(got)  # 张伟, 张伟明, 欧阳张伟
    assert got.index("3200000001") < got.index("3200000002")  # prefix before inside
    for c in body["customers"]:
        assert set(c) == {"account_number", "masked_name"}  # nothing else about the customer
        assert c["masked_name"] == mask_name(names[c["account_number"]])
        assert c["masked_name"] != names[c["account_number"]]  # never the full name
    assert "张伟" not in await (await api.get(API + "/customers", params={"name": "张伟"}, headers=AUTH)).text()


async def test_by_name_folds_latin_case_and_spaces_and_escapes_wildcards(api, names) -> None:  # type: ignore[no-untyped-def]
    _, body = await _lookup(api, name="  wei   zhang ")
    assert [c["account_number"] for c in body["customers"]] == ["3200000003"]
    assert body["customers"][0]["masked_name"] == "W********"
    _, body = await _lookup(api, name="100%_电")  # the wildcards are plain characters
    assert [c["account_number"] for c in body["customers"]] == ["3200000004"]
    _, body = await _lookup(api, name="无此人甲乙")
    assert body == {"customers": []}


async def test_by_name_is_limited(api, names) -> None:  # type: ignore[no-untyped-def]
    assert len(_expected(names, "张伟")) >= 3
    _, body = await _lookup(api, name="张伟", limit="2")
    assert [c["account_number"] for c in body["customers"]] == _expected(names, "张伟")[:2]
    assert len(_expected(names, "测试户")) == 25
    _, default = await _lookup(api, name="测试户")
    assert [c["account_number"] for c in default["customers"]] == _expected(names, "测试户")[:20]
    _, most = await _lookup(api, name="测试户", limit="50")
    assert len(most["customers"]) == 25


async def test_batch_by_account_numbers(api, names) -> None:  # type: ignore[no-untyped-def]
    r, body = await _lookup(api, account_numbers="3100000002,3199999999,3100000001,3100000002")
    assert r.status == 200
    assert body["customers"] == [  # given order, unknown left out, a repeat once
        {"account_number": "3100000002", "masked_name": mask_name(names["3100000002"])},
        {"account_number": "3100000001", "masked_name": "张*"},
    ]
    fifty = sorted(names)[:50]
    _, body = await _lookup(api, account_numbers=",".join(fifty))
    assert [c["account_number"] for c in body["customers"]] == fifty


@pytest.mark.parametrize("params, where", [
    ({}, "missing_filter"),
    ({"name": "张伟", "account_numbers": "3100000001"}, "conflicting_filters"),
    ({"name": "张"}, "name"),                     # one character: a bare surname lists too many
    ({"name": "  "}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "12345"}, "name"),                  # no letter: an account number search
    ({"name": "张\x00伟"}, "name"),
    ({"name": "张\u202e伟"}, "name"),             # a format character (bidi override)
    ({"name": "张伟", "limit": "0"}, "limit"),
    ({"name": "张伟", "limit": "51"}, "limit"),
    ({"name": "张伟", "limit": "x"}, "limit"),
    ({"account_numbers": ""}, "account_numbers"),
    ({"account_numbers": "3100000001,abc"}, "account_numbers"),
    ({"account_numbers": "310000000"}, "account_numbers"),  # 9 digits
    ({"account_numbers": ",".join(str(3300000000 + i) for i in range(51))}, "account_numbers"),
    ({"account_numbers": "3100000001", "limit": "5"}, "limit"),
])
async def test_bad_input_is_a_400_problem(api, params, where) -> None:  # type: ignore[no-untyped-def]
    r, body = await _lookup(api, **params)
    assert r.status == 400 and r.content_type == "application/problem+json", body
    assert body["status"] == 400 and body["type"].startswith("urn:powerbot:core:problem:")
    assert where in (body["code"], *(e["loc"][0] for e in body.get("errors") or []))


async def test_needs_the_token(api) -> None:  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = await api.get(API + "/customers", params={"name": "张伟"}, headers=headers)
        assert r.status == 401 and r.content_type == "application/problem+json"


async def test_documented_in_the_openapi_document(api) -> None:  # type: ignore[no-untyped-def]
    doc = await (await api.get(API + "/openapi.json")).json()
    op = doc["paths"]["/api/v1/customers"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"name", "account_numbers", "limit"}
    assert "401" in op["responses"] and "400" in op["responses"]
    schema = doc["components"]["schemas"]["CustomerOut"]
    assert set(schema["properties"]) == {"account_number", "masked_name"}


async def test_typed_client(db_url, names) -> None:  # type: ignore[no-untyped-def]
    async with serve_on_loopback(create_core_app(db_url, token=TOKEN)) as url, CoreClient(url, token=TOKEN, retries=0) as core:
        found = await core.find_customers_by_name("张伟", limit=50)
        assert [c.account_number for c in found] == _expected(names, "张伟")[:50]
        assert found[0] == Customer(account_number="3100000001", masked_name="张*")
        many = sorted(names)[:60]  # more than one call's worth: the client splits the batch
        got = await core.customers_by_account(many + ["3199999999"])
        assert [c.account_number for c in got] == many
        assert all(c.masked_name == mask_name(names[c.account_number]) for c in got)
        assert await core.customers_by_account([]) == []
        with pytest.raises(ValidationFailed) as exc:
            await core.find_customers_by_name("张")
        assert exc.value.status == 400
