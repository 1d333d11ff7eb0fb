"""CONNECT tunnels through Proxy on loopback: curl over TLS end to end, what is
refused, and how a tunnel ends (either side, idle) and throttles."""

from __future__ import annotations

import os
import shutil
import ssl

import pytest
import trio
import trustme

from tests.support.polling import wait_until
from tests.trioweb.proxy.upstreams import read_head, start_raw
from trioweb.proxy import Proxy
from trioweb.resource import Resource


def connect(host: bytes, port: int) -> bytes:
    return b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port, host, port)


async def open_tunnel(front_port: int, target_port: int, early: bytes = b"") -> tuple[trio.SocketStream, bytes]:
    """A client connection through which a tunnel to 127.0.0.1:``target_port``
    was made, and the tunnel's first bytes if they came with the head."""
    stream = await trio.open_tcp_stream("127.0.0.1", front_port)
    await stream.send_all(connect(b"127.0.0.1", target_port) + early)
    head, _, rest = (await read_head(stream)).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 Connection established\r\n"), head
    lowered = head.lower()
    assert b"content-length" not in lowered and b"transfer-encoding" not in lowered
    return stream, rest


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = await stream.receive_some(size - len(data))
        assert piece, f"end of stream after {data!r}"
        data += piece
    return data


async def echo_upstream(nursery: trio.Nursery, ended: trio.Event | None = None) -> int:
    """A raw TCP server that echoes bytes until its client ends (then sets ``ended``)."""

    async def echo(stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        finally:
            if ended is not None:
                ended.set()

    return await start_raw(nursery, echo)


def proxy_for(port: int, **options) -> Proxy:
    return Proxy(allowed_hosts=["127.0.0.1", "localhost"], allowed_ports=[80], connect_ports=[port], **options)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_speaks_tls_end_to_end_through_a_tunnel(start_site, nursery, tmp_path):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def https_hello(stream: trio.SSLStream) -> None:
        try:
            head = await read_head(stream)
            body = b"hello through " + head.split(b" ")[1]
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                  % (len(body), body))
            await stream.aclose()
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(trio.serve_ssl_over_tcp, https_hello, 0, server_context)
    tls_port = listeners[0].transport_listener.socket.getsockname()[1]
    front = await start_site(proxy_for(tls_port))
    result = await trio.run_process(
        ["curl", "-sS", "--max-time", "10", "-p", "-x", f"http://127.0.0.1:{front.port}",
         "--cacert", str(tmp_path / "ca.pem"), f"https://localhost:{tls_port}/secret"],
        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello through /secret"


async def test_bytes_sent_with_the_connect_head_reach_the_upstream(start_site, nursery):
    port = await echo_upstream(nursery)
    front = await start_site(proxy_for(port))
    stream, first = await open_tunnel(front.port, port, early=b"early bytes")
    assert first + await receive_exactly(stream, 11 - len(first)) == b"early bytes"
    await stream.send_all(b"x" * 100_000)
    assert await receive_exactly(stream, 100_000) == b"x" * 100_000
    await stream.aclose()


async def test_connect_is_off_by_default_and_for_other_ports(start_site, nursery):
    port = await echo_upstream(nursery)
    off = await start_site(Proxy(allowed_hosts=["127.0.0.1"], allowed_ports=[port]))
    response = await off.request(connect(b"127.0.0.1", port))
    assert response.status == 405 and b"CONNECT" not in response.header(b"allow")
    on = await start_site(proxy_for(port))
    for target, status in [(b"127.0.0.1:%d" % (port + 1), 403), (b"10.1.2.3:%d" % port, 403),
                           (b"127.0.0.1", 400), (b"127.0.0.1:99999", 400), (b"http://127.0.0.1:1/", 400)]:
        response = await on.request(b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        assert response.status == status, target
    response = await on.request(b"OPTIONS http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 403
    response = await on.request(b"BREW http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status in (405, 501)


async def test_a_tunnel_to_the_proxy_itself_is_a_loop(start_site):
    proxy = Proxy(allowed_hosts=["127.0.0.1"], connect_ports=range(1, 65536))
    front = await start_site(proxy)
    response = await front.request(connect(b"127.0.0.1", front.port))
    assert response.status == 508


async def test_a_refused_connection_is_502(start_site):
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    front = await start_site(proxy_for(closed_port))
    response = await front.request(connect(b"127.0.0.1", closed_port))
    assert response.status == 502


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_client_leaving_closes_the_upstream_and_leaks_nothing(start_site, nursery):
    ended = trio.Event()
    port = await echo_upstream(nursery, ended)
    front = await start_site(proxy_for(port))
    baseline = open_fds()
    stream, _ = await open_tunnel(front.port, port)
    await stream.send_all(b"ping")
    assert await receive_exactly(stream, 4) == b"ping"
    await stream.aclose()
    with trio.fail_after(10):
        await ended.wait()
    await wait_until(lambda: not front.server.connections and open_fds() <= baseline, timeout=10)


async def test_a_tunnel_gets_one_access_log_line_when_it_ends(start_site, nursery, tmp_path):
    port = await echo_upstream(nursery)
    front = await start_site(proxy_for(port), logPath=str(tmp_path / "access.log"))
    stream, _ = await open_tunnel(front.port, port)
    await stream.send_all(b"ping")
    assert await receive_exactly(stream, 4) == b"ping"
    await stream.aclose()
    await wait_until(lambda: b"CONNECT 127.0.0.1:%d HTTP/1.1\" 200" % port
                     in (tmp_path / "access.log").read_bytes(), timeout=10)


async def test_the_upstream_leaving_closes_the_client(start_site, nursery):
    async def says_bye(stream: trio.SocketStream) -> None:
        await stream.send_all(b"bye")

    port = await start_raw(nursery, says_bye)
    front = await start_site(proxy_for(port))
    stream, first = await open_tunnel(front.port, port)
    assert first + await receive_exactly(stream, 3 - len(first)) == b"bye"
    with trio.fail_after(10):
        assert await stream.receive_some(10) == b""
    await wait_until(lambda: not front.server.connections)


async def test_an_idle_tunnel_is_closed(start_site, nursery):
    ended = trio.Event()
    port = await echo_upstream(nursery, ended)
    front = await start_site(proxy_for(port, tunnel_idle_timeout=0.3))
    stream, _ = await open_tunnel(front.port, port)
    await stream.send_all(b"ping")
    assert await receive_exactly(stream, 4) == b"ping"
    with trio.fail_after(10):
        assert await stream.receive_some(10) == b""
        await ended.wait()


async def test_a_client_that_does_not_read_throttles_the_upstream(start_site, nursery):
    sent = 0
    piece = b"z" * 65536

    async def floods(stream: trio.SocketStream) -> None:
        nonlocal sent
        for _ in range(4096):  # 256 MiB, unless something holds it back
            await stream.send_all(piece)
            sent += len(piece)

    port = await start_raw(nursery, floods)
    front = await start_site(proxy_for(port))
    stream, _ = await open_tunnel(front.port, port)
    # Wait until the upstream is held back: nothing more sent for a while.
    last = -1
    with trio.fail_after(30):
        while sent != last:
            last = sent
            await trio.sleep(0.3)
    # Socket buffers on loopback (both connections) plus one read in the proxy.
    assert sent < 48 * 1024 * 1024
    received = 0
    with trio.fail_after(10):
        while received < 4 * 1024 * 1024:
            data = await stream.receive_some(65536)
            assert data and set(data) == {ord("z")}
            received += len(data)
    await wait_until(lambda: sent > last)  # reading lets the upstream go on
    await stream.aclose()


class SlowTakeover(Resource):
    """Takes the connection over after a pause long enough for the disconnect
    watcher to start reading, then sends back what it was handed and echoes once."""

    isLeaf = True

    async def render(self, request):
        await trio.sleep(0.3)
        transport, early = await request.channel.take_over_stream(200, b"Connection established", [])
        await transport.send_all(b"early:" + early + b";", 5)
        await transport.send_all(await transport.receive(100, 5), 5)
        request.finish()


async def test_bytes_the_watcher_read_before_the_takeover_are_handed_over(start_site):
    front = await start_site(SlowTakeover())
    stream = await trio.open_tcp_stream("127.0.0.1", front.port)
    await stream.send_all(connect(b"127.0.0.1", 1))
    await trio.sleep(0.15)  # the watcher reads this (not a timing assertion: either reader must keep it)
    await stream.send_all(b"abc")
    received = b""
    with trio.fail_after(10):
        while b";" not in received:
            received += await stream.receive_some(1000)
        head, _, tunnel = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 Connection established")
        assert tunnel == b"early:abc;"
        await stream.send_all(b"echo")
        assert await receive_exactly(stream, 4) == b"echo"
        assert await stream.receive_some(10) == b""  # the handler returned: the engine closed it
