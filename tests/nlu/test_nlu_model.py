"""NLU behaviour: quality floors on the independent test set, entities, fallback, robustness,
artifact caching and the command line.  The model is trained once into a tmp dir."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from intents import Interpreter, load_or_train
from intents.evaluate import evaluate
from intents.loader import load_nlu_file
from intents.model import load, stored_hash, train_if_needed

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "training_data"
TEST = ROOT / "tests" / "data" / "nlu_test.yml"
BLIND = ROOT / "tests" / "data" / "nlu_test_blind.yml"
COMPOUND = ROOT / "tests" / "data" / "nlu_test_compound.yml"
REF = dt.date(2024, 11, 20)  # the reference date the test set's gold values assume


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("nlu_model")
    train_if_needed(DATA, d, force=True)
    return d


@pytest.fixture(scope="session")
def nlu(model_dir: Path) -> Interpreter:
    return Interpreter(load(model_dir))


@pytest.fixture(scope="session")
def test_result(nlu: Interpreter) -> dict:
    return evaluate(load_nlu_file(TEST).examples, lambda t: nlu.parse(t, REF))


# --- quality floors (a regression must fail CI) -------------------------------------------
def test_intent_accuracy_floor(test_result: dict) -> None:
    assert test_result["accuracy"] >= 0.96, test_result["errors"][:20]


def test_out_of_scope_recall_floor(test_result: dict) -> None:
    assert test_result["out_of_scope_recall"] >= 0.92


@pytest.mark.parametrize("entity", ["account_number", "phone_number", "work_order_id", "month",
                                    "date", "amount"])
def test_entity_exact_match_floor(test_result: dict, entity: str) -> None:
    rep = test_result["entity_report"][entity]
    assert rep["support"] >= 4
    assert rep["exact_match"] >= 0.95, rep


# --- blind set: messages written before the training data was revised, never trained on -----
@pytest.fixture(scope="session")
def blind_result(nlu: Interpreter) -> dict:
    return evaluate(load_nlu_file(BLIND).examples, lambda t: nlu.parse(t, REF))


def test_blind_set_is_unseen_and_covers_taxonomy() -> None:
    norm = lambda t: "".join(t.lower().split())  # noqa: E731
    train = {norm(e.text) for e in load_nlu_file(DATA / "nlu.yml").examples}
    blind = load_nlu_file(BLIND).examples
    assert not [e.text for e in blind if norm(e.text) in train]
    counts: dict[str, int] = {}
    for e in blind:
        counts[e.intent] = counts.get(e.intent, 0) + 1
    train_intents = {e.intent for e in load_nlu_file(DATA / "nlu.yml").examples}
    assert set(counts) == train_intents
    assert min(n for i, n in counts.items() if i != "out_of_scope") >= 8
    assert counts["out_of_scope"] >= 30


def test_blind_accuracy_floor(blind_result: dict) -> None:
    # Measured 0.973 (0.934 before the digit-shape symbols and training-data revision).
    assert blind_result["accuracy"] >= 0.95, blind_result["errors"][:20]


def test_blind_out_of_scope_recall_and_entities(blind_result: dict) -> None:
    assert blind_result["out_of_scope_recall"] >= 0.90  # measured 0.971
    assert blind_result["entity_exact_match"] >= 0.95  # measured 1.0


def test_requests_carrying_an_address_or_account_keep_their_intent(nlu: Interpreter) -> None:
    """"浦东新区张江路100号停电了" is an outage report, not an answer (inform): the address is
    masked for the classifier. Measured 69% before the placeholder, 94% with it alone, 100%
    after the compound training examples."""
    norm = lambda t: "".join(t.lower().split())  # noqa: E731
    train = {norm(e.text) for e in load_nlu_file(DATA / "nlu.yml").examples}
    examples = load_nlu_file(COMPOUND).examples
    assert not [e.text for e in examples if norm(e.text) in train]
    result = evaluate(examples, lambda t: nlu.parse(t, REF))
    assert result["accuracy"] >= 0.94, result["errors"]
    assert result["entity_report"]["address"]["exact_match"] >= 0.8


@pytest.mark.parametrize("text,intent,entity", [
    ("8000", "inform", None), ("0000", "inform", None), ("尾号1234", "inform", None),
    ("后四位是5678", "inform", None), ("my last four digits are 1234", "inform", None),
    ("3101234567", "inform", "account_number"), ("13812345678", "inform", "phone_number"),
    ("浦东新区张江路100号", "inform", "address"), ("明天下午", "inform", "date"),
    ("88", "goodbye", None), ("886", "goodbye", None), ("拜拜", "goodbye", None),
])
def test_bare_replies_are_inform_and_bye_slang_is_goodbye(nlu: Interpreter, text: str,
                                                          intent: str, entity: str | None) -> None:
    r = nlu.parse(text, REF)
    assert r["intent"]["name"] == intent, r["intent_ranking"][:3]
    if entity:
        assert entity in {e["entity"] for e in r["entities"]}


@pytest.mark.parametrize("text,intent", [
    # another company's bill or service, whatever the verb: out of scope
    ("帮我交一下手机费", "nlu_fallback"), ("预约九价疫苗", "nlu_fallback"), ("book a doctor appointment", "nlu_fallback"),
    ("status of my DHL parcel", "nlu_fallback"), ("my credit card bill is due, how much do I owe", "nlu_fallback"),
    ("联通营业厅几点关门", "nlu_fallback"), ("煤气费这个月扣了两次", "nlu_fallback"),
    # the same words with electricity in them stay requests
    ("can I pay the electricity bill with a credit card", "pay_bill"), ("用手机怎么交电费", "pay_bill"),
    ("医院旁边那条街停电了", "report_outage"),
])
def test_other_companies_services_are_out_of_scope(nlu: Interpreter, text: str, intent: str) -> None:
    assert nlu.parse(text, REF)["intent"]["name"] == intent


@pytest.mark.parametrize("text,intent", [
    ("停电短信通知取消掉", "unsubscribe_notifications"),
    ("帮我把停电短信通知打开", "subscribe_notifications"),
    ("turn off bill alerts", "unsubscribe_notifications"),
    ("turn on bill alerts", "subscribe_notifications"),
])
def test_notification_polarity(nlu: Interpreter, text: str, intent: str) -> None:
    assert nlu.parse(text, REF)["intent"]["name"] == intent


@pytest.mark.parametrize("text,intent", [
    ("订阅停电提醒，别再像上回那样突然停电了", "subscribe_notifications"),
    ("帮我开通停电通知，不要再无故断电了", "subscribe_notifications"),
    ("sign me up for outage alerts, I don't want another surprise power cut", "subscribe_notifications"),
    ("停电通知别再发了", "unsubscribe_notifications"),
    ("不要再给我推送停电短信", "unsubscribe_notifications"),
])
def test_a_wish_against_outages_is_no_unsubscription(nlu: Interpreter, text: str, intent: str) -> None:
    """"别再...停了" in a request for notices is about the power, not the messages: it must not
    flip a subscription (it did: "我想订阅停电通知，别再像昨天那样突然停了" was an unsubscribe)."""
    assert nlu.parse(text, REF)["intent"]["name"] == intent


@pytest.mark.parametrize("text,cue", [
    ("我想订阅停电通知，别再像前天那样突然停了", "cue:on"),
    ("订阅停电提醒，不要再突然停电了", "cue:on"),
    ("别再停电了，帮我订阅一下停电提醒", "cue:on"),
    ("subscribe me to outage alerts, no more surprise outages", "cue:on"),
    # still off: the thing not wanted is the notice itself
    ("别再给我发短信了", "cue:off"),
    ("不要再推送停电通知", "cue:off"),
    ("不要停电通知了", "cue:off"),
    ("停电预警别再发了", "cue:off"),
    ("不要再发停电短信了", "cue:off"),
    ("i don't want outage alerts anymore", "cue:off"),
])
def test_outage_wish_does_not_set_the_off_cue(text: str, cue: str) -> None:
    from intents.features import _polarity_cue

    assert _polarity_cue(text) == cue


# --- parse contract -----------------------------------------------------------------------
def test_parse_shape(nlu: Interpreter) -> None:
    r = nlu.parse("户号3101234567上个月电费多少", REF)
    assert set(r) >= {"text", "intent", "entities", "intent_ranking", "language"}
    assert r["intent"]["name"] == "bill_query"
    assert 0 < r["intent"]["confidence"] <= 1
    assert 1 <= len(r["intent_ranking"]) <= 10
    for e in r["entities"]:
        assert set(e) == {"entity", "value", "start", "end", "extractor"}
        assert r["text"][e["start"]:e["end"]]
    assert {(e["entity"], e["value"]) for e in r["entities"]} == {
        ("account_number", "3101234567"), ("month", "2024-10")}
    assert r["language"] == "zh"
    assert nlu.parse("how much do I owe", REF)["language"] == "en"


@pytest.mark.parametrize("text,intent", [
    ("停电了", "report_outage"),
    ("明天停电吗", "outage_schedule"),
    ("交了钱还是欠费", "payment_issue"),
    ("三天停了两次电，我要投诉你们", "complaint"),
    ("帮我查一下燃气费", "nlu_fallback"),
    ("今天天气怎么样", "nlu_fallback"),
])
def test_hard_pairs(nlu: Interpreter, text: str, intent: str) -> None:
    assert nlu.parse(text, REF)["intent"]["name"] == intent


@pytest.mark.parametrize("text,expected", [
    ("明天", ("date", "2024-11-21")), ("后天", ("date", "2024-11-22")),
    ("大后天", ("date", "2024-11-23")), ("下周一", ("date", "2024-11-25")),
    ("周五", ("date", "2024-11-22")), ("11月30日", ("date", "2024-11-30")),
    ("11.30停电吗", ("date", "2024-11-30")), ("tomorrow", ("date", "2024-11-21")),
    ("next monday", ("date", "2024-11-25")), ("2024-12-01", ("date", "2024-12-01")),
    ("上个月", ("month", "2024-10")), ("这个月", ("month", "2024-11")),
    ("本月", ("month", "2024-11")), ("10月", ("month", "2024-10")),
    ("去年12月", ("month", "2023-12")), ("last month", ("month", "2024-10")),
    ("October", ("month", "2024-10")), ("十月份", ("month", "2024-10")),
    ("WO202411200001", ("work_order_id", "WO202411200001")),
    ("wo202411200001", ("work_order_id", "WO202411200001")),
    # the WO left out: after 工单 / 单号 the core's twelve digits (yymmdd + six) are the work order
    ("工单号 241120123456", ("work_order_id", "WO241120123456")),
    ("我的工单241120123456到哪了", ("work_order_id", "WO241120123456")),
    ("户号 241120123456", ("account_number", "241120123456")),
    ("单号 241320123456", ("account_number", "241320123456")),  # month 13: not a work order's date
    ("+86 138-1234-5678", ("phone_number", "13812345678")),
    ("138 1234 5678", ("phone_number", "13812345678")),
    ("3101234567", ("account_number", "3101234567")),
    ("4401122334455", ("account_number", "4401122334455")),
    ("３１０１２３４５６７", ("account_number", "3101234567")),
    ("11-30", ("date", "2024-11-30")), ("十二月一日", ("date", "2024-12-01")),
    ("1千元", ("amount", 1000.0)), ("RMB 300", ("amount", 300.0)),
    ("100元", ("amount", 100.0)), ("￥58.5", ("amount", 58.5)), ("一百元", ("amount", 100.0)),
    ("浦东", ("district", "浦东新区")), ("海淀区", ("district", "海淀区")),
])
def test_entity_resolution(nlu: Interpreter, text: str, expected: tuple) -> None:
    ents = nlu.parse(text, REF)["entities"]
    assert [(e["entity"], e["value"]) for e in ents] == [expected]
    e = ents[0]
    assert 0 <= e["start"] < e["end"] <= len(text)


@pytest.mark.parametrize("text,address", [
    ("我在浦东新区碧波路，这边停电了吗", "浦东新区碧波路"), ("静安区南京西路停电", "静安区南京西路"),
    ("浦东新区世纪大道", "浦东新区世纪大道"), ("浦东新区的路灯坏了", None), ("闵行区这条路停电", None),
    ("走了很远的路", None), ("马路边电线杆倒了", None), ("我们整个小区都黑了", None),
    ("小区路灯不亮", None), ("家住幸福小区5栋2单元", "幸福小区5栋2单元"),
])
def test_a_road_of_a_known_district_is_an_address(nlu: Interpreter, text: str, address: str | None) -> None:
    found = [e["value"] for e in nlu.parse(text)["entities"] if e["entity"] == "address"]
    assert found == ([address] if address else [])


def test_phone_not_account_and_wo_digits_not_account(nlu: Interpreter) -> None:
    ents = nlu.parse("电话13812345678，工单WO202411200001", REF)["entities"]
    assert [(e["entity"], e["value"]) for e in ents] == [
        ("phone_number", "13812345678"), ("work_order_id", "WO202411200001")]


# --- robustness ---------------------------------------------------------------------------
HOSTILE = ["", "   ", "停" * 10_000, "😀😀😀🔥", "<script>alert('x')</script><b>停电</b>",
           "'; DROP TABLE accounts; --", "SELECT * FROM bills WHERE 1=1", "停電了怎麼辦",
           "我的戶號是３１０１２３４５６７", "\x00\x01\x02\ufffd", "\u202e\u200b", "[]{}()"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_input_never_crashes(nlu: Interpreter, text: str) -> None:
    r = nlu.parse(text, REF)
    assert r["intent"]["name"]
    json.dumps(r, ensure_ascii=False)


def test_random_bytes_never_crash(nlu: Interpreter) -> None:
    rnd = random.Random(7)
    for _ in range(200):
        text = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 80))).decode(
            "utf-8", errors="replace")
        nlu.parse(text, REF)


def test_sensible_answers_for_odd_input(nlu: Interpreter) -> None:
    assert nlu.parse("", REF)["intent"]["name"] == "nlu_fallback"
    assert nlu.parse("SELECT * FROM bills WHERE 1=1", REF)["intent"]["name"] == "nlu_fallback"
    assert nlu.parse("停電了怎麼辦", REF)["intent"]["name"] == "report_outage"
    r = nlu.parse("我的戶號是３１０１２３４５６７", REF)
    assert [(e["entity"], e["value"]) for e in r["entities"]] == [("account_number", "3101234567")]


def test_thread_safe(nlu: Interpreter) -> None:
    texts = ["停电了", "明天停电吗", "交了钱还是欠费", "how much is my bill"] * 25
    expected = [nlu.parse(t, REF)["intent"]["name"] for t in texts]
    results: list[list[str]] = []

    def work() -> None:
        results.append([nlu.parse(t, REF)["intent"]["name"] for t in texts])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


def test_threshold_override(model_dir: Path) -> None:
    strict = Interpreter(load(model_dir), fallback_threshold=1.01)
    assert strict.parse("停电了", REF)["intent"]["name"] == "nlu_fallback"


# --- artifact -----------------------------------------------------------------------------
def test_metadata_and_skip_when_unchanged(model_dir: Path) -> None:
    meta = json.loads((model_dir / "nlu.json").read_text(encoding="utf-8"))
    for key in ("training_data_hash", "library_versions", "created_at", "fallback_threshold",
                "ambiguity_threshold", "temperature"):
        assert key in meta
    assert stored_hash(model_dir) == meta["training_data_hash"]
    _, trained = train_if_needed(DATA, model_dir)
    assert trained is False


def test_load_or_train_retrains_on_changed_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "nlu.yml").write_text(
        'version: "3.1"\nnlu:\n' + "".join(
            f"- intent: {i}\n  examples: |\n" + "".join(f"    - {w} {k}\n" for k in range(6))
            for i, w in (("greet", "hello"), ("goodbye", "bye"), ("out_of_scope", "pizza"))),
        encoding="utf-8")
    m = tmp_path / "m"
    it = load_or_train(data, m)
    assert it.parse("hello")["intent"]["name"] == "greet"
    first = stored_hash(m)
    (data / "nlu.yml").write_text((data / "nlu.yml").read_text() + "    - ciao\n", "utf-8")
    load_or_train(data, m)
    assert stored_hash(m) != first


# --- command line -------------------------------------------------------------------------
def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intents.cli", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def test_cli_parse_batch_in_order(model_dir: Path) -> None:
    lines = ["停电了", "", "明天停电吗", "how much is my bill", "😀"]
    p = _cli("parse", "--model", str(model_dir), "--reference-date", "2024-11-20",
             stdin="\n".join(lines) + "\n")
    assert p.returncode == 0, p.stderr
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert [o["text"] for o in out] == lines
    assert out[0]["intent"]["name"] == "report_outage"
    assert out[2]["entities"][0]["value"] == "2024-11-21"


def test_cli_parse_single_and_test_report(model_dir: Path, tmp_path: Path) -> None:
    p = _cli("parse", "交了钱还是欠费", "--model", str(model_dir))
    assert json.loads(p.stdout)["intent"]["name"] == "payment_issue"
    rep = tmp_path / "rep"
    p = _cli("test", str(TEST), "--report", str(rep), "--model", str(model_dir),
             "--data", str(DATA), "--reference-date", "2024-11-20")
    assert p.returncode == 0, p.stderr
    report = json.loads((rep / "intent_report.json").read_text(encoding="utf-8"))
    assert report["accuracy"] >= 0.96
    assert {"precision", "recall", "f1-score", "support"} <= set(report["report_outage"])
    assert "entity_scores" in report
    assert (rep / "intent_confusion_matrix.png").stat().st_size > 1000


# --- the second blind set: 865 messages by someone who never saw the training data -----------
# Kept blind: only its aggregate figures are read (never its messages or per-message errors),
# and no training example may repeat one of its messages.
BLIND_2 = ROOT / "tests" / "data" / "nlu_blind_test.yml"


@pytest.fixture(scope="session")
def blind_2_result(nlu: Interpreter) -> dict:
    from intents.loader import declared_reference_date

    ref = declared_reference_date(BLIND_2)
    return evaluate(load_nlu_file(BLIND_2).examples, lambda t: nlu.parse(t, ref))


def test_second_blind_set_floors(blind_2_result: dict) -> None:
    r = blind_2_result
    # measured 0.977 / 0.966 / 0.961 / district recall 1.0 (from 0.893 / 0.718 / 0.868 / 0.25)
    figures = (r["in_scope_accuracy"], r["out_of_scope_recall"], r["entity_exact_match"],
               r["entity_report"]["district"]["recall"])
    assert r["in_scope_accuracy"] >= 0.96, figures
    assert r["out_of_scope_recall"] >= 0.95, figures
    assert r["entity_exact_match"] >= 0.95, figures
    assert r["entity_report"]["district"]["recall"] >= 0.95, figures


def test_second_blind_set_stays_unseen() -> None:
    """The training data the set's author never saw shares 152 messages with it by coincidence
    (half of them 4 characters or less: 好的, 谢谢, 你好); nothing written since may add one."""
    norm = lambda t: "".join(t.lower().split())  # noqa: E731
    train = {norm(e.text) for e in load_nlu_file(DATA / "nlu.yml").examples}
    shared = sum(1 for e in load_nlu_file(BLIND_2).examples if norm(e.text) in train)  # count only
    assert shared <= 152, shared


async def test_gateway_applies_the_threshold_settings(tmp_path, monkeypatch) -> None:
    """POWERBOT_NLU_FALLBACK_THRESHOLD / _AMBIGUITY_THRESHOLD reach the gateway's interpreter."""
    from bot.app import _load_interpreter
    from bot.settings import Settings

    monkeypatch.setenv("POWERBOT_NLU_FALLBACK_THRESHOLD", "0.93")
    monkeypatch.setenv("POWERBOT_NLU_AMBIGUITY_THRESHOLD", "0.4")
    settings = Settings(nlu_data_dir="training_data", nlu_model_dir=tmp_path / "models")
    interp = await _load_interpreter(settings)
    assert (interp.fallback_threshold, interp.ambiguity_threshold) == (0.93, 0.4)
    # what the model's own thresholds let through with less than 0.93 now falls back
    default = await _load_interpreter(Settings(nlu_data_dir="training_data", nlu_model_dir=tmp_path / "models",
                                               nlu_fallback_threshold=None, nlu_ambiguity_threshold=None))
    texts = ["电费好像有点问题", "我想问一下那个", "家里的电怎么回事", "帮我看看", "这个月好贵", "师傅什么时候来"]
    unsure = [t for t in texts if default.parse(t)["intent"]["name"] != "nlu_fallback"
              and default.parse(t)["intent"]["confidence"] < 0.93]
    assert unsure, "no fairly-sure message to check with"
    assert all(interp.parse(t)["intent"]["name"] == "nlu_fallback" for t in unsure)


