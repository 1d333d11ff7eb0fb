"""What a slow, hung or flooded personal server can hold of the front (security corpus A8, A12).

A front Site in this process forwards over real UNIX sockets to personal
servers (real or hostile publishers) in this process too. Each backend has
its own cap on requests in flight (waiting for their response head), a FIFO
queue bounded in length and time, and 503 + Retry-After beyond; each wait for
a piece of a response body is bounded by ``backend_timeout``.
"""

from __future__ import annotations

import os
import pwd
from types import SimpleNamespace

import pytest
import trio

import rpc
from tests.support.polling import wait_until
from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import Hang, front_to_personal, hostile_front, serve_hostile, start_personal
from trioweb.distrib import ResourceSubscription
from trioweb.distrib.userdir import UserDirectory
from trioweb.resource import Resource


class Hung(Hang, rpc.Referenceable):
    """A personal server that takes every request and never answers; counts what it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.paths: list[bytes] = []

    async def remote_request(self, message, body):
        self.calls += 1
        self.paths.append(message["uri"])
        await self.until_cancelled()


async def serve_hung(nursery, path) -> Hung:
    hung = Hung()
    await nursery.start(rpc.serve_unix, str(path), lambda broker: hung)
    return hung


def assert_503(response, socket_path) -> None:
    assert response.status == 503
    assert response.header(b"retry-after") == b"5"
    assert str(socket_path).encode() not in response.body and b"busy" in response.body


async def test_a_hung_backend_holds_its_slots_only_and_the_rest_get_503(start_site, nursery, tmp_path, caplog):
    hung_path = tmp_path / "erin.sock"
    hung = await serve_hung(nursery, hung_path)
    erin = ResourceSubscription("unix", str(hung_path), backend_timeout=1.5, max_in_flight=2,
                                queue_timeout=0.5, max_queued=1)
    await start_personal(nursery, str(tmp_path / "alice.sock"))
    root = Resource()
    root.putChild(b"~erin", erin)
    root.putChild(b"~alice", ResourceSubscription("unix", str(tmp_path / "alice.sock")))
    site = await start_site(root)
    results = {}

    async def fetch(name):
        started = trio.current_time()
        response = await site.request(get(b"/~erin/" + name), timeout=10)
        results[name] = response, trio.current_time() - started

    async with trio.open_nursery() as clients:
        for name in (b"1", b"2"):
            clients.start_soon(fetch, name)
        await wait_until(lambda: hung.running == 2)
        clients.start_soon(fetch, b"3")
        await wait_until(lambda: erin.admission.queued == 1)
        clients.start_soon(fetch, b"4")  # the queue is full: refused at once
        await wait_until(lambda: b"4" in results)
        assert_503(results[b"4"][0], hung_path)
        assert b"3" not in results  # refused before the one in line timed out
        # Meanwhile another personal server is served as usual.
        assert (await site.request(get(b"/~alice/"))).body == b"personal home"
        assert (erin.admission.in_flight, erin.admission.queued) == (2, 1)
    response, waited = results[b"3"]
    assert_503(response, hung_path)
    assert 0.45 <= waited < 1.4  # after queue_timeout, before the ones in flight timed out
    for name in (b"1", b"2"):
        response, waited = results[name]
        assert response.status == 504 and waited >= 1.45
    assert hung.calls == 2 and hung.peak == 2  # the queued and the refused never reached the backend
    assert (erin.admission.in_flight, erin.admission.queued) == (0, 0)
    await wait_until(lambda: hung.running == 0)  # the timed-out calls were cancelled on the backend
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("503 for /~erin/")]
    assert any("queue full" in w and str(hung_path) in w for w in warnings)
    assert any("within 0.5 s" in w and str(hung_path) in w for w in warnings)


class Counting(Resource):
    """Answers after a short wait; records how many requests it had at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.running = self.peak = 0

    async def render_GET(self, request):
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(0.02)
        finally:
            self.running -= 1
        return b"ok"


async def test_a_burst_waits_in_line_and_is_all_served(start_site, nursery, tmp_path):
    counting = Counting()
    site, subscription = await front_to_personal(start_site, nursery, tmp_path, counting, max_in_flight=4)
    statuses = []

    async def fetch():
        statuses.append((await site.request(get(b"/~alice/"), timeout=20)).status)

    async with trio.open_nursery() as clients:
        for _ in range(60):  # all from 127.0.0.1: within the per-address connection cap (64)
            clients.start_soon(fetch)
    assert statuses == [200] * 60
    assert counting.peak == 4  # the cap was reached, and held
    assert (subscription.admission.in_flight, subscription.admission.queued) == (0, 0)


