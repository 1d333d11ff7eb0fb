"""Request framing and header rules over real sockets (security corpus §1.1).

Every malformed request must get its status and a closed connection, and a
request pipelined behind it must never be answered: that is what makes
smuggling impossible.
"""

from __future__ import annotations

import pytest
import trio

from tests.support.rawhttp import get
from trioweb.resource import NOT_DONE_YET, Resource

SECOND = get(b"/second")


class Echo(Resource):
    """Answers with the method, path and body it saw."""

    isLeaf = True

    def render_GET(self, request):
        return b"GET " + request.path

    def render_POST(self, request):
        return b"POST " + request.path + b" " + request.content.read()


@pytest.fixture
async def site(start_site):
    return await start_site(Echo())


async def assert_rejected(site, payload: bytes, status: int = 400) -> None:
    conn = await site.connect(timeout=3)
    await conn.send(payload + SECOND)
    response = await conn.read_response()
    assert response.status == status, (payload, response.status, response.body)
    assert response.header(b"connection") == b"close"
    assert await conn.is_closed(), "connection left open after a framing error"
    assert b"HTTP/1.1" not in conn.buffer, "a request behind the bad one was answered"
    await conn.aclose()


H = b"POST / HTTP/1.1\r\nHost: a\r\n"
CHUNKED = H + b"Transfer-Encoding: chunked\r\n"

REJECTED_400 = {
    # CVE-2020-10108: duplicate Content-Length, also the smuggling variant
    "duplicate CL": H + b"Content-Length: 1\r\nContent-Length: 5\r\n\r\nabcde",
    "identical duplicate CL": H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nabcde",
    "CL 36 + CL 0 smuggling": H + b"Content-Length: 36\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    # CVE-2020-10109: CL and TE together
    "CL+TE": H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    # twisted #9770, gunicorn CVE-2024-6827: TE that does not end in chunked
    "TE gzip": H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "TE gzip with CL": H + b"Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
    "TE xchunked": H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "TE chunked;x": H + b"Transfer-Encoding: chunked;x\r\n\r\n0\r\n\r\n",
    # gunicorn CVE-2024-1135: two TE headers
    "TE chunked + TE identity": CHUNKED + b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "TE chunked, identity": H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    # HTTP Garden: empty list element
    "TE ,chunked + CL": H + b"Transfer-Encoding: ,chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "TE ,chunked": H + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
    # RFC 9112 §6.1
    "TE on HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # CVE-2022-24801 and the HTTP Garden int() family
    "CL +10": H + b"Content-Length: +10\r\n\r\n0123456789",
    "CL -0": H + b"Content-Length: -0\r\n\r\n",
    "CL +1_0": H + b"Content-Length: +1_0\r\n\r\n0123456789",
    "CL 1_0": H + b"Content-Length: 1_0\r\n\r\n0123456789",
    "CL 0x10": H + b"Content-Length: 0x10\r\n\r\n0123456789abcdef",
    "CL 1Z": H + b"Content-Length: 1Z\r\n\r\nx",
    "CL empty": H + b"Content-Length: \r\n\r\n",
    "CL -48": H + b"Content-Length: -48\r\n\r\n",
    "CL 1 ZB": H + b"Content-Length: 1000000000000000000000\r\n\r\n",
    "chunk size 0x1": CHUNKED + b"\r\n0x1\r\nX\r\n0\r\n\r\n",
    "chunk size 0_2e": CHUNKED + b"\r\n0_2e\r\n" + b"x" * 46 + b"\r\n0\r\n\r\n",
    "chunk size 0x2_e": CHUNKED + b"\r\n0x2_e\r\n" + b"x" * 46 + b"\r\n0\r\n\r\n",
    "chunk size -0x0": CHUNKED + b"\r\n-0x0\r\n\r\n",
    "chunk size tab 0": CHUNKED + b"\r\n\t0\r\n\r\n",
    "empty chunk-size line": CHUNKED + b"\r\n\r\n",
    "LF inside chunk-ext": CHUNKED + b"\r\n1;a\nb\r\nX\r\n0\r\n\r\n",
    # CVE-2025-43859 (h11): garbage instead of CRLF after chunk data
    "chunk data then XX": CHUNKED + b"\r\n5\r\nhelloXX0\r\n\r\n",
    # CVE-2025-22871 and friends: bare LF / CR in chunked framing
    "bare LF after chunk ext": CHUNKED + b"\r\n1;ext\nX\r\n0\r\n\r\n",
    "bare LF after chunk size": CHUNKED + b"\r\n1\nX\r\n0\r\n\r\n",
    "bare CR in chunk size": CHUNKED + b"\r\n2\r\r;a\r\nxx\r\n0\r\n\r\n",
    # twisted #12754, aiohttp CVE-2023-37276: CR/LF/NUL inside header values
    "bare LF in header": b"GET / HTTP/1.1\r\nHost: a\r\nFoo: x\nContent-Length: 44\r\n\r\n",
    "bare CR in header": b"GET / HTTP/1.1\r\nHost: a\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n",
    "NUL after LF": b"GET / HTTP/1.1\r\nHost: a\r\nTest: x\n\r\x00\r\n\r\n",
    "vertical tab in value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n",
    "form feed in value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0cb\r\n\r\n",
    # RFC 9112 §5.1: header name syntax
    "space before colon": b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 10\r\n\r\n",
    "first header starts with tab": b"GET / HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a\r\n\r\nx",
    "name with \\x85": b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length\x85: 10\r\n\r\n",
    "name with \\xff": b"GET / HTTP/1.1\r\nHost: a\r\n\xffoo: bar\r\n\r\n",
    "empty name": b"GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n",
    "no colon": b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length 10\r\n\r\n",
    # RFC 9112 §5.2: obs-fold
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    # Host validation (RFC 9112 §3.2, Garden)
    "NUL in Host": b"GET / HTTP/1.1\r\nHost: google.com\x00.kallus.org\r\n\r\n",
    "no Host on 1.1": b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
    "two Host headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "Host with space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "Host with markup": b"GET / HTTP/1.1\r\nHost: <h1>x</h1>\r\n\r\n",
    "empty Host on 1.1": b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "userinfo in absolute form": b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    # Garden: method / version / target validation
    "version 1.32": b"GET /test HTTP/1.32\r\nHost: a\r\n\r\n",
    "garbage method": b'G=":<>(e) /x HTTP/1.1\r\nHost: a\r\n\r\n',
    "target !": b"GET ! HTTP/1.1\r\nHost: a\r\n\r\n",
    "LF in request line": b"GET /\nHTTP/1.1\r\nHost: a\r\n\r\n",
    "huge version": b"GET / HTTP/4294967295.255\r\nHost: a\r\n\r\n",
    "HTTP/0.9 request": b"GET /\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "trailer with bad name": CHUNKED + b"\r\n0\r\nBad Name: x\r\n\r\n",
}


