"""Shanghai's districts in every spelling, normalised to the core's names (intents.places),
for the NLU's district entity and the dialogue's reading of an answer (slots.district)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intents import places, slots
from intents.entities import EntityExtractor
from intents.loader import load_data

ROOT = Path(__file__).resolve().parents[2]

CORE_NAMES = ["黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区", "闵行区", "宝山区",
              "嘉定区", "浦东新区", "金山区", "松江区", "青浦区", "奉贤区", "崇明区"]


def test_all_sixteen_districts_as_the_core_names_them() -> None:
    from core.seed import DISTRICTS
    from core.pricing import RURAL_DISTRICTS

    assert sorted(places.NAMES) == sorted(CORE_NAMES)
    assert set(DISTRICTS) | RURAL_DISTRICTS <= set(places.NAMES)


@pytest.mark.parametrize("name", CORE_NAMES)
def test_every_spelling(name: str) -> None:
    d = next(d for d in places.SHANGHAI if d.name == name)
    en = "".join(d.pinyin)
    spellings = [name, d.stem, d.stem + "区", "上海" + d.stem, "上海市" + name, "我住在" + d.stem,
                 en, en.capitalize(), " ".join(d.pinyin), "'".join(d.pinyin).title(),
                 en.capitalize() + " District", "shanghai " + en, en + " qu"]
    for s in spellings:
        assert slots.district(s) == name, s
        assert places.normalize(s) == name, s


@pytest.mark.parametrize("text,name", [
    ("上海市浦东新区", "浦东新区"), ("Pudong New Area", "浦东新区"), ("浦东新区张江路", "浦东新区"),
    ("Jing'an", "静安区"), ("Jingan District", "静安区"), ("Jìng'ān", "静安区"), ("Jing’an", "静安区"),
    ("闸北", "静安区"), ("卢湾区", "黄浦区"), ("南汇", "浦东新区"), ("崇明县", "崇明区"), ("闽行", "闵行区"),
    ("市闵行区", "闵行区"), ("北京市朝阳区", "朝阳区"), ("我住在海淀区", "海淀区"),
])
def test_slots_district(text: str, name: str) -> None:
    assert slots.district(text) == name


@pytest.mark.parametrize("text", ["我家停电了", "上海", "我想查一下小区", "黄浦江边", "宝山路", "金山词霸",
                                  "no district", "开发区停电", "今天天气怎么样"])
def test_the_sentence_is_never_a_district(text: str) -> None:
    assert slots.district(text) is None


def test_nlu_district_entity_and_training_data_agree() -> None:
    data = load_data(ROOT / "training_data")
    lookup = set(data.lookups["district"])
    assert set(places.NAMES) <= lookup
    x = EntityExtractor(data.synonyms, data.lookups, data.regexes)
    for variant, canonical in data.synonyms.items():
        if canonical in places.NAMES:
            assert places.normalize(variant) == canonical, variant
    for text, name in [("上海市浦东新区张江路100号停电了", "浦东新区"), ("Jing'an district power cut", "静安区"),
                       ("minhang outage", "闵行区"), ("松江明天停电吗", "松江区"), ("huangpu qu", "黄浦区")]:
        got = [(e["entity"], e["value"]) for e in x.extract(text)]
        assert ("district", name) in got, (text, got)
    assert not [e for e in x.extract("黄浦江边散步") if e["entity"] == "district"]


def test_an_english_street_names_its_chinese_street_by_pinyin() -> None:
    from intents.places import street_written

    assert street_written("12 Bibo Road, Pudong", "碧波路")
    assert street_written("Mudanjiang Rd", "牡丹江路")
    assert not street_written("12 Youyi Road", "牡丹江路")
    assert not street_written("the main road", "路")  # no name left to match


def test_english_street_addresses_are_entities_as_written() -> None:
    from intents.entities import EntityExtractor

    ex = EntityExtractor()
    def addresses(text: str) -> list[str]:
        return [e["value"] for e in ex.extract(text) if e["entity"] == "address"]

    assert addresses("someone at 12 Mudanjiang Road, Baoshan bypasses their meter") == ["12 Mudanjiang Road, Baoshan"]
    assert addresses("power is out at Room 302, 88 Youyi Road, Baoshan") == ["Room 302, 88 Youyi Road, Baoshan"]
    assert addresses("I live on Caoxi North Road No. 88.") == ["Caoxi North Road No. 88"]
    assert addresses("the main road is dark") == []
    assert addresses("my street has no power") == []
