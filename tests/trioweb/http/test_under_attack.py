"""The HTTP engine under attack (issue 20): availability for everyone, and an answer for every bad input.

Each test reproduces one published defect against a real server on
loopback; the figures of the same attacks under load (slowhttptest) are in
docs/http.md, made by tests/e2e/test_slow_attacks.py.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import subprocess
import sys
import time

import pytest
import trio
import trustme

from tests.support.rawhttp import RawConnection, get
from tests.trioweb.http.test_limits import Echo
from trioweb.http import Limits
from trioweb.resource import Resource
from trioweb.server import Server, Site

# Loopback has all of 127.0.0.0/8: a second client address without a second machine.
OTHER_ADDRESS = "127.0.0.2"


class CountPieces(Resource):
    """Streams the body, counting the pieces it arrives in."""

    isLeaf = True
    stream_request_body = True
    max_request_body = 64 * 1024 * 1024

    def __init__(self):
        super().__init__()
        self.pieces = 0
        self.received = 0

    async def render_POST(self, request):
        async for piece in request.body_stream():
            self.pieces += 1
            self.received += len(piece)
        return b"%d" % self.received


async def connect_from(port: int, address: str, timeout: float = 5.0) -> RawConnection:
    return RawConnection(await trio.open_tcp_stream("127.0.0.1", port, local_address=address), timeout)


# -- 1. trailers count against the header limits ------------------------------------------------


async def test_a_trailer_that_never_ends_is_431_and_close(start_site):
    site = await start_site(Echo())
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: ")
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(64):  # up to 4 MiB: the server must stop reading long before
            await conn.send(b"a" * 65536)
            await trio.lowlevel.checkpoint()
    response = await conn.read_response()
    assert response.status == 431
    assert await conn.is_closed()


async def test_too_many_trailer_fields_is_431(start_site):
    site = await start_site(Echo())
    trailers = b"".join(b"X-%d: v\r\n" % i for i in range(150))
    response = await site.request(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + trailers + b"\r\n")
    assert response.status == 431


async def test_a_few_trailers_are_fine(start_site):
    site = await start_site(Echo())
    response = await site.request(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n")
    assert (response.status, response.body) == (200, b"3")


async def test_trailers_trickled_after_a_fast_body_get_the_header_deadline(start_site):
    # 100 KB at once earns the body 1,000 s at 100 bytes/s; the trailers still get 0.5 s.
    site = await start_site(Echo(), limits=Limits(header_timeout=0.5, body_timeout=5, min_body_rate=100))
    conn = await site.connect(timeout=10)
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"186a0\r\n" + b"x" * 100_000 + b"\r\n0\r\nX: ")
    started = time.monotonic()
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
        for _ in range(100):
            await conn.send(b"a")
            await trio.sleep(0.1)
    assert (await conn.read_response()).status == 408
    assert time.monotonic() - started < 5


async def test_chunk_extensions_that_never_end_are_bounded(start_site):
    site = await start_site(Echo())
    conn = await site.connect()
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=")
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(64):
            await conn.send(b"a" * 65536)
            await trio.lowlevel.checkpoint()
    assert (await conn.read_response()).status == 431


# -- 2. per-address cap, body minimum rate, idle connections make room --------------------------


async def test_one_address_cannot_take_every_slot(start_site, caplog):
    site = await start_site(Echo(), limits=Limits(max_connections_per_address=3))
    held = [await site.connect() for _ in range(3)]
    for conn in held:
        await conn.send(b"GET / HTTP/1.1\r\n")  # busy: a head on its way
    await trio.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="trioweb.http"):
        for _ in range(3):
            refused = await site.connect()
            response = await refused.read_response()
            assert (response.status, response.header(b"retry-after")) == (503, b"5")
            await refused.aclose()
    # Counted each time, logged once for the address.
    assert site.server.admission.refused["address"] == 3
    assert len([r for r in caplog.records if "refusing connections" in r.message]) == 1
    other = await connect_from(site.port, OTHER_ADDRESS)
    await other.send(get())
    assert (await other.read_response()).status == 200


async def test_a_trickled_body_is_cut_with_408(start_site):
    # 1 byte every 0.2 s never trips the 1 s idle timeout, but falls far below 100 bytes/s.
    site = await start_site(Echo(), limits=Limits(body_timeout=1.0, min_body_rate=100))
    conn = await site.connect(timeout=10)
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
    started = time.monotonic()
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
        for _ in range(100):
            await conn.send(b"x")
            await trio.sleep(0.2)
    response = await conn.read_response()
    assert response.status == 408
    assert time.monotonic() - started < 10


async def test_a_body_at_a_fair_rate_is_received(start_site):
    site = await start_site(Echo(), limits=Limits(body_timeout=0.5, min_body_rate=100))
    conn = await site.connect()
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 300\r\n\r\n")
    for _ in range(6):  # 50 bytes each 0.1 s: 500 bytes/s
        await conn.send(b"x" * 50)
        await trio.sleep(0.1)
    response = await conn.read_response()
    assert (response.status, response.body) == (200, b"300")


async def test_over_the_cap_the_longest_idle_connection_makes_room(start_site):
    site = await start_site(Echo(), limits=Limits(max_connections=2))
    idle = []
    for _ in range(2):
        conn = await site.connect()
        await conn.send(get())
        assert (await conn.read_response()).status == 200  # now idle, kept alive
        idle.append(conn)
        await trio.sleep(0.05)
    newcomer = await site.connect()
    await newcomer.send(get())
    assert (await newcomer.read_response()).status == 200
    assert await idle[0].is_closed()  # the one idle the longest
    await idle[1].send(get())
    assert (await idle[1].read_response()).status == 200


# -- 3. TLS handshakes hold a slot, and have their own deadline -----------------------------------


@pytest.fixture
def tls_context():
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    return context


async def serve_plain_and_tls(nursery, context, limits):
    plain = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    tls = trio.SSLListener(tcp, context, https_compatible=True)
    server = Server(Site(Echo(), limits=limits), [plain, tls])
    await nursery.start(server.serve)
    return server, plain.socket.getsockname()[1], tcp.socket.getsockname()[1]


async def test_tls_handshakes_count_against_max_connections(nursery, tls_context):
    server, plain_port, tls_port = await serve_plain_and_tls(nursery, tls_context, Limits(max_connections=3))
    silent = [await trio.open_tcp_stream("127.0.0.1", tls_port) for _ in range(3)]  # never say hello
    await trio.sleep(0.2)
    assert server.admission.open == 3
    conn = await RawConnection.open(plain_port)
    await conn.send(get())
    assert (await conn.read_response()).status == 503
    for stream in silent:
        await stream.aclose()


async def test_a_tls_handshake_has_its_own_deadline(nursery, tls_context):
    limits = Limits(tls_handshake_timeout=0.3, header_timeout=30, keepalive_timeout=30)
    server, _, tls_port = await serve_plain_and_tls(nursery, tls_context, limits)
    silent = RawConnection(await trio.open_tcp_stream("127.0.0.1", tls_port), timeout=3)
    assert await silent.is_closed()
    await trio.sleep(0.05)
    assert server.admission.open == 0


# -- 4. receiving yields, and tiny chunks cost no more events than big ones -------------------------


async def test_a_body_in_1_byte_chunks_arrives_in_few_pieces(start_site):
    counter = CountPieces()
    site = await start_site(counter)
    body = b"1\r\nx\r\n" * 20_000 + b"0\r\n\r\n"
    response = await site.request(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body, timeout=20)
    assert (response.status, response.body) == (200, b"20000")
    assert counter.pieces < 100  # one per read at most, not one per chunk


SENDER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(b"POST / HTTP/1.1\\r\\nHost: a\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n" + b"1\\r\\nx\\r\\n" * 500_000
             + b"0\\r\\n\\r\\n")
print(sock.recv(1000).split(b"\\r\\n")[0].decode())
"""


