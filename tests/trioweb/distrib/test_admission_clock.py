"""_admission.Admission alone, on a MockClock: the cap, the FIFO line, its bounds in length and time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioweb.distrib._admission import Admission, Overloaded


async def test_slots_up_to_the_cap_then_a_line_that_is_served_in_order(autojump_clock: trio.testing.MockClock):
    admission = Admission(max_in_flight=2, queue_timeout=10, max_queued=3)
    held = [admission.try_enter(), admission.try_enter()]
    assert all(held) and admission.try_enter() is None and admission.in_flight == 2
    served: list[int] = []

    async def wait(number: int) -> None:
        slot = await admission.enter()
        served.append(number)
        slot.release()

    async with trio.open_nursery() as nursery:
        for number in range(3):
            nursery.start_soon(wait, number)
            await trio.sleep(0.1)  # arrive in this order
        assert admission.queued == 3
        with pytest.raises(Overloaded, match="queue full"):
            await admission.enter()
        held[0].release()  # handed to the first in line: the count stays at the cap
        held[0].release()  # a second release of the same slot does nothing
        await trio.sleep(1)
    assert served == [0, 1, 2]
    held[1].release()
    assert (admission.in_flight, admission.queued) == (0, 0)


async def test_a_wait_past_the_queue_timeout_is_refused_and_leaves_the_line(autojump_clock: trio.testing.MockClock):
    admission = Admission(max_in_flight=1, queue_timeout=10, max_queued=5)
    slot = admission.try_enter()
    start = trio.current_time()
    with pytest.raises(Overloaded, match="within 10 s"):
        await admission.enter()
    assert trio.current_time() - start == pytest.approx(10)
    assert admission.queued == 0
    assert slot is not None
    slot.release()
    assert admission.in_flight == 0


async def test_a_waiter_cancelled_in_line_takes_no_slot(autojump_clock: trio.testing.MockClock):
    admission = Admission(max_in_flight=1, queue_timeout=10, max_queued=5)
    slot = admission.try_enter()
    with trio.move_on_after(1):
        await admission.enter()
    assert admission.queued == 0
    assert slot is not None
    slot.release()
    assert admission.in_flight == 0
