"""Per-user request rates: a token bucket for each user's name.

Each user may make ``rate`` requests a second on average, in bursts of up
to ``burst``; beyond, ``take`` says how long until the next request would
be allowed (the front answers 429 with ``Retry-After``). Buckets are kept by
name, before any account lookup (so a flood of lookups is limited too), and
a bucket that has filled up again is forgotten on the next sweep: memory
stays bounded by the names asked for in the last ``burst / rate`` seconds.
Times come from trio's clock.
"""

from __future__ import annotations

import trio

SWEEP_AT_LEAST = 1024  # buckets kept before the first sweep


class RateLimits:
    """Token buckets by key; see the module docstring."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of one request at least")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens, when they were counted)
        self._sweep_above = SWEEP_AT_LEAST

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: bytes) -> float | None:
        """None if ``key`` may make a request now (one token is taken), else
        the seconds until it may."""
        now = trio.current_time()
        tokens, counted = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > self._sweep_above:
                self._sweep(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        """Forget the buckets that are full again (as good as new)."""
        refill = self.burst / self.rate
        self._buckets = {key: (tokens, counted) for key, (tokens, counted) in self._buckets.items()
                         if now - counted < refill}
        self._sweep_above = max(SWEEP_AT_LEAST, 2 * len(self._buckets))
