"""``RateLimitedLog``: log lines that a remote party can trigger, without letting it flood the log.

Any line whose cause is on the other side of a socket (a client's malformed
request, a personal server breaking the protocol, a refused peer) can be
triggered as fast as that party can send. Written through a
``RateLimitedLog``, such lines are grouped by a key naming who caused them
(a client address, a backend): each key may write ``burst`` lines, then one
more each ``period / burst`` seconds (a token bucket). Lines beyond are
counted, not written; the next line written for that key says how many were
dropped. Memory is bounded too: at most ``max_keys`` keys are remembered,
the least recently used forgotten first.

One line costs a dictionary look-up and a little arithmetic whether it is
written or not, so it can sit on paths a flood takes.

    log = RateLimitedLog(logging.getLogger("trioweb.distrib"))
    log.warning(backend_name, "closing %s: %s", backend_name, reason)

Code that logs through a logger it is given (``rpc.Broker(logger=...)``)
gets ``log.adapter(key)``, a ``LoggerAdapter`` drawing on the same share.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["RateLimitedLog"]


class _Bucket:
    __slots__ = ("dropped", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.dropped = 0


class RateLimitedLog:
    """A logger's lines, at most ``burst`` at once and ``burst`` per ``period`` after, per key."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, period: float = 60.0,
                 max_keys: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or period <= 0 or max_keys < 1:
            raise ValueError("burst and max_keys must be at least 1, period positive")
        self.logger = logger
        self.burst = burst
        self.period = period
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def log(self, key: Hashable, level: int, message: str, *args: object, **kwargs: Any) -> bool:
        """Log ``message % args`` at ``level`` unless ``key`` has used its share; True
        if written. ``kwargs`` go to ``Logger.log`` (``exc_info``...)."""
        return self._log(self.logger, key, level, message, args, kwargs)

    def adapter(self, key: Hashable, logger: logging.Logger | None = None) -> logging.LoggerAdapter[logging.Logger]:
        """A ``LoggerAdapter`` of ``logger`` (default ours) whose lines of WARNING and
        above take ``key``'s share: for code that logs through a logger it is
        given (``rpc.Broker(logger=...)``)."""
        return _KeyedAdapter(self, key, logger or self.logger)

    def _log(self, logger: logging.Logger, key: Hashable, level: int, message: str, args: tuple[object, ...],
             kwargs: dict[str, Any]) -> bool:
        if not logger.isEnabledFor(level):
            return False
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.burst / self.period)
            bucket.updated = now
        if bucket.tokens < 1:
            bucket.dropped += 1
            return False
        bucket.tokens -= 1
        if bucket.dropped:
            message += " (%d similar lines dropped)"
            args = (*args, bucket.dropped)
            bucket.dropped = 0
        logger.log(level, message, *args, **kwargs)
        return True

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(key, logging.WARNING, message, *args)

    def info(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(key, logging.INFO, message, *args)


class _KeyedAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """See ``RateLimitedLog.adapter``; lines below WARNING pass as they are."""

    def __init__(self, limiter: RateLimitedLog, key: Hashable, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._limiter = limiter
        self._key = key

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            self.logger.log(level, msg, *args, **kwargs)
        else:
            self._limiter._log(self.logger, self._key, level, str(msg), args, kwargs)
