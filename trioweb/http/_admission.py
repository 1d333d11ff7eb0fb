"""Who gets a connection slot: the global cap, the per-address cap, and idle eviction.

Theory of operation
-------------------
``Admission`` counts connections from the moment they are accepted (a TLS
handshake in progress holds a slot like any other connection) until their
task ends, in total and per client IP address. ``admit(key)`` says whether a
new connection may be served:

- over ``max_connections_per_address`` for its address: refused, whatever
  the total (one address cannot take every slot);
- over ``max_connections`` in total: the server first closes the connection
  that has waited longest for a request (idle keep-alive, or never sent a
  byte; see ``Server``), and only refuses when none is idle.

A refused client gets a 503 with ``Retry-After`` and a lingering close (see
``trioweb.http._server``). Refusals are counted (``refused``) and logged at
most once per address per minute (through ``RateLimitedLog``, see
``trioweb.http._server``), so an attacker cannot flood the log either.

UNIX-socket clients have no address to tell them apart (``key`` None): they
count against the total only.
"""

from __future__ import annotations

from collections import Counter


class Admission:
    """Open-connection counts, in total and per client address."""

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address  # 0: no per-address cap
        self.open = 0
        self._by_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # refusals by reason: "address", "total"

    def over_address_cap(self, key: str | None) -> bool:
        return key is not None and 0 < self.max_per_address <= self._by_address[key]

    def full(self) -> bool:
        return self.open >= self.max_connections

    def enter(self, key: str | None) -> None:
        self.open += 1
        if key is not None:
            self._by_address[key] += 1

    def leave(self, key: str | None) -> None:
        self.open -= 1
        if key is not None:
            count = self._by_address[key] - 1
            if count:
                self._by_address[key] = count
            else:
                del self._by_address[key]

    def open_from(self, key: str) -> int:
        return self._by_address.get(key, 0)