# --- development sets, each written blind (without the code or the training data) by a helper ----
# Their kinds of mistake were fixed by rules and by other wordings, never by their messages, so
# they stay regression checks, not blind figures. Each with what it holds, the figures measured
# when it arrived -> after its fixes, and its floors.
_DEV = ROOT / "tests" / "data"


@dataclass(frozen=True)
class DevSet:
    file: str
    holds: str
    measured: str
    floors: tuple[float, float]  # intents: in-scope, out-of-scope; entities: exact match, precision
    shared: int  # its messages found in the training data by coincidence ("你好", "转人工")


INTENT_SETS = [
    DevSet("nlu_dev_intents.yml", "520 messages over the whole taxonomy and out of scope: hotline and "
           "praise wordings, applications asked after, tariff-category changes, Shanghainese, other bills "
           "and chargers, prompt injection", "0.956 / 0.935 -> 0.996 / 1.0", (0.98, 0.97), 86),
    DevSet("nlu_dev_intents_2.yml", "514 messages in the voices of elderly speech-to-text users, shop and "
           "factory owners, landlords, tenants, non-native English, angry, very short and story-first "
           "customers", "0.960 / 0.952 -> 1.0 / 1.0", (0.98, 0.97), 89),
    DevSet("nlu_dev_intents_3.yml", "520 messages in chat-log style: politeness around the request, quoted "
           "SMS, emoji, third parties, conditional questions, channels, indirect wording, British, Indian "
           "and Singaporean English (two labels say ev_charging for the price of charging at home, a "
           "decided tariff_consult: 0.996 is its ceiling)", "0.948 / 0.967 -> 0.996 / 1.0", (0.98, 0.97), 66),
    DevSet("nlu_dev_intents_4.yml", "506 hard messages: why/how questions, typos in both languages "
           "(\"bil\", \"tarrif\"), 1-4 word openers, follow-ups (\"还有…的呢\"), numbers inside requests, "
           "Chinglish; out of scope: other cities' tariffs, electricity knowledge, questions about the bot",
           "0.951 / 0.883 -> 1.0 / 1.0", (0.98, 0.97), 87),
    DevSet("nlu_dev_intents_5.yml", "473 messages at the edge of scope: 205 out of scope that look like a "
           "request (water, gas, heating, telecom and property bills, one's own lamps and sockets, private "
           "electricians, physics homework, the grid company's news and jobs, other countries' utilities, "
           "prompt injection, pinyin) and in-scope ones in odd wordings", "0.955 / 0.878 -> 0.989 / 0.971",
           (0.97, 0.92), 38),
    DevSet("nlu_dev_intents_6.yml", "379 messages in a chat voice, half English: 190 out of scope of kinds "
           "not thought of before (a general assistant's questions, chit-chat, other organisations' refunds and "
           "outages, spam, testing the bot, other languages and scripts, energy-saving tips, foreign blackouts) "
           "and in-scope ones naming a landlord, a bank or a property manager", "0.984 / 0.895 -> 0.989 / 0.968",
           (0.97, 0.94), 49),
    DevSet("nlu_dev_intents_7.yml", "555 messages as a month of mixed traffic, 35% English, 150 out of scope of "
           "many kinds (other companies' bills and bookings, parcels, scams with links, homework, injection, "
           "one's own sockets and lamps, other languages); its order numbers in another system's form "
           "(\"WO-2026-000318\")", "0.990 / 0.853 -> 0.988 / 0.953", (0.97, 0.93), 96),
    DevSet("nlu_dev_intents_8.yml", "545 short chat messages, 39% out of scope: what people type into any company's "
           "chat box (other departments, the bot itself, life questions, spam and adverts, forwarded bank texts, "
           "internet slang) and in-scope ones as casual as can be (\"elec\", \"pls\", \"有人没\")",
           "0.976 / 0.915 -> 0.991 / 0.953", (0.97, 0.93), 134),
    DevSet("nlu_dev_intents_9.yml", "522 messages, 35% English, 30% out of scope near the boundary: other utilities' "
           "outages, the customer's own appliances and gadgets, physics homework, adverts for solar panels, and in-scope "
           "ones next to them (a tripped main switch, a charging pile's meter)", "0.992 / 0.943 -> 0.992 / 0.962",
           (0.98, 0.95), 85),
]
ENTITY_SETS = [
    DevSet("nlu_dev_dates.yml", "245 messages with relative, written-out, misspelt, pinyin, spaced and "
           "mixed-language dates, billing months and amounts, 34 with tempting words that are no date "
           "(\"always around 300\" is left unannotated here, a sum in the second entity set)",
           "-> 0.996", (0.99, 0.96), 4),
    DevSet("nlu_dev_entities.yml", "327 messages (142 English): weekdays meant backwards for what already "
           "happened, pinyin and dialect days, sums after a verb of paying, account, phone and work-order "
           "numbers in their usual spellings, 44 tempting numbers (\"every Monday\", \"the 5th floor\")",
           "0.921 -> 1.0", (0.975, 0.98), 0),
    DevSet("nlu_dev_entities_2.yml", "351 messages: sums written without a unit (\"电费两百三\", \"the bill "
           "jumped to 860\"), work orders and phones in groups, weekends, weekdays whose direction the "
           "sentence gives", "0.906 -> 1.0", (0.98, 0.97), 0),
    DevSet("nlu_dev_dates_2.yml", "335 messages, mostly dates and months in many forms (月底, 一周后, 後天, "
           "\"yesterady\", \"the 8th of this month\"), about 45 look-alikes that are no date",
           "0.948 -> 1.0", (0.98, 0.97), 0),
    DevSet("nlu_dev_dates_3.yml", "266 messages: days and months in every notation (大后天, 上上周一, 20261209, "
           "day-first 9/12, festivals meant backwards for what happened), sums in 块/毛/万/k, landlines, an "
           "account glued to a month, 62 look-alikes that are no date or sum", "0.878 -> 1.0", (0.98, 0.9), 0),
    DevSet("nlu_dev_entities_3.yml", "356 messages, 38% English, 537 entities: whole Shanghai addresses (district, "
           "lane, building, flat; English units, blocks and floors), mistyped work-order numbers (W0…, W O …, dots), "
           "phones in brackets and dots, accounts in odd groupings", "0.961 (addresses 0.566) -> 0.977 (0.899)",
           (0.97, 0.96), 2),
]
CONTRACT = ("date", "month", "amount", "account_number", "phone_number", "work_order_id")


