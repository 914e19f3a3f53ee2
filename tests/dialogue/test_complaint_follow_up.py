"""Which filed complaints an agent also takes up: staff conduct, or a loss to compensate."""

from __future__ import annotations

import pytest

from intents.signals import complaint_needs_agent


@pytest.mark.parametrize("text", [
    "我要投诉你们的抄表员态度很差",
    "营业厅柜员很不耐烦，还骂人",
    "这个月停了三次电，冰箱里东西全坏了，我要投诉！",
    "停电把我家电视烧坏了，要求赔偿",
    "the meter reader who came today was extremely rude to my mother",
    "the outage ruined all my food, I want compensation",
    "your engineer shouted at my father",
])
def test_staff_conduct_and_losses_go_to_an_agent(text: str) -> None:
    assert complaint_needs_agent(text)


@pytest.mark.parametrize("text", [
    "你们什么破服务！一个月停了三次电，还让不让人过日子了",
    "投诉：今天上门抄表的人没出示证件",
    "电费比上个月高了一倍，肯定是你们算错了",
    "电表坏了，我要投诉你们修得太慢",
    "This is ridiculous! Third blackout this month, your service is terrible",
    "I want to complain that nobody came for my repair",
    "my bill doubled, I think the meter is wrong. complaint!",
])
def test_other_complaints_are_a_work_order_alone(text: str) -> None:
    assert not complaint_needs_agent(text)
