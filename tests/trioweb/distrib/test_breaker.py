"""The circuit breaker of a backend (security corpus A12): its logic on trio's
mock clock, then a front forwarding over a real UNIX socket to a personal
server that hangs, then recovers."""

from __future__ import annotations

import trio
import trio.testing

from tests.support.polling import wait_until
from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import start_personal
from trioweb.distrib import BackendStatus, ResourceSubscription
from trioweb.distrib._breaker import CircuitBreaker
from trioweb.resource import Resource


class Req:
    """Stands for a request: the breaker only tells requests apart."""


def breaker(**options) -> CircuitBreaker:
    return CircuitBreaker(BackendStatus("alice"), threshold=3, first_delay=1.0, max_delay=4.0, **options)


async def test_failures_in_a_row_open_it_and_a_success_in_between_resets_them(autojump_clock):
    circuit = breaker()
    for _ in range(2):
        circuit.failed(Req())
    circuit.succeeded(Req())
    for _ in range(2):
        circuit.failed(Req())
    assert circuit.state == "closed" and circuit.admit(Req()) is None
    circuit.failed(Req())
    assert circuit.state == "open" == circuit.status.circuit
    assert circuit.admit(Req()) == 1.0


async def test_after_the_delay_one_probe_goes_and_the_others_wait(autojump_clock):
    circuit = breaker()
    for _ in range(3):
        circuit.failed(Req())
    await trio.sleep(0.5)
    assert circuit.admit(Req()) == 0.5
    await trio.sleep(0.5)
    probe, other = Req(), Req()
    assert circuit.admit(probe) is None and circuit.state == "half-open"
    assert circuit.admit(other) is not None
    circuit.succeeded(probe)
    assert circuit.state == "closed" and circuit.admit(other) is None


async def test_a_failed_probe_doubles_the_delay_up_to_the_most(autojump_clock):
    circuit = breaker()
    for _ in range(3):
        circuit.failed(Req())
    for expected in (2.0, 4.0, 4.0):
        await trio.sleep(circuit.delay)
        probe = Req()
        assert circuit.admit(probe) is None
        circuit.failed(probe)
        assert circuit.state == "open" and circuit.admit(Req()) == expected
    await trio.sleep(4.0)
    probe = Req()
    assert circuit.admit(probe) is None
    circuit.succeeded(probe)
    for _ in range(3):
        circuit.failed(Req())
    assert circuit.admit(Req()) == 1.0  # a success started it over


async def test_stray_failures_while_open_do_not_extend_it_and_a_probe_without_verdict_frees_the_next(autojump_clock):
    circuit = breaker()
    for _ in range(3):
        circuit.failed(Req())
    circuit.failed(Req())  # a request sent before it opened
    assert circuit.admit(Req()) == 1.0
    await trio.sleep(1.0)
    probe, next_one = Req(), Req()
    assert circuit.admit(probe) is None
    circuit.failed(Req())  # not the probe: nothing changes
    assert circuit.state == "half-open"
    circuit.ended(probe)  # its client left, say
    assert circuit.admit(next_one) is None


class Flaky(Resource):
    """Hangs until ``recover()``, then answers; counts the requests that reached it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.recovered = trio.Event()
        self.seen = 0
        self.running = 0

    async def render_GET(self, request):
        self.seen += 1
        self.running += 1
        try:
            await self.recovered.wait()
            return b"ok"
        finally:
            self.running -= 1


async def flaky_front(start_site, nursery, tmp_path):
    flaky = Flaky()
    path = str(tmp_path / "flaky.sock")
    await start_personal(nursery, path, flaky)
    subscription = ResourceSubscription("unix", path, backend_timeout=0.3, breaker_threshold=3, breaker_delay=0.5)
    root = Resource()
    root.putChild(b"~alice", subscription)
    return await start_site(root), subscription, flaky


async def test_a_hanging_backend_is_answered_502_at_once_then_probed_and_closed(start_site, nursery, tmp_path):
    site, subscription, flaky = await flaky_front(start_site, nursery, tmp_path)
    for _ in range(3):
        assert (await site.request(get(b"/~alice/"), timeout=10)).status == 504
    refused = await site.request(get(b"/~alice/"), timeout=10)
    assert refused.status == 502 and refused.header(b"retry-after") == b"1"
    assert flaky.seen == 3  # not sent
    assert subscription.status.circuit == "open" and subscription.status.bad_gateway == 1
    flaky.recovered.set()
    await trio.sleep(0.6)
    answered = await site.request(get(b"/~alice/"), timeout=10)
    assert (answered.status, answered.body) == (200, b"ok")
    assert flaky.seen == 4 and subscription.status.circuit == "closed"


async def test_while_the_probe_runs_others_get_502_and_a_failed_probe_reopens_longer(start_site, nursery, tmp_path):
    site, subscription, flaky = await flaky_front(start_site, nursery, tmp_path)
    for _ in range(3):
        await site.request(get(b"/~alice/"), timeout=10)
    await trio.sleep(0.6)
    results = []

    async def probe():
        results.append(await site.request(get(b"/~alice/probe"), timeout=10))

    async with trio.open_nursery() as clients:
        clients.start_soon(probe)
        await wait_until(lambda: flaky.running == 1)
        assert subscription.status.circuit == "half-open"
        other = await site.request(get(b"/~alice/other"), timeout=10)
        assert other.status == 502 and flaky.seen == 4
    assert results[0].status == 504
    assert subscription.status.circuit == "open" and subscription.breaker.delay == 1.0
    assert (await site.request(get(b"/~alice/"), timeout=10)).status == 502 and flaky.seen == 4


async def test_failed_connects_are_left_to_the_backends_own_delay(start_site, tmp_path):
    missing = ResourceSubscription("unix", str(tmp_path / "nobody.sock"), breaker_threshold=2)
    root = Resource()
    root.putChild(b"~gone", missing)
    site = await start_site(root)
    for _ in range(4):
        assert (await site.request(get(b"/~gone/"), timeout=10)).status == 502
    assert missing.status.circuit == "closed"
