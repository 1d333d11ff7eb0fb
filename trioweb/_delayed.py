"""``DelayedStarts``: run a callback a fixed time after it was registered, unless
it was withdrawn first, with one system task per trio run instead of a timer each.

A request uses it to start the disconnect watcher of a response that is still
running ``WATCH_AFTER`` after it began (see ``trioweb._request``): most such
responses end sooner, and a timer per response would cost more than they do.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class DelayedStarts:
    """Calls ``start()`` ``delay`` seconds after ``add(key, start)`` unless ``discard(key)`` came first.

    The delay is the same for everyone, so the order of arrival is the order
    in which they are due: the task sleeps until the oldest is. With none
    due it waits one more ``delay`` before it parks, and is woken by the next
    ``add`` only once parked: a server answering many quick requests (each
    added and discarded before its time) wakes it once a ``delay``, not once
    a request. An entry that comes during that wait is due after it ends, so
    it still starts on time.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._due: dict[object, tuple[float, Callable[[], None]]] = {}  # in order of arrival
        self._lot = trio.lowlevel.ParkingLot()
        self._parked = False

    def add(self, key: object, start: Callable[[], None]) -> None:
        self._due[key] = (trio.current_time() + self.delay, start)
        if self._parked:
            self._parked = False
            self._lot.unpark_all()

    def discard(self, key: object) -> None:
        self._due.pop(key, None)

    async def run(self) -> None:
        due = self._due
        while True:
            if not due:
                await trio.sleep(self.delay)
                if not due:
                    self._parked = True
                    await self._lot.park()
                continue
            key = next(iter(due))
            when, start = due[key]
            if when > trio.current_time():
                await trio.sleep_until(when)
                continue  # it may have been discarded meanwhile
            del due[key]
            start()


_per_run: trio.lowlevel.RunVar[dict[float, DelayedStarts]] = trio.lowlevel.RunVar("trioweb_delayed_starts")


def delayed_starts(delay: float) -> DelayedStarts:
    """This trio run's `DelayedStarts` for ``delay``, and its task, made on first use."""
    try:
        by_delay = _per_run.get()
    except LookupError:
        by_delay = {}
        _per_run.set(by_delay)
    starts = by_delay.get(delay)
    if starts is None:
        starts = by_delay[delay] = DelayedStarts(delay)
        trio.lowlevel.spawn_system_task(starts.run, name=f"trioweb delayed starts ({delay:g} s)")
    return starts
