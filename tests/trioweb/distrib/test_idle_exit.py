"""PublisherServer(idle_exit=...): a personal server stops once no request has
come for that long, never while a call is in flight (real UNIX sockets)."""

from __future__ import annotations

import pytest
import trio

from tests.support.polling import wait_until
from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import unix_listener
from trioweb.distrib import PublisherServer, ResourcePublisher, ResourceSubscription
from trioweb.resource import Resource
from trioweb.server import Site


class Slow(Resource):
    """Answers once ``release`` is set."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.running = 0

    async def render_GET(self, request):
        self.running += 1
        await self.release.wait()
        return b"done"


async def test_it_stops_when_idle_but_not_while_a_call_runs(start_site, nursery, tmp_path):
    path = str(tmp_path / "pb.sock")
    slow = Slow()
    server = PublisherServer(ResourcePublisher(Site(slow)), [await unix_listener(path)], idle_exit=0.3)
    stopped = trio.Event()

    async def run() -> None:
        await server.serve()
        stopped.set()

    nursery.start_soon(run)
    root = Resource()
    root.putChild(b"~alice", ResourceSubscription("unix", path))
    site = await start_site(root)
    responses = []

    async def fetch() -> None:
        responses.append(await site.request(get(b"/~alice/"), timeout=10))

    nursery.start_soon(fetch)
    await wait_until(lambda: slow.running == 1)
    await trio.sleep(0.8)  # idle_exit is long past, but a call is in flight
    assert not stopped.is_set()
    slow.release.set()
    with trio.fail_after(5):
        await stopped.wait()
    assert server.stopped_idle and responses[0].status == 200 and responses[0].body == b"done"


def test_idle_exit_must_be_positive():
    with pytest.raises(ValueError):
        PublisherServer(ResourcePublisher(Site(Resource())), [], idle_exit=0)