@pytest.mark.parametrize("dev", INTENT_SETS, ids=lambda d: d.file)
def test_intent_dev_sets(nlu: Interpreter, dev: DevSet) -> None:
    r = evaluate(load_nlu_file(_DEV / dev.file).examples, lambda t: nlu.parse(t, dt.date(2026, 12, 7)))
    figures = (r["in_scope_accuracy"], r["out_of_scope_recall"], dev.measured)
    assert r["in_scope_accuracy"] >= dev.floors[0], (figures, r["errors"])
    assert r["out_of_scope_recall"] >= dev.floors[1], (figures, r["errors"])


@pytest.mark.parametrize("dev", ENTITY_SETS, ids=lambda d: d.file)
def test_entity_dev_sets(nlu: Interpreter, dev: DevSet) -> None:
    """Every annotated value found, nothing invented (their intent labels are rough: no floor)."""
    from intents.loader import declared_reference_date

    ref = declared_reference_date(_DEV / dev.file)
    r = evaluate(load_nlu_file(_DEV / dev.file).examples, lambda t: nlu.parse(t, ref))
    ents = r["entity_report"]
    assert r["entity_exact_match"] >= dev.floors[0], (dev.measured, ents)
    assert all(ents[e]["precision"] >= dev.floors[1] for e in CONTRACT if e in ents and ents[e]["support"]), ents


