"""A front Site forwarding to a personal Site over a real UNIX socket, in one process.

The cross-process and cross-uid cases are in tests/e2e/test_community_hosting.py;
here the forwarding itself: what crosses, what comes back, what fails how.
"""

from __future__ import annotations

import os
import pwd
import threading
from types import SimpleNamespace

import pytest
import trio

import rpc
from tests.support.polling import wait_until
from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import (
    Hang,
    Whole,
    account_with_home,
    fake_backend,
    front_to_personal,
    front_with_a_neighbour,
    hostile_front,
    pattern,
    personal_root,
    serve_hostile,
    start_personal,
    unix_listener,
)
from trioweb.distrib import ResourcePublisher, ResourceSubscription, serve_publisher
from trioweb.distrib.userdir import UserDirectory
from trioweb.resource import Resource
from trioweb.server import Site
from trioweb.static import File


async def test_get_through_the_front(front):
    response = await front.request(get(b"/~alice/echo/a/b?x=1", host=b"example.com:8080"))
    assert response.status == 200
    assert response.body == b"url=http://example.com:8080/~alice/echo client=127.0.0.1"
    assert response.header(b"x-seen") == b"[b'~alice', b'echo'] [b'a', b'b'] {b'x': [b'1']}"
    assert response.header(b"content-length") == b"%d" % len(response.body)