@pytest.mark.parametrize("payload", REJECTED_400.values(), ids=REJECTED_400.keys())
async def test_malformed_request_gets_400_and_close(site, payload):
    await assert_rejected(site, payload, 400)


async def test_unknown_transfer_coding_before_chunked_is_501(site):
    await assert_rejected(site, H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)


async def test_unknown_method_token_is_501(site):
    await assert_rejected(site, b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501)
    await assert_rejected(site, b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501)


async def test_http2_version_is_505(site):
    await assert_rejected(site, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505)


async def test_http2_preface_is_refused(site):
    conn = await site.connect()
    await conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    response = await conn.read_response()
    assert response.status in (400, 505)
    assert await conn.is_closed()


async def test_content_length_with_leading_zero_is_decimal(site):
    response = await site.request(H + b"Content-Length: 010\r\n\r\n0123456789")
    assert response.status == 200
    assert response.body == b"POST / 0123456789"


async def test_chunked_body_with_extensions_and_trailers(site):
    conn = await site.connect()
    await conn.send(CHUNKED + b"\r\n2;name=value\r\nab\r\n3\r\ncde\r\n0\r\nTrailer-A: 1\r\n\r\n" + SECOND)
    first = await conn.read_response()
    assert first.body == b"POST / abcde"
    second = await conn.read_response()
    assert second.body == b"GET /second"


