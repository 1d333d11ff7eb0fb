"""Limits and timeouts (security corpus §2.1): each violation gets its status and a close."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from tests.support.rawhttp import get
from trioweb.http import Limits
from trioweb.resource import NOT_DONE_YET, Resource


class Echo(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"

    def render_POST(self, request):
        return b"%d" % len(request.content.read())


class Upload(Echo):
    max_request_body = 4 * 1024 * 1024


def tree():
    root = Resource()
    root.putChild(b"", Echo())
    root.putChild(b"upload", Upload())
    root.putChild(b"echo", Echo())
    return root


async def test_request_target_over_8k_is_414(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    response = await conn.read_response()
    assert response.status == 414
    assert await conn.is_closed()


async def test_request_target_just_under_limit_is_served(start_site):
    site = await start_site(tree())
    response = await site.request(get(b"/echo/" + b"a" * 8000))
    assert response.status == 200


async def test_one_huge_header_is_431(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + b"x" * 100_000 + b"\r\n\r\n")
    response = await conn.read_response()
    assert response.status == 431
    assert await conn.is_closed()


async def test_header_that_never_ends_is_bounded(start_site):
    # A single header line sent forever without CRLF must not grow a buffer.
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(200):
            await conn.send(b"y" * 8192)
            await trio.lowlevel.checkpoint()
    response = await conn.read_response()
    assert response.status == 431


async def test_too_many_header_fields_is_431(start_site):
    site = await start_site(tree())
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    response = await site.request(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert response.status == 431


async def test_100_fields_are_fine(start_site):
    site = await start_site(tree())
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(99))
    response = await site.request(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert response.status == 200


async def test_declared_body_over_limit_is_413_before_reading(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n")
    response = await conn.read_response()  # answered without our sending any body
    assert response.status == 413
    assert response.header(b"connection") == b"close"
    assert await conn.is_closed()


async def test_413_instead_of_100_continue(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
    response = await conn.read_response()
    assert response.status == 413


async def test_100_continue_is_sent_when_the_body_is_wanted(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = await conn.read_response()
    assert interim.status == 100
    await conn.send(b"hello")
    response = await conn.read_response()
    assert response.status == 200 and response.body == b"5"


async def test_100_continue_comes_after_the_responses_pipelined_before_it(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
    statuses = [(await conn.read_response()).status for _ in range(3)]
    assert statuses == [200, 100, 200]


async def test_chunked_body_over_limit_is_413(start_site):
    site = await start_site(tree())
    conn = await site.connect()
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    try:
        for _ in range(20):
            await conn.send(piece)
    except trio.BrokenResourceError:
        pass
    response = await conn.read_response()
    assert response.status == 413


async def test_per_resource_body_limit_allows_uploads(start_site):
    site = await start_site(tree())
    body = b"x" * (3 * 1024 * 1024)
    response = await site.request(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert response.status == 200 and response.body == b"%d" % len(body)


async def test_slowloris_gets_408_at_the_header_deadline(start_site):
    # Bytes keep arriving, but the head never completes: the deadline is total.
    site = await start_site(tree(), limits=Limits(header_timeout=1.0))
    conn = await site.connect(timeout=4)
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    started = trio.current_time()
    try:
        for i in range(30):
            await conn.send(b"X-%d: b\r\n" % i)
            await trio.sleep(0.1)
    except trio.BrokenResourceError:
        pass
    response = await conn.read_response()
    assert response.status == 408
    assert await conn.is_closed()
    assert trio.current_time() - started < 3.5


async def test_silent_connection_is_closed_without_a_response(start_site):
    site = await start_site(tree(), limits=Limits(header_timeout=0.5))
    conn = await site.connect(timeout=3)
    assert await conn.is_closed()
    assert conn.buffer == b""


async def test_idle_keepalive_connection_is_closed(start_site):
    site = await start_site(tree(), limits=Limits(keepalive_timeout=0.5))
    conn = await site.connect(timeout=3)
    await conn.send(get())
    assert (await conn.read_response()).status == 200
    assert await conn.is_closed()


async def test_slow_post_gets_408(start_site):
    site = await start_site(tree(), limits=Limits(body_timeout=0.5))
    conn = await site.connect(timeout=3)
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nx")
    response = await conn.read_response()
    assert response.status == 408
    assert await conn.is_closed()


class Endless(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.stopped = trio.Event()

    def render_GET(self, request):
        async def produce():
            try:
                while True:
                    request.write(b"x" * 65536)
                    await request.drain()
            finally:
                self.stopped.set()

        request.start_soon(produce)
        return NOT_DONE_YET


async def test_client_that_stops_reading_is_dropped(start_site):
    root = Endless()
    site = await start_site(root, limits=Limits(send_timeout=0.5))
    conn = await site.connect()
    await conn.send(get())
    with trio.fail_after(5):
        await root.stopped.wait()  # the producer was cancelled, memory stays bounded
    await conn.aclose()


async def test_connections_over_the_cap_get_503(start_site):
    # Busy connections (a head on its way): none can be closed to make room.
    site = await start_site(tree(), limits=Limits(max_connections=2))
    held = [await site.connect() for _ in range(2)]
    for conn in held:
        await conn.send(b"GET / HTTP/1.1\r\n")
    await trio.sleep(0.1)
    extra = await site.connect()
    response = await extra.read_response()
    assert response.status == 503
    assert response.header(b"retry-after") == b"5"
    assert await extra.is_closed()
    await held[0].aclose()
    await trio.sleep(0.1)
    again = await site.connect()
    await again.send(get())
    assert (await again.read_response()).status == 200


async def test_requests_per_connection_cap_closes(start_site):
    site = await start_site(tree(), limits=Limits(max_requests_per_connection=3))
    conn = await site.connect()
    await conn.send(get() * 4)
    responses = [await conn.read_response() for _ in range(3)]
    assert [r.header(b"connection") for r in responses] == [None, None, b"close"]
    assert await conn.is_closed()


async def test_a_thousand_query_params_is_400(start_site):
    class Args(Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"%d" % len(request.args)

    site = await start_site(Args())
    query = b"a=1&" * 1001
    response = await site.request(get(b"/?" + query))
    assert response.status == 400
    ok = await site.request(get(b"/?a=1&a=2&b="))
    assert ok.body == b"2"


async def test_ten_thousand_cookies_are_capped(start_site):
    # aiohttp cookie DoS: the request is parsed, but only the first 200 count.
    class Count(Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"%d" % len(request.received_cookies)

    site = await start_site(Count(), limits=Limits(max_header_bytes=256 * 1024))
    cookie = b"; ".join(b"c%d=v" % i for i in range(10_000))
    response = await site.request(get(extra=b"Cookie: " + cookie + b"\r\n"))
    assert response.status == 200 and response.body == b"200"


async def test_a_megabyte_of_one_byte_chunks_is_bounded_by_the_body_limit(start_site):
    # aiohttp many-chunks CPU DoS: each chunk costs parsing, so the body limit
    # (not the wire size) must end it.
    site = await start_site(tree(), limits=Limits(max_body_size=64 * 1024))
    conn = await site.connect(timeout=10)
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        for _ in range(20):
            await conn.send(b"1\r\nX\r\n" * 10_000)
    except trio.BrokenResourceError:
        pass
    response = await conn.read_response()
    assert response.status == 413
