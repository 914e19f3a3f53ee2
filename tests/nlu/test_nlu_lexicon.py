"""Slips of the input method and pinyin are read as the domain word (intents.lexicon)."""

from __future__ import annotations

import pytest

from intents.lexicon import VARIANTS, canonical


@pytest.mark.parametrize("text,read", [
    ("家里停点了", "家里停电了"), ("插坐冒烟", "插座冒烟"), ("点费多少", "电费多少"), ("老是跳匝", "老是跳闸"),
    ("tingdian le", "停电了"), ("jia li ting dian le", "家里停电了"), ("wo yao cha dianfei", "我要查电费"),
    ("zenme jiao dian fei", "怎么交电费"), ("我要转rengong", "我要转人工"), ("退定", "退订"),
    # Shanghainese
    ("勿要了", "不要了"), ("覅", "不要"), ("侬好", "你好"), ("阿拉屋里厢停电了", "我们家里停电了"),
    ("电费几钿", "电费多少钱"),
    # English slips of the key words, and other utilities in pinyin (fourth intents dev set)
    ("bil for march?", "bill for march?"), ("tarrif?", "tariff?"), ("tarif for shops", "tariff for shops"),
    ("electricty price", "electricity price"), ("shui fei zen me jiao", "水费怎么交"),
    ("ranqi fei duoshao", "燃气费多少"), ("zen me jiao dian fei", "怎么交电费"),
])
def test_slips_and_pinyin(text: str, read: str) -> None:
    assert canonical(text) == read


@pytest.mark.parametrize("text", ["i want to pay my bill", "you are a bot", "hang on", "hello",
                                  "ok", "change my phone number", "电费多少", "停电了",
                                  # a slip is read only as a whole word; English "me" stays English
                                  "bilibili", "bills", "tariffs", "give me the tariff", "tell me", "zen garden"])
def test_english_and_correct_spelling_unchanged(text: str) -> None:
    assert canonical(text) == text


def test_no_variant_is_a_word_of_another_entry() -> None:
    words = set(VARIANTS)
    assert not [v for vs in VARIANTS.values() for v in vs if v in words]


@pytest.mark.parametrize("text,lang", [
    ("guangfu bingwang zenme banli", "zh"), ("minhang mingtian tingdian ma", "zh"), ("cha yi xia dian fei", "zh"),
    ("wo xiang zai jia li an zhuang guang fu ban", "zh"),
    # English, and names or short words that happen to be spelt like syllables
    ("Jing'an", "en"), ("check my bill", "en"), ("hang on", "en"), ("long time no see", "en"), ("Tom Smith", "en"),
])
def test_pinyin_is_answered_in_chinese(text: str, lang: str) -> None:
    from intents.normalize import detect_language

    assert detect_language(text) == lang


def test_pinyin_reader_reads_the_datas_words() -> None:
    """A message in pinyin is read back as the words of the data the reader was fitted on,
    longest phrase first, each sound as the data spells it most often."""
    from intents.pinyin import PinyinReader, syllables

    reader = PinyinReader().fit(["电费多少钱一度", "我想办过户", "过户要什么材料", "一度电多少钱", "电费太贵"])
    assert reader.read("dianfei duoshao qian yi du a") == "电费多少钱一度 a"  # 啊 was never seen
    assert reader.read("wo yao ban guohu") == "我要办过户"
    assert reader.read("guo hu") == "过户"
    assert canonical("wo xiang ban guo hu", reader) == "我想办过户"
    assert canonical("i want to check my bill", reader) == "i want to check my bill"  # English stays
    assert syllables("xian") == ("xian",) and syllables("dianfei") == ("dian", "fei")
    assert syllables("hello") is None
