"""The circuit breaker of one backend: a backend that keeps failing is answered 502 at once.

Theory of operation. A breaker is ``closed`` while the backend works: every
request goes through. ``threshold`` (5) requests in a row failing by the
backend's fault (no response head within the backend timeout, a malformed
response, the connection lost, the publisher raising, a body cut off) open
it: for ``first_delay`` (1 s) every request is answered 502 at once, with
``Retry-After``, without being sent, so that a hung backend does not hold a
slot and a client for the whole backend timeout per request. When the delay
is over the breaker is ``half-open``: the next request goes through as a
probe, and the others still get their 502 at once while it runs. The probe's
success closes the breaker; its failure opens it again for twice as long, up
to ``max_delay`` (30 s). A probe that ends with no verdict (its client left,
the backend was busy: 503) lets the next request probe. A success of any
request (one sent before the breaker opened) closes it.

Failures to connect do not count here: ``_backend.Backend`` has its own short
delay for those, which ends at once when a restarted personal server makes a
new socket; a breaker would keep a user who just restarted hers waiting.

Times come from trio's clock. The breaker holds no lock: trio runs one task
at a time and no method awaits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trioweb._request import Request
    from trioweb.distrib._backend import BackendStatus

THRESHOLD = 5
FIRST_DELAY = 1.0
MAX_DELAY = 30.0


class CircuitBreaker:
    """See the module docstring; ``status.circuit`` shows the state."""

    def __init__(self, status: BackendStatus, *, threshold: int = THRESHOLD, first_delay: float = FIRST_DELAY,
                 max_delay: float = MAX_DELAY) -> None:
        if threshold < 1:
            raise ValueError("a circuit breaker opens after one failure at least")
        self.status = status
        self.threshold = threshold
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.failures = 0  # in a row, while closed
        self.delay = first_delay  # of the next opening
        self._closes_at = 0.0  # while open: when it turns half-open
        self._probe: Request | None = None
        self._set("closed")

    @property
    def state(self) -> str:
        return self.status.circuit

    def _set(self, state: str) -> None:
        self.status.circuit = state

    def admit(self, request: Request) -> float | None:
        """None if ``request`` may be sent (perhaps as the probe), else the
        seconds until the next probe (a hint for ``Retry-After``)."""
        if self.state == "open":
            left = self._closes_at - trio.current_time()
            if left > 0:
                return left
            self._set("half-open")
        if self.state == "half-open":
            if self._probe is not None:
                return self.delay
            self._probe = request
        return None

    def succeeded(self, request: Request) -> None:
        self.failures = 0
        self.delay = self.first_delay
        self._probe = None
        self._set("closed")

    def failed(self, request: Request) -> None:
        if self.state == "closed":
            self.failures += 1
            if self.failures >= self.threshold:
                self._open()
        elif request is self._probe:
            self.delay = min(self.max_delay, self.delay * 2)
            self._open()
        # else: a request sent before the breaker opened; it says nothing new

    def ended(self, request: Request) -> None:
        """``request`` is over: if it was the probe and gave no verdict, the next request probes."""
        if request is self._probe:
            self._probe = None

    def _open(self) -> None:
        self.failures = 0
        self._probe = None
        self._closes_at = trio.current_time() + self.delay
        self._set("open")