@pytest.mark.parametrize("dev", INTENT_SETS + ENTITY_SETS, ids=lambda d: d.file)
def test_dev_sets_stay_out_of_the_training_data(dev: DevSet) -> None:
    norm = lambda t: "".join(t.lower().split())  # noqa: E731
    train = {norm(e.text) for e in load_nlu_file(DATA / "nlu.yml").examples}
    assert sum(1 for e in load_nlu_file(_DEV / dev.file).examples if norm(e.text) in train) <= dev.shared


@pytest.mark.parametrize("text,intent", [
    ("10月8号扣了两次款，每次210元", "payment_issue"),
    ("昨天的电费扣了两遍，每遍76元", "payment_issue"),
    ("I was debited twice on 2 Dec, 180 each", "payment_issue"),
    ("路灯坏了，在6号楼后面", "repair_request"),
    ("楼道灯不亮了，就在11号楼2单元门口", "repair_request"),
    ("the street lamp by block 7 is out", "repair_request"),
    ("我想订阅停电短信，别再半夜突然停了", "subscribe_notifications"),
])
def test_requests_with_a_date_sum_or_place_are_read_by_what_they_ask(nlu: Interpreter, text: str,
                                                                      intent: str) -> None:
    """A date, a sum or a building number masked to a symbol must not turn a request into a
    bare answer (inform); found on the second dates set, whose intent labels are otherwise rough."""
    assert nlu.parse(text, dt.date(2026, 12, 7))["intent"]["name"] == intent



