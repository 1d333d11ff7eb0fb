"""Per-backend admission: how many requests one personal server may hold at once.

A personal server that hangs, or is flooded, must not hold an unbounded
number of the front's tasks and connections, nor slow down anyone else's. So
each ``ResourceSubscription`` (in ``UserDirectory``: each user, whatever the
URL form) has an ``Admission``:

- at most ``max_in_flight`` requests are *in flight*: forwarded and not yet
  answered by a response head (or a failure, or the backend timeout). A
  request releases its slot when the head arrives, so a long streamed body
  (flow-controlled, costing the front only a window of memory) holds none;
- beyond that, a request waits for a slot in arrival order (FIFO), at most
  ``queue_timeout`` seconds, with at most ``max_queued`` waiting; a request
  that would wait longer, or find the queue full, is refused (the caller
  answers 503 with ``Retry-After``);
- a freed slot goes straight to the first waiter (``in_flight`` stays at the
  cap while anyone waits, so a newcomer can never pass the queue).

The fast path (a slot is free) is a comparison, an increment and one small
object (the ``Slot``, whose ``release`` is idempotent so that every way out
of a request, cancellation included, can call it and the slot is released
exactly once). Only waiting uses a trio primitive: one ``ParkingLot`` per
backend, which is FIFO and forgets a waiter that is cancelled or times out.
"""

from __future__ import annotations

import trio

RETRY_AFTER = b"5"  # seconds, in the Retry-After of a 503
# More than one personal server (one process) can make use of at once, so a
# busy site's visitors are not queued; few enough that a hung one holds little.
MAX_IN_FLIGHT = 64
# How long the line may grow, per slot: one user's flood must leave most of
# the front's connections (Limits.max_connections, 1024) to the others.
QUEUED_PER_SLOT = 4
MAX_QUEUED = QUEUED_PER_SLOT * MAX_IN_FLIGHT
QUEUE_TIMEOUT = 10.0


class BodyStalled(Exception):
    """The backend sent no piece of a response body within ``backend_timeout``
    (``ResourceSubscription._relay_body``: the other bound on what a backend holds)."""


class Overloaded(Exception):
    """No slot for this request; the message says why (for the log, not the client)."""


class Admission:
    """The in-flight cap and waiting queue of one backend."""

    __slots__ = ("_in_flight", "_lot", "max_in_flight", "max_queued", "queue_timeout")

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT, queue_timeout: float = QUEUE_TIMEOUT,
                 max_queued: int = MAX_QUEUED) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if queue_timeout < 0 or max_queued < 0:
            raise ValueError("queue_timeout and max_queued cannot be negative")
        self.max_in_flight = max_in_flight
        self.queue_timeout = queue_timeout
        self.max_queued = max_queued
        self._in_flight = 0
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def in_flight(self) -> int:
        """Requests holding a slot (waiting for their response head)."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._lot)

    def try_enter(self) -> Slot | None:
        """A slot if one is free now, else None (then ``await enter()``)."""
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            return Slot(self)
        return None

    async def enter(self) -> Slot:
        """Wait in line for a slot; ``Overloaded`` if the queue is full or the wait too long."""
        slot = self.try_enter()  # one may have come free since
        if slot is not None:
            return slot
        if len(self._lot) >= self.max_queued:
            raise Overloaded(f"{self._in_flight} requests in flight and {len(self._lot)} waiting (queue full)")
        with trio.CancelScope(deadline=trio.current_time() + self.queue_timeout):
            # Unparked by _release, which hands its slot over; a waiter that is
            # cancelled (its client left) or times out leaves the lot holding none.
            await self._lot.park()
            return Slot(self)
        raise Overloaded(f"no slot of {self.max_in_flight} came free within {self.queue_timeout:g} s")

    def _release(self) -> None:
        if self._lot:
            self._lot.unpark()  # the first waiter gets this slot: in_flight stays
        else:
            self._in_flight -= 1


class Slot:
    """One request's hold on a slot; ``release`` it when the head arrives (idempotent)."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission = self._admission
        if admission is not None:
            self._admission = None
            admission._release()
