"""_delayed.DelayedStarts on a MockClock: each start comes at its time, withdrawn ones never."""

from __future__ import annotations

import trio
import trio.testing

from trioweb._delayed import DelayedStarts, delayed_starts


async def test_starts_come_in_order_at_their_time_and_discarded_ones_never(autojump_clock: trio.testing.MockClock):
    starts = DelayedStarts(0.05)
    started: list[tuple[str, float]] = []

    def start(name: str) -> None:
        started.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(starts.run)
        begin = trio.current_time()
        starts.add("a", lambda: start("a"))
        await trio.sleep(0.02)
        starts.add("b", lambda: start("b"))
        starts.add("gone", lambda: start("gone"))
        starts.discard("gone")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in started] == ["a", "b"]
    assert [round(when - begin, 6) for _, when in started] == [0.05, 0.07]


async def test_one_task_per_run_and_delay(autojump_clock: trio.testing.MockClock):
    assert delayed_starts(0.05) is delayed_starts(0.05)
    assert delayed_starts(0.05) is not delayed_starts(1.0)
    fired = trio.Event()
    delayed_starts(1.0).add("x", fired.set)
    with trio.fail_after(2):
        await fired.wait()