# --- the third to seventh blind sets, by writers who saw neither data nor code ---------
# Kept blind like the second: only their aggregate figures are read, and no training example may
# repeat one of their messages beyond the coincidences (greetings, thanks, "好的") counted here.
@dataclass(frozen=True)
class BlindSet:
    file: str
    measured: str  # on arrival, before any change -> now
    floors: tuple[float, float, float]  # in-scope accuracy, out-of-scope recall, entity exact match
    shared: int


BLIND_SETS = [
    BlindSet("nlu_blind_test_3.yml", "454 messages: 0.954 / 0.969 / 0.966 -> 0.982 / 1.0 / 0.983",
             (0.96, 0.97, 0.97), 87),
    BlindSet("nlu_blind_test_4.yml", "538 messages, 37% English: 0.975 / 0.889 / 0.988 -> 0.969 / 0.911 / 0.994",
             (0.96, 0.89, 0.97), 61),
    BlindSet("nlu_blind_test_5.yml", "556 messages, 36% English, 26% out of scope: 0.993 / 0.836 / 0.921 -> "
             "0.993 / 0.904 / 0.974", (0.97, 0.89, 0.95), 104),
    BlindSet("nlu_blind_test_6.yml", "573 messages, 37% English, 25% out of scope: 0.986 / 0.972 / 0.961 on arrival",
             (0.97, 0.95, 0.95), 82),
    BlindSet("nlu_blind_test_7.yml", "578 messages, 35% English, 25% out of scope: 0.979 / 0.972 / 0.914 on arrival "
             "(its writer tags districts apart from addresses)", (0.97, 0.95, 0.90), 104),
]