async def test_clients_leaving_in_flight_or_queued_release_their_slots(start_site, nursery, tmp_path):
    path = tmp_path / "erin.sock"
    hung = await serve_hung(nursery, path)
    erin = ResourceSubscription("unix", str(path), backend_timeout=30, max_in_flight=1, queue_timeout=30,
                                max_queued=5)
    root = Resource()
    root.putChild(b"~erin", erin)
    site = await start_site(root)
    admission = erin.admission

    async def send(name):
        conn = await site.connect()
        await conn.send(get(b"/~erin/" + name))
        await wait_until(lambda: admission.in_flight + admission.queued == len(clients) + 1)
        return conn

    clients = {}
    for name in (b"a", b"b", b"c", b"d"):  # in this order: a in flight, then b, c, d in line
        clients[name] = await send(name)
    await wait_until(lambda: hung.running == 1)
    assert (admission.in_flight, admission.queued, hung.paths) == (1, 3, [b"/~erin/a"])
    await clients[b"c"].aclose()  # leaves the middle of the queue
    await wait_until(lambda: admission.queued == 2)
    await clients[b"a"].aclose()  # leaves while in flight: its slot goes to the first in line
    await wait_until(lambda: hung.calls == 2)
    await clients[b"b"].aclose()
    await wait_until(lambda: hung.calls == 3)
    assert hung.paths == [b"/~erin/a", b"/~erin/b", b"/~erin/d"]  # first come, first served
    assert (admission.in_flight, admission.queued) == (1, 0)
    await clients[b"d"].aclose()
    await wait_until(lambda: admission.in_flight == 0)
    await wait_until(lambda: hung.cancelled == 3 and hung.running == 0)  # each call was cancelled on the backend
    # Nothing leaked: the next request goes straight to the backend.
    clients = {}
    last = await send(b"e")
    await wait_until(lambda: hung.calls == 4)
    await last.aclose()
    await wait_until(lambda: admission.in_flight == 0)


async def test_a_response_streaming_its_body_holds_no_slot(start_site, nursery, tmp_path):
    started, finish = trio.Event(), trio.Event()

    async def answer(message, body, front):
        if message["uri"] == b"/~alice/quick":
            return {"status": 200, "reason": None, "headers": [], "length": 5, "body": b"quick"}
        stream = rpc.StreamSender()
        await front.sendRemote("response", message["token"], {"status": 200, "reason": None, "headers": [],
                                                              "length": None}, stream)
        await stream.send_all(b"first ")
        started.set()
        await finish.wait()
        await stream.send_all(b"last")
        await stream.aclose()

    path = str(tmp_path / "pb.sock")
    await serve_hostile(nursery, path, answer)
    alice = ResourceSubscription("unix", path, max_in_flight=1, max_queued=0)
    root = Resource()
    root.putChild(b"~alice", alice)
    site = await start_site(root)
    streaming = await site.connect()
    await streaming.send(get(b"/~alice/stream"))
    with trio.fail_after(5):
        await started.wait()
    await wait_until(lambda: alice.admission.in_flight == 0)  # the head came: the body is streaming
    assert (await site.request(get(b"/~alice/quick"))).body == b"quick"  # not a 503
    finish.set()
    assert (await streaming.read_response()).body == b"first last"


async def test_a_backend_that_is_down_releases_the_slot(start_site, tmp_path):
    missing = ResourceSubscription("unix", str(tmp_path / "missing.sock"), max_in_flight=1, max_queued=0)
    root = Resource()
    root.putChild(b"~bob", missing)
    site = await start_site(root)
    for _ in range(3):
        assert (await site.request(get(b"/~bob/"))).status == 502  # never 503: no slot is kept
    assert missing.admission.in_flight == 0