async def test_a_fast_upload_lets_other_tasks_run(start_site):
    # A separate process keeps the socket full, so the server never has to
    # wait for the body; other tasks must still run every few reads.
    counter = CountPieces()
    site = await start_site(counter)
    ticks_at: list[tuple[int, int]] = []
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await trio.lowlevel.checkpoint()
            ticks += 1
            ticks_at.append((counter.received, ticks))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        result = await trio.to_thread.run_sync(
            lambda: subprocess.run([sys.executable, "-c", SENDER, str(site.port)], capture_output=True, timeout=60))
        nursery.cancel_scope.cancel()
    assert result.stdout.decode().strip() == "HTTP/1.1 200 OK", result.stderr
    assert counter.received == 500_000
    # The ticker ran all along the body (3 MB of wire): never more than one yield budget between its turns.
    during = [received for received, _ in ticks_at if 0 < received < 500_000]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) >= 5
    assert max(gaps) <= 256 * 1024


# -- 6. a deadline that has passed is a timeout, not a crash ------------------------------------------


async def test_a_head_completed_after_its_deadline_gets_408(start_site):
    site = await start_site(Echo(), limits=Limits(header_timeout=0.2))
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\n")
    await trio.sleep(0.05)  # the server has the first piece: the head's deadline is set
    await conn.send(b"Host: a\r\n")
    time.sleep(0.3)  # noqa: ASYNC251  (blocks the loop: the server wakes up with data *and* a passed deadline)
    response = await conn.read_response()
    assert response.status == 408


# -- 7. the 503 for a full server can be read --------------------------------------------------------


async def test_every_refused_client_reads_its_503(start_site):
    site = await start_site(Echo(), limits=Limits(max_connections=1))
    busy = await site.connect()
    await busy.send(b"GET / HTTP/1.1\r\n")
    await trio.sleep(0.1)
    statuses = []

    async def refused_client():
        conn = await site.connect()
        await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000)
        await trio.sleep(0.3)  # the server has answered and closed by now
        response = await conn.read_response()
        statuses.append((response.status, response.header(b"retry-after")))

    async with trio.open_nursery() as clients:
        for _ in range(20):
            clients.start_soon(refused_client)
    assert statuses == [(503, b"5")] * 20


# -- 8. an Upgrade we do not accept --------------------------------------------------------------------


async def test_an_upgrade_request_is_answered_with_connection_close(start_site):
    site = await start_site(Echo())
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + get(b"/second"))
    response = await conn.read_response()
    assert (response.status, response.body) == (200, b"ok")
    assert response.header(b"connection") == b"close"
    assert await conn.is_closed()