async def test_trailer_cannot_smuggle_a_request(site):
    # aiohttp <3.12.14 / Puma CVE-2023-40175: what follows the trailer section
    # is exactly one more request, never a request hidden in the trailers.
    conn = await site.connect()
    await conn.send(CHUNKED + b"\r\n0\r\nTrailer-A: 1\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await conn.read_response()).body == b"POST / "
    assert (await conn.read_response()).body == b"GET /2"
    await conn.send(b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert (await conn.read_response()).body == b"GET /3"
    assert await conn.is_closed()


async def test_trailer_holding_a_request_line_stays_a_trailer(site):
    conn = await site.connect()
    await conn.send(CHUNKED + b"\r\n0\r\nX:POST /smuggled HTTP/1.1\r\n\r\n" + get(b"/2", extra=b"Connection: close\r\n"))
    assert (await conn.read_response()).body == b"POST / "
    assert (await conn.read_response()).body == b"GET /2"
    assert await conn.is_closed()
    assert b"smuggled" not in conn.buffer


class SlowFast(Resource):
    def __init__(self):
        super().__init__()
        self.order = []

    def getChild(self, name, request):
        return self

    async def render_GET(self, request):
        if request.path == b"/slow":
            await trio.sleep(0.3)
        self.order.append(request.path)
        return request.path


async def test_pipelined_responses_come_in_request_order(start_site):
    # CVE-2023-46137: a slow first request must still be answered first.
    root = SlowFast()
    site = await start_site(root)
    conn = await site.connect()
    await conn.send(get(b"/slow") + get(b"/fast") + get(b"/slow") + get(b"/fast"))
    bodies = [(await conn.read_response()).body for _ in range(4)]
    assert bodies == [b"/slow", b"/fast", b"/slow", b"/fast"]
    assert root.order == bodies


class Sized(Resource):
    """``/N``: a body of N bytes, each the last digit of N (so a body out of place shows)."""

    isLeaf = True

    def render_GET(self, request):
        size = int(request.path[1:])
        return str(size % 10).encode() * size


async def test_responses_to_a_client_that_reads_late_arrive_whole(start_site):
    # Requests sent one by one while the client reads nothing: the responses fill
    # the socket, one is partly written at once and its rest waits for the client.
    site = await start_site(Sized())
    conn = await site.connect(timeout=10)
    sizes = [60_000 + n for n in range(300)]
    for size in sizes:
        await conn.send(get(b"/%d" % size))
        await trio.sleep(0.002)
    for size in sizes:
        response = await conn.read_response()
        assert response.status == 200
        assert response.body == str(size % 10).encode() * size


async def test_chunked_then_empty_posts_then_late_get(site):
    # CVE-2024-41671: three responses, in order, none misattributed.
    conn = await site.connect()
    await conn.send(CHUNKED + b"\r\n0\r\n\r\n" + b"POST /p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert (await conn.read_response()).body == b"POST / "
    assert (await conn.read_response()).body == b"POST /p2 "
    await trio.sleep(1)
    await conn.send(get(b"/late"))
    assert (await conn.read_response()).body == b"GET /late"


async def test_absolute_form_is_routed_not_proxied(start_site):
    class Where(Resource):
        isLeaf = True

        def render_GET(self, request):
            return request.getRequestHostname() + b" " + request.path

    site = await start_site(Where())
    response = await site.request(b"GET http://127.0.0.1:22/x?q HTTP/1.1\r\nHost: site\r\n\r\n")
    assert response.status == 200
    assert response.body == b"127.0.0.1 /x"


async def test_connect_is_405(site):
    response = await site.request(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert response.status == 405


async def test_upgrade_request_is_answered_and_closed(site):
    conn = await site.connect()
    await conn.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    response = await conn.read_response()
    assert response.status == 200 and response.body == b"GET /ws"
    assert await conn.is_closed()


async def test_obs_text_in_value_is_accepted(site):
    response = await site.request(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n")
    assert response.status == 200


async def test_leading_empty_line_is_ignored(site):
    response = await site.request(b"\r\n" + get(b"/x"))
    assert response.body == b"GET /x"


async def test_http10_without_host_is_fine_and_closes(site):
    conn = await site.connect()
    await conn.send(b"GET /old HTTP/1.0\r\n\r\n")
    response = await conn.read_response()
    assert response.body == b"GET /old"
    assert await conn.is_closed()


class Trickle(Resource):
    isLeaf = True

    def render_GET(self, request):
        async def produce():
            for piece in (b"a", b"b", b"c"):
                request.write(piece)
                await request.drain()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


async def test_http10_unknown_length_body_is_close_delimited(start_site):
    site = await start_site(Trickle())
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.0\r\n\r\n")
    response = await conn.read_response()
    assert response.header(b"content-length") is None
    assert response.header(b"transfer-encoding") is None
    assert response.body == b"abc"
    assert conn.eof


async def test_http11_unknown_length_body_is_chunked(start_site):
    site = await start_site(Trickle())
    conn = await site.connect()
    await conn.send(get() + get())
    for _ in range(2):
        response = await conn.read_response()
        assert response.chunked and response.body == b"abc"