@pytest.mark.parametrize("blind", BLIND_SETS, ids=lambda b: b.file)
def test_later_blind_set_floors(nlu: Interpreter, blind: BlindSet) -> None:
    from intents.loader import declared_reference_date

    path = ROOT / "tests" / "data" / blind.file
    r = evaluate(load_nlu_file(path).examples, lambda t: nlu.parse(t, declared_reference_date(path)))
    figures = (r["in_scope_accuracy"], r["out_of_scope_recall"], r["entity_exact_match"], blind.measured)
    assert r["in_scope_accuracy"] >= blind.floors[0], figures
    assert r["out_of_scope_recall"] >= blind.floors[1], figures
    assert r["entity_exact_match"] >= blind.floors[2], figures


@pytest.mark.parametrize("blind", BLIND_SETS, ids=lambda b: b.file)
def test_later_blind_sets_stay_unseen(blind: BlindSet) -> None:
    norm = lambda t: "".join(t.lower().split())  # noqa: E731
    train = {norm(e.text) for e in load_nlu_file(DATA / "nlu.yml").examples}
    examples = load_nlu_file(ROOT / "tests" / "data" / blind.file).examples
    shared = sum(1 for e in examples if norm(e.text) in train)  # count only
    assert shared <= blind.shared, shared


@pytest.mark.parametrize("text,intent", [
    ("dianfei duoshao qian yi du a", "tariff_consult"),
    ("wo xiang zai jia li wu ding an zhuang guang fu ban, yao zen me ban bing wang", "solar_connection"),
    ("wo yao tou su ni men de gong zuo ren yuan", "complaint"),
    ("bang wo kai yi zhang fa piao", "invoice_request"),
    ("wo yao ban guo hu", "account_change"),
    ("ni men de fu wu tai cha le", "complaint"),
    ("bang wo chong zhi hua fei 100", "nlu_fallback"),
])
def test_whole_messages_in_pinyin(nlu: Interpreter, text: str, intent: str) -> None:
    """Pinyin is read as the training data's words, not only as a list of domain words."""
    assert nlu.parse(text, REF)["intent"]["name"] == intent