@pytest.mark.parametrize("via", ["streamed", "answer"])
@pytest.mark.parametrize("sent", [b"", b"partial "])
async def test_a_backend_that_stalls_mid_body_is_cut_off(start_site, nursery, tmp_path, caplog, via, sent):
    cut, stopped = trio.Event(), trio.Event()
    calls, how = [], []

    async def produce(stream):
        """Stalls; afterwards, the producer must learn that it can stop."""
        if sent:
            await stream.send_all(sent)
        try:
            await cut.wait()
            with trio.fail_after(5):
                while True:  # until the front's "stop" has come
                    await stream.send_all(b"late")
                    await trio.sleep(0.05)
        except trio.Cancelled:  # the call was cancelled (its work stops)
            how.append("cancelled")
            stopped.set()
            raise
        except rpc.StreamError:  # the front stopped reading the stream
            how.append("stream dropped")
            stopped.set()

    async def answer(message, body, front):
        calls.append(message)
        if len(calls) > 1:
            return {"status": 200, "reason": None, "headers": [], "length": 2, "body": b"ok"}
        stream = rpc.StreamSender()
        head = {"status": 200, "reason": None, "headers": [], "length": None}
        if via == "streamed":
            await front.sendRemote("response", message["token"], head, stream)
            await produce(stream)  # the call stays open while the body streams
            return None
        nursery.start_soon(produce, stream)
        return {**head, "stream": stream}  # the call is answered; its body comes on the stream

    site = await hostile_front(start_site, nursery, tmp_path, answer)  # backend_timeout=1
    conn = await site.connect()
    started = trio.current_time()
    await conn.send(get(b"/~mallory/"))
    if sent:
        assert await conn.is_closed()  # the connection is cut: never a complete response
        received = bytes(conn.buffer)
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(sent + b"\r\n")
    else:  # nothing was sent yet: a clean 504 instead
        assert (await conn.read_response()).status == 504
    assert trio.current_time() - started >= 0.95
    assert "no piece of the body within 1 s" in caplog.text
    cut.set()
    with trio.fail_after(5):
        await stopped.wait()  # the producer was told to stop:
    # the call is cancelled if still open; a stream given in the answer is dropped.
    assert how == ["cancelled" if via == "streamed" else "stream dropped"]
    # The front keeps serving, the same backend included.
    assert (await site.request(get(b"/~mallory/"))).body == b"ok"


async def test_a_slow_body_is_not_cut_off_while_pieces_keep_coming(start_site, nursery, tmp_path):
    async def answer(message, body, front):
        stream = rpc.StreamSender()
        await front.sendRemote("response", message["token"], {"status": 200, "reason": None, "headers": [],
                                                              "length": None}, stream)
        for i in range(4):  # 1.2 s in all, each piece within backend_timeout (1 s) of the last
            await stream.send_all(b"%d" % i)
            if i < 3:
                await trio.sleep(0.4)
        await stream.aclose()

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    response = await site.request(get(b"/~mallory/"))
    assert response.status == 200 and response.body == b"0123"


async def test_the_cap_is_per_user_whatever_the_url_form(start_site, nursery, tmp_path):
    me = pwd.getpwuid(os.getuid())
    users = {}
    for name in ("alice", "erin"):
        home = tmp_path / name
        home.mkdir(mode=0o755)
        home.chmod(0o755)
        users[name] = SimpleNamespace(pw_name=name, pw_uid=me.pw_uid, pw_gid=me.pw_gid, pw_gecos=name,
                                      pw_dir=str(home))
    database = SimpleNamespace(getpwnam=lambda name: users[name], getpwall=lambda: list(users.values()))
    hung = await serve_hung(nursery, tmp_path / "erin" / ".trioweb-pb")
    await serve_hostile(nursery, str(tmp_path / "alice" / ".trioweb-pb"), _hello)
    directory = UserDirectory(database, min_uid=0, max_in_flight=1, queue_timeout=5, max_queued=0)
    site = await start_site(directory)
    first = await site.connect()
    await first.send(get(b"/~erin/a"))
    await wait_until(lambda: hung.running == 1)
    refused = await site.request(get(b"/users/erin/b"))  # the same user by the other form: no slot
    assert_503(refused, tmp_path / "erin")
    assert (await site.request(get(b"/users/alice/"))).body == b"hello"  # another user is served
    assert (await site.request(get(b"/~alice/"))).body == b"hello"
    erin = directory.site_for(users["erin"])
    assert (erin.admission.in_flight, erin.admission.max_in_flight) == (1, 1)
    await first.aclose()
    await wait_until(lambda: erin.admission.in_flight == 0)


async def _hello(message, body, front):
    return {"status": 200, "reason": None, "headers": [], "length": 5, "body": b"hello"}


def test_the_admission_needs_a_slot_at_least():
    with pytest.raises(ValueError):
        ResourceSubscription("unix:/nowhere", max_in_flight=0)
