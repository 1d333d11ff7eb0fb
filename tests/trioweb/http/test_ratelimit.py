"""RateLimitedLog: a burst per key, then a trickle, with the count of lines dropped."""

from __future__ import annotations

import logging

import pytest

from trioweb.http import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_per_key_then_one_line_per_period_share_with_the_count_dropped(caplog):
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), burst=3, period=30.0, clock=clock)
    with caplog.at_level(logging.INFO, "test.ratelimit"):
        written = [log.warning("mallory", "bad frame %d", i) for i in range(1000)]
        assert written.count(True) == 3 and written[:3] == [True] * 3
        assert log.warning("alice", "bad frame from alice")  # another key has its own share
        clock.now += 10.0  # one line's worth (30 s / 3)
        assert log.warning("mallory", "bad frame %d", 1000)
        assert not log.warning("mallory", "bad frame %d", 1001)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["bad frame 0", "bad frame 1", "bad frame 2", "bad frame from alice",
                     "bad frame 1000 (997 similar lines dropped)"]


def test_keys_are_bounded_and_lines_below_the_level_cost_nothing(caplog):
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.ratelimit2"), burst=1, max_keys=2, clock=clock)
    with caplog.at_level(logging.WARNING, "test.ratelimit2"):
        assert not log.info("a", "not enabled")
        for key in ("a", "b", "c", "a"):  # "a" was forgotten when "c" came: a fresh share
            assert log.warning(key, "line from %s", key)
    assert len(log._buckets) == 2
    with pytest.raises(ValueError):
        RateLimitedLog(logging.getLogger("x"), burst=0)


def test_an_adapter_takes_its_keys_share_for_warnings_and_passes_debug_lines(caplog):
    clock = Clock()
    limiter = RateLimitedLog(logging.getLogger("test.ratelimit3"), burst=2, clock=clock)
    adapter = limiter.adapter("peer", logging.getLogger("test.other"))
    with caplog.at_level(logging.DEBUG):
        for i in range(5):
            adapter.warning("closing connection %d", i)
            adapter.debug("detail %d", i)
        limiter.warning("peer", "from the limiter itself")  # the same key: no share left
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert [m for m in messages if "closing" in m[1]] == [("test.other", "closing connection 0"),
                                                          ("test.other", "closing connection 1")]
    assert len([m for m in messages if "detail" in m[1]]) == 5
    assert not [m for m in messages if "limiter itself" in m[1]]
