"""The in-process sliding-window counter: the limit within a window, the previous window's
weight as it slides, retry-after, and idle keys forgotten (on a pinned clock)."""

from __future__ import annotations

from common.ratelimit import LocalWindows


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limit_within_one_window_and_the_previous_window_weighs_as_it_slides() -> None:
    clock = Clock(6000.0)  # the start of a 60 s window
    w = LocalWindows(clock)
    assert all(w.hit("k", 10, 60) for _ in range(10))
    assert not w.hit("k", 10, 60)  # the 11th in the window
    assert w.hit("other", 10, 60)  # keys count apart
    assert w.retry_after("k", 10, 60) == 60.0  # this window is full: the next one
    clock.now += 60 + 30  # half-way into the next window: the previous 10 weigh 5
    assert all(w.hit("k", 10, 60) for _ in range(5))
    assert not w.hit("k", 10, 60)  # 5 (weighted) + 5 + 1 > 10
    assert w.retry_after("k", 10, 60) == 6.0  # one hit's worth of the previous window: 6 s
    clock.now += 6
    assert w.hit("k", 10, 60) and not w.hit("k", 10, 60)
    clock.now += 24  # the window after: the previous one held 6, all of it overlapping
    assert all(w.hit("k", 10, 60) for _ in range(4))
    assert not w.hit("k", 10, 60)


def test_idle_keys_are_forgotten_and_periods_kept_apart() -> None:
    clock = Clock(0.0)
    w = LocalWindows(clock)
    for i in range(100):
        assert w.hit(f"sender-{i}", 5, 60)
    assert w.hit("daily", 1, 86400)
    clock.now = 200.0  # two 60 s periods later
    assert w.hit("new", 5, 60)
    assert set(w._by_period[60]) == {"new"}  # the idle ones dropped on this hit
    assert not w.hit("daily", 1, 86400)  # a longer period is not expired with them