async def test_home_and_404_and_405_come_from_the_personal_site(front):
    assert (await front.request(get(b"/~alice/"))).body == b"personal home"
    assert (await front.request(get(b"/~alice/nothing"))).status == 404
    refused = await front.request(b"DELETE /~alice/echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert refused.status == 405 and refused.header(b"allow") == b"GET, HEAD, POST"


async def test_client_forwarding_claims_do_not_reach_the_personal_server(front):
    # Security corpus §3.2 A11: the backend learns the client's address from
    # the front, never from headers a client can forge.
    response = await front.request(get(b"/~alice/headers", extra=b"X-Forwarded-For: 6.6.6.6\r\n"
                                       b"Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Kept: yes\r\n"))
    assert response.status == 200
    assert b"6.6.6.6" not in response.body and b"x-kept" in response.body


async def test_head_keeps_length_and_sends_no_body(front):
    conn = await front.connect()
    await conn.send(b"HEAD /~alice/echo HTTP/1.1\r\nHost: a\r\n\r\n" + get(b"/~alice/"))
    head = await conn.read_response(head_request=True)
    assert head.status == 200 and int(head.header(b"content-length")) > 0
    assert (await conn.read_response()).body == b"personal home"


async def test_post_body_crosses(front):
    body = b"a=1&b=2"
    response = await front.request(
        b"POST /~alice/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert response.body == b"7 application/x-www-form-urlencoded"


async def test_chunked_upload_crosses(front):
    response = await front.request(
        b"POST /~alice/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert response.body == b"11"


async def test_large_upload_and_the_personal_sites_limit(front):
    body = b"u" * (5 * 1024 * 1024)
    response = await front.request(
        b"POST /~alice/upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body, timeout=20)
    assert response.body == b"%d" % len(body)
    # The echo resource keeps the 1 MiB default, enforced on the personal side.
    # Like any client of a server that refuses a body, this one reads the answer
    # while still sending (the server stops reading and closes).
    conn = await front.connect(timeout=20)

    async def send_body():
        try:
            await conn.send(b"POST /~alice/echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_body)
        too_big = await conn.read_response()
        nursery.cancel_scope.cancel()
    assert too_big.status == 413


async def test_streamed_response(front):
    response = await front.request(get(b"/~alice/big?mib=4"), timeout=20)
    assert response.status == 200 and response.chunked
    assert len(response.body) == 4 * 1024 * 1024


@pytest.mark.parametrize("mib, chunked", [(1, False), (50, False), (3, True)])
async def test_the_front_splices_large_bodies_intact(front, monkeypatch, mib, chunked):
    from trioweb._request import Request

    spliced = []
    original = Request.sendpipe

    async def counting(self, fd, count, on_sent):
        spliced.append(count)
        await original(self, fd, count, on_sent)

    monkeypatch.setattr(Request, "sendpipe", counting)
    await front.request(get(b"/~alice/sized?mib=1"))  # the connection to the backend is made
    spliced.clear()
    await trio.sleep(0.05)
    fds = len(os.listdir("/proc/self/fd"))
    response = await front.request(get(b"/~alice/sized?mib=%d%s" % (mib, b"&chunked=1" * chunked)), timeout=60)
    assert response.status == 200 and response.chunked == chunked
    assert response.body == pattern(mib << 20)
    # All but the start of each payload (up to 64 KiB, read with its frame header) comes
    # through the pipe; to a chunked response it is read back from the pipe and sent as chunks.
    assert sum(spliced) >= (mib << 20) * 3 // 4
    await trio.sleep(0.05)  # the client's connection closes on the server side
    assert len(os.listdir("/proc/self/fd")) <= fds  # the pipe went back to the pool


async def test_large_complete_response_comes_on_a_stream_in_the_answer(front):
    response = await front.request(get(b"/~alice/whole"))
    assert response.status == 200
    assert response.header(b"content-length") == b"%d" % len(Whole.body)
    assert response.body == Whole.body


def request_message(uri: bytes, **changes):
    """A request message as a front sends it (see trioweb.distrib._messages)."""
    return {"method": b"GET", "uri": uri, "version": b"1.1", "headers": [], "host_header": b"example.org",
            "prepath": [b"~alice"], "postpath": uri.split(b"/")[2:], "client": ["INET", "127.0.0.1", 1234],
            "host": ["INET", "127.0.0.1", 80], "secure": False, "length": 0, "token": 1, **changes}


async def test_the_old_form_of_the_call_and_bad_tokens_are_refused(nursery, tmp_path):
    """The sink argument of older fronts is gone: such a call fails plainly (the
    front shows a generic error page for any exception of the publisher), as
    does a request without a valid token."""
    path = str(tmp_path / "pb.sock")
    await start_personal(nursery, path)
    async with rpc.connect_unix(path) as broker:
        root = await broker.getRootObject()
        with pytest.raises(rpc.RemoteError, match="positional argument") as raised:
            await root.callRemote("request", request_message(b"/~alice/"), None, rpc.Referenceable())
        assert raised.value.remote_type == "TypeError"
        for token in (0, -1, 2**63, True, "1", None, 1.0):
            with pytest.raises(rpc.RemoteError, match="malformed token"):
                await root.callRemote("request", request_message(b"/~alice/", token=token), None)
        without = request_message(b"/~alice/")
        del without["token"]
        with pytest.raises(rpc.RemoteError, match="request without 'token'"):
            await root.callRemote("request", without, None)
        answer = await root.callRemote("request", request_message(b"/~alice/", token=2**63 - 1), None)
        assert answer["body"] == b"personal home"


async def test_a_front_offering_no_root_cannot_be_streamed_to(nursery, tmp_path):
    """A streamed response needs the front's root: without it the request ends
    as if the front had gone, and the connection keeps serving."""
    path = str(tmp_path / "pb.sock")
    await start_personal(nursery, path)
    async with rpc.connect_unix(path) as broker:
        root = await broker.getRootObject()
        with pytest.raises(rpc.RemoteError, match=r"ConnectionLost|cannot reach the front"):
            await root.callRemote("request", request_message(b"/~alice/big"), None)
        assert (await root.callRemote("request", request_message(b"/~alice/"), None))["body"] == b"personal home"


class Slow(Resource):
    """Never answers: ends when cancelled (by a timeout or a client that leaves)."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.hang = Hang()

    async def render_GET(self, request):
        await self.hang.until_cancelled()


async def test_no_request_is_left_waiting_for_a_response_however_it_ended(start_site, nursery, tmp_path):
    slow = Slow()
    root = personal_root()
    root.putChild(b"slow", slow)
    site, alice = await front_to_personal(start_site, nursery, tmp_path, root, backend_timeout=1)

    def waiting():
        return alice.backend._responses.waiting

    assert (await site.request(get(b"/~alice/"))).body == b"personal home"  # in the answer
    assert waiting() == {}
    responses = alice.backend._responses
    streamed = await site.request(get(b"/~alice/big?mib=1"))  # through the front's root
    assert streamed.chunked and len(streamed.body) == 1 << 20
    assert (await site.request(get(b"/~alice/whole"))).body == Whole.body  # on a stream in the answer
    body = b"a=1"
    posted = await site.request(b"POST /~alice/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n" + body)
    assert posted.body == b"3 -"
    assert (await site.request(get(b"/~alice/boom"))).status == 500
    assert waiting() == {}
    assert (await site.request(get(b"/~alice/slow"))).status == 504
    assert waiting() == {}
    conn = await site.connect()
    await conn.send(get(b"/~alice/slow"))
    await wait_until(lambda: slow.hang.running >= 1)
    assert len(waiting()) == 1
    await conn.aclose()  # the client leaves
    await wait_until(lambda: slow.hang.cancelled >= 2 and not waiting())
    assert alice.backend._responses is responses  # all on one connection


@pytest.mark.parametrize("bad", ["never given", "zero", "not an int", "not a stream", "twice"])
async def test_a_response_for_no_waiting_request_is_502_for_that_backend_only(start_site, nursery, tmp_path,
                                                                             caplog, bad):
    """The backend broke the protocol: its connection is closed (as for a bad
    head), failing what it had in flight; other backends, and the next
    requests to this one, are served."""

    async def answer(message, body, front):
        token = message["token"]
        if message["uri"] == b"/~mallory/ok":
            return {"status": 200, "reason": None, "headers": [], "length": 2, "body": b"ok"}
        head = {"status": 200, "reason": None, "headers": [], "length": None}
        if bad == "twice":
            await front.sendRemote("response", token, head, rpc.StreamSender())
        named = {"never given": token + 1000, "zero": 0, "not an int": str(token)}.get(bad, token)
        await front.sendRemote("response", named, head, b"body" if bad == "not a stream" else rpc.StreamSender())
        await trio.sleep(30)

    path = str(tmp_path / "hostile.sock")
    await serve_hostile(nursery, path, answer)
    site = await front_with_a_neighbour(start_site, nursery, tmp_path, path)
    with trio.fail_after(5):
        refused = await site.request(get(b"/~mallory/"))
    assert refused.status == 502
    assert "unexpected response message" in caplog.text
    assert (await site.request(get(b"/~alice/"))).body == b"personal home"
    assert (await site.request(get(b"/~mallory/ok"))).body == b"ok"


async def test_a_late_response_for_a_request_that_ended_is_dropped(start_site, nursery, tmp_path):
    """A request can end (timed out, its client gone) while its response is on
    the way: that is no fault of the backend. The response is dropped, and its
    stream stopped, without touching the connection."""
    stopped = trio.Event()

    async def answer(message, body, front):
        if message["uri"] == b"/~mallory/late":
            stream = rpc.StreamSender()
            await front.sendRemote("response", message["token"] - 1, {"status": 200, "reason": None,
                                                                     "headers": [], "length": None}, stream)
            with pytest.raises(rpc.StreamError):
                while True:
                    await stream.send_all(b"x" * 65536)
            stopped.set()
        return {"status": 200, "reason": None, "headers": [], "length": 2, "body": b"ok"}

    path = str(tmp_path / "hostile.sock")
    await serve_hostile(nursery, path, answer)
    mallory = ResourceSubscription("unix", path)
    root = Resource()
    root.putChild(b"~mallory", mallory)
    site = await start_site(root)
    assert (await site.request(get(b"/~mallory/first"))).body == b"ok"
    responses = mallory.backend._responses
    assert (await site.request(get(b"/~mallory/late"))).body == b"ok"
    assert stopped.is_set()
    assert mallory.backend._responses is responses and responses.waiting == {}


async def test_async_renders_behind_the_publisher(front):
    for _ in range(3):  # and the personal server keeps answering
        assert (await front.request(get(b"/~alice/async"))).body == b"awaited"
    body = b"s" * (3 * 1024 * 1024)
    response = await front.request(
        b"POST /~alice/async HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body, timeout=20)
    assert response.body == b"%d" % len(body)


async def test_remote_exception_is_a_generic_500(front):
    response = await front.request(get(b"/~alice/boom"))
    assert response.status == 500
    assert b"secret remote detail" not in response.body


async def test_cookies_are_confined_and_redirects_use_the_public_url(front):
    response = await front.request(get(b"/~alice/cookies", host=b"example.com"))
    assert response.status == 302
    assert response.header(b"location") == b"http://example.com/~alice/cookies/next"
    assert response.header_list(b"set-cookie") == [b"theme=dark; Path=/~alice/", b"other=1; Path=/~alice/"]


async def test_a_cookie_set_through_one_url_form_is_set_for_both(start_site, nursery, tmp_path):
    _, database = account_with_home(tmp_path)
    home = tmp_path / "alice"

    async def login(message, body, front):
        return {"status": 200, "reason": None, "length": 2, "body": b"ok",
                "headers": [[b"Set-Cookie", b"sid=42; Path=/; HttpOnly"], [b"Set-Cookie", b"theme=dark"]]}

    await serve_hostile(nursery, str(home / ".trioweb-pb"), login)
    site = await start_site(UserDirectory(database, min_uid=0))
    for form in (b"/~alice/", b"/users/alice/"):
        response = await site.request(get(form + b"login"))
        assert response.status == 200
        assert sorted(response.header_list(b"set-cookie")) == [
            b"sid=42; Path=/users/alice/; HttpOnly", b"sid=42; Path=/~alice/; HttpOnly",
            b"theme=dark; Path=/users/alice/", b"theme=dark; Path=/~alice/",
        ]


async def test_a_hung_user_database_is_a_504_and_the_front_keeps_serving(start_site, tmp_path):
    me = pwd.getpwuid(os.getuid())
    home = tmp_path / "bob"
    (home / "public_html").mkdir(parents=True)
    (home / "public_html" / "index.html").write_bytes(b"bob's page")
    bob = SimpleNamespace(pw_name="bob", pw_uid=me.pw_uid, pw_gid=me.pw_gid, pw_gecos="", pw_dir=str(home))
    released = threading.Event()

    def getpwnam(name):
        if name == "hung":
            released.wait(10)  # an LDAP server or an NFS home that does not answer
        if name != "bob":
            raise KeyError(name)
        return bob

    directory = UserDirectory(SimpleNamespace(getpwnam=getpwnam, getpwall=lambda: [bob]),
                              public_html=File, min_uid=0, lookup_timeout=0.5)
    site = await start_site(directory)
    try:
        with trio.fail_after(5):
            hung = await site.request(get(b"/~hung/"))
        assert hung.status == 504
        assert b"hung" not in hung.body
        assert (await site.request(get(b"/~bob/"))).body == b"bob's page"
    finally:
        released.set()


async def test_a_hung_check_before_connecting_is_a_504(start_site, tmp_path):
    released = threading.Event()
    root = Resource()
    root.putChild(b"~bob", ResourceSubscription("unix", str(tmp_path / "pb.sock"),
                                                before_connect=lambda: released.wait(10),
                                                connect_timeout=0.5))
    site = await start_site(root)
    try:
        with trio.fail_after(5):
            assert (await site.request(get(b"/~bob/"))).status == 504
    finally:
        released.set()


async def test_backend_down_is_a_fast_502(start_site, tmp_path):
    root = Resource()
    root.putChild(b"~bob", ResourceSubscription("unix", str(tmp_path / "missing.sock")))
    site = await start_site(root)
    with trio.fail_after(2):
        response = await site.request(get(b"/~bob/"))
    assert response.status == 502
    assert b"missing.sock" not in response.body


async def test_a_regular_file_at_the_socket_path_is_502(start_site, tmp_path):
    path = tmp_path / "pb.sock"
    path.write_text("not a socket")
    root = Resource()
    root.putChild(b"~bob", ResourceSubscription("unix", str(path)))
    site = await start_site(root)
    assert (await site.request(get(b"/~bob/"))).status == 502


async def test_garbage_backend_is_502_and_the_front_keeps_serving(start_site, nursery, tmp_path):
    async def garbage(stream):
        await stream.send_all(b"\xff" * 64 + b"HTTP/1.1 200 OK\r\n\r\n")
        await trio.sleep(1)

    path = str(tmp_path / "garbage.sock")
    await fake_backend(nursery, path, garbage)
    site = await front_with_a_neighbour(start_site, nursery, tmp_path, path)
    assert (await site.request(get(b"/~mallory/"))).status == 502
    assert (await site.request(get(b"/~alice/"))).body == b"personal home"


@pytest.mark.parametrize(
    "head",
    [
        {"status": 200, "reason": None, "headers": [[b"X-A", b"v\r\nSet-Cookie: evil=1"]], "length": 2, "body": b"ok"},
        {"status": 200, "reason": None, "headers": [[b"X\r\nA", b"v"]], "length": 2, "body": b"ok"},
        {"status": 101, "reason": None, "headers": [], "length": None, "body": b""},
        {"status": 200, "reason": b"OK\r\nX: y", "headers": [], "length": 2, "body": b"ok"},
        {"status": 200, "reason": None, "headers": [], "length": 5, "body": b"ok"},
        # A valid head, applied, then a body of the wrong length: none of its headers stay.
        {"status": 200, "reason": None, "headers": [[b"Content-Encoding", b"gzip"], [b"X-A", b"v"]],
         "length": 5, "body": b"ok"},
        {"status": 200, "reason": None, "headers": [[b"Set-Cookie", b"__Host-x=1; Path=/"]], "length": 2, "body": b"ok"},
        "not a map",
    ],
)
async def test_bad_response_heads_are_502(start_site, nursery, tmp_path, head):
    async def answer(message, body, front):
        return head

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    response = await site.request(get(b"/~mallory/"))
    assert response.status == 502
    assert response.header(b"set-cookie") is None and response.header(b"x-a") is None
    assert response.header(b"content-encoding") is None
    assert response.header(b"content-type") == b"text/html; charset=utf-8"


async def test_answer_with_a_body_and_a_stream_is_502(start_site, nursery, tmp_path):
    async def answer(message, body, front):
        return {"status": 200, "reason": None, "headers": [], "length": 2, "body": b"ok",
                "stream": rpc.StreamSender(b"ok")}

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    assert (await site.request(get(b"/~mallory/"))).status == 502


async def test_hung_backend_is_504(start_site, nursery, tmp_path):
    async def answer(message, body, front):
        await trio.sleep(30)

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    with trio.fail_after(5):
        assert (await site.request(get(b"/~mallory/"))).status == 504


async def test_backend_dying_mid_body_aborts_the_client_connection(start_site, nursery, tmp_path):
    async def answer(message, body, front):
        stream = rpc.StreamSender()
        await front.sendRemote("response", message["token"], {"status": 200, "reason": None, "headers": [],
                                                              "length": None}, stream)
        await stream.send_all(b"partial ")
        await trio.sleep(0.2)
        stream.abort("died")
        await trio.sleep(5)

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    conn = await site.connect()
    await conn.send(get(b"/~mallory/"))
    with pytest.raises(EOFError):
        await conn.read_response()  # never a complete response
    assert b"partial" in conn.buffer or conn.eof


async def test_client_leaving_cancels_the_personal_work(start_site, nursery, tmp_path):
    cancelled = trio.Event()

    async def answer(message, body, front):
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise

    site = await hostile_front(start_site, nursery, tmp_path, answer)
    conn = await site.connect()
    await conn.send(get(b"/~mallory/"))
    await trio.sleep(0.2)
    await conn.aclose()
    with trio.fail_after(5):
        await cancelled.wait()


async def test_disallowed_peer_is_dropped(nursery, tmp_path):
    path = str(tmp_path / "pb.sock")
    listener = await unix_listener(path)
    await nursery.start(lambda task_status: serve_publisher(
        ResourcePublisher(Site(personal_root())), [listener], allowed_uids=frozenset({os.getuid() + 1}),
        task_status=task_status))
    stream = await trio.open_unix_socket(path)
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""  # closed before a byte was exchanged
