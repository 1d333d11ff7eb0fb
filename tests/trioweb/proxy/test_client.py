"""The proxy's upstream connection over an in-memory stream: framing, and when a connection may be reused;
over a real socket: how it reads the answer to a request."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.trioweb.proxy.upstreams import read_head, start_raw
from trioweb.http import BadUpstreamResponse
from trioweb.proxy._client import UpstreamClosed, UpstreamConnection


async def exchange(response: bytes, method: bytes = b"GET", close: bool = False):
    """Send a request over a memory stream whose other end answers ``response``;
    the head, the body and the connection afterwards."""
    ours, theirs = trio.testing.memory_stream_pair()
    connection = UpstreamConnection(ours)
    await connection.send(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n", 5)
    assert (await theirs.receive_some(1000)).startswith(method + b" / ")
    await theirs.send_all(response)
    if close:
        await theirs.aclose()
    head = await connection.receive_head(method, 5)
    body = b""
    while piece := await connection.receive_body(5):
        body += piece
    return head, body, connection


@pytest.mark.parametrize(("response", "body", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", b"hello", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", b"hello", False),  # bytes past the response
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
])
async def test_framing_and_reuse(response, body, reusable):
    head, received, connection = await exchange(response)
    assert received == body
    assert connection.reusable is reusable


async def test_a_body_delimited_by_the_end_of_the_connection():
    head, body, connection = await exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True)
    assert (head.content_length, body, connection.reusable) == (None, b"until the end", False)


async def test_a_head_request_reads_no_body_whatever_the_length():
    head, body, connection = await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", method=b"HEAD")
    assert (head.content_length, body, connection.reusable) == (1000, b"", True)


async def test_the_head_keeps_names_and_values_as_sent():
    head, _, _ = await exchange(b"HTTP/1.1 404 Gone Fishing\r\nX-Thing: a b\r\nSet-Cookie: k=v\r\n"
                                b"Content-Length: 0\r\n\r\n")
    assert (head.status, head.reason) == (404, b"Gone Fishing")
    assert head.headers == [(b"x-thing", b"a b"), (b"set-cookie", b"k=v"), (b"content-length", b"0")]


async def test_a_body_cut_short_is_upstream_closed():
    with pytest.raises(UpstreamClosed) as caught:
        await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", close=True)
    assert not caught.value.nothing_received


async def test_a_close_before_any_byte_says_nothing_was_received():
    with pytest.raises(UpstreamClosed) as caught:
        await exchange(b"", close=True)
    assert caught.value.nothing_received


async def test_a_head_that_never_ends_is_refused_at_its_limit():
    with pytest.raises(BadUpstreamResponse):
        await exchange(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000)


async def test_a_silent_upstream_times_out():
    ours, _theirs = trio.testing.memory_stream_pair()
    connection = UpstreamConnection(ours)
    await connection.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 5)
    with pytest.raises(trio.TooSlowError):
        await connection.receive_head(b"GET", 0.05)


async def test_the_answer_is_read_after_a_yield_not_after_a_wait_for_readiness():
    # The upstream answers at once. A read straight after sending would always
    # find nothing and wait for readiness (an epoll_ctl and trio's I/O path
    # each time); after the connection's one yield, the upstream has often run
    # (trio puts it before the proxy's task in half of its batches) and the
    # read succeeds.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def upstream(stream: trio.SocketStream) -> None:
        while await read_head(stream):
            await stream.send_all(answer)

    exchanges = 200
    async with trio.open_nursery() as nursery:
        port = await start_raw(nursery, upstream)
        connection = UpstreamConnection(await trio.open_tcp_stream("127.0.0.1", port))
        waits = 0
        wait_readable = connection._wait_readable

        async def counted(timeout: float) -> None:
            nonlocal waits
            waits += 1
            await wait_readable(timeout)

        connection._wait_readable = counted  # type: ignore[method-assign]
        for _ in range(exchanges):
            await connection.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 5)
            head = await connection.receive_head(b"GET", 5)
            assert (head.status, connection.body_if_received()) == (200, b"ok")
            assert connection.reusable
        connection.close()
        nursery.cancel_scope.cancel()
    assert waits < exchanges * 0.8  # ~half; every time without the yield
