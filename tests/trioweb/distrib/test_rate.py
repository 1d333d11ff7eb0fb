"""Per-user request rates (distrib._rate.RateLimits) on trio's mock clock."""

from __future__ import annotations

import pytest
import trio

from trioweb.distrib._rate import SWEEP_AT_LEAST, RateLimits


async def test_a_burst_then_the_steady_rate(autojump_clock):
    limits = RateLimits(rate=2, burst=4)
    assert [limits.take(b"alice") for _ in range(4)] == [None] * 4
    assert limits.take(b"alice") == pytest.approx(0.5)
    assert limits.take(b"bob") is None  # each user has her own bucket
    await trio.sleep(0.5)
    assert limits.take(b"alice") is None
    assert limits.take(b"alice") == pytest.approx(0.5)


async def test_refused_requests_do_not_push_the_next_one_further(autojump_clock):
    limits = RateLimits(rate=1, burst=1)
    assert limits.take(b"a") is None
    for _ in range(10):
        assert limits.take(b"a") is not None
    await trio.sleep(1)
    assert limits.take(b"a") is None


async def test_buckets_that_filled_again_are_forgotten(autojump_clock):
    limits = RateLimits(rate=10, burst=10)
    for index in range(SWEEP_AT_LEAST):
        limits.take(b"u%d" % index)
    assert len(limits) == SWEEP_AT_LEAST  # recent: all kept
    await trio.sleep(2)  # all full again
    limits.take(b"late")  # past the threshold: a sweep
    assert len(limits) == 1


def test_nonsense_limits_are_refused():
    with pytest.raises(ValueError):
        RateLimits(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimits(rate=1, burst=0)
