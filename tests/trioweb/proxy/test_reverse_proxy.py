"""ReverseProxyResource against real upstreams on loopback: what goes up, what comes back."""

from __future__ import annotations

import json

import pytest
import trio

from tests.support.rawhttp import get
from tests.trioweb.proxy.upstreams import Echo, answering, read_head, start_raw
from trioweb.proxy import NO_FORWARDED_HEADERS, ForwardedHeaders, ReverseProxyResource
from trioweb.resource import Resource


async def proxied(start_site, upstream_port: int, path: bytes = b"/path", **options) -> tuple[object, Resource]:
    root = Resource()
    proxy = ReverseProxyResource("127.0.0.1", upstream_port, path, **options)
    root.putChild(b"index", proxy)
    return await start_site(root), proxy


async def echo_pair(start_site, **options):
    echo = Echo()
    upstream = await start_site(echo)
    front, proxy = await proxied(start_site, upstream.port, **options)
    return echo, upstream, front, proxy


def seen(response) -> dict:
    return json.loads(response.body)


def header(seen_request: dict, name: str) -> list[str]:
    return [v for n, v in seen_request["headers"] if n.lower() == name.lower()]


@pytest.mark.parametrize(("path", "upstream_uri"), [
    (b"/index", "/path"),
    (b"/index/page1", "/path/page1"),
    (b"/index?foo=bar", "/path?foo=bar"),
    (b"/index/a%20b/c%2Fd?x=1&y=2", "/path/a%20b/c%2Fd?x=1&y=2"),
    (b"/index/", "/path/"),
])
async def test_paths_and_queries_reach_the_upstream(start_site, path, upstream_uri):
    _, upstream, front, _ = await echo_pair(start_site)
    response = await front.request(get(path))
    assert response.status == 200
    request = seen(response)
    assert request["uri"] == upstream_uri
    assert request["version"] == "HTTP/1.1"
    assert header(request, "host") == [f"127.0.0.1:{upstream.port}"]


async def test_an_absolute_form_target_never_chooses_the_upstream(start_site):
    """SSRF: the authority of an absolute-form request routes nothing; the upstream stays the configured one."""
    _, upstream, front, _ = await echo_pair(start_site)
    response = await front.request(b"GET http://169.254.169.254:80/index/x HTTP/1.1\r\nHost: a\r\n\r\n")
    request = seen(response)
    assert request["uri"] == "/path/x"
    assert header(request, "host") == [f"127.0.0.1:{upstream.port}"]


async def test_a_base_path_ending_in_a_slash_is_not_doubled(start_site):
    echo = Echo()
    upstream = await start_site(echo)
    front, _ = await proxied(start_site, upstream.port, b"/foo/")
    assert seen(await front.request(get(b"/index/bar")))["uri"] == "/foo/bar"
    assert seen(await front.request(get(b"/index/")))["uri"] == "/foo/"


async def test_preserve_host_sends_the_clients_host(start_site):
    _, _, front, _ = await echo_pair(start_site, preserve_host=True)
    request = seen(await front.request(get(b"/index", host=b"public.example")))
    assert header(request, "host") == ["public.example"]


async def test_hop_by_hop_headers_stay_on_their_connection(start_site):
    _, _, front, _ = await echo_pair(start_site)
    extra = (b"Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
             b"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\n"
             b"X-Kept: yes\r\n")
    request = seen(await front.request(get(b"/index", extra=extra)))
    names = {n.lower() for n, _ in request["headers"]}
    assert names.isdisjoint({"connection", "x-secret", "keep-alive", "te", "proxy-authorization",
                             "proxy-connection", "upgrade"})
    assert header(request, "x-kept") == ["yes"]


async def test_the_upstream_learns_who_asked_and_the_client_cannot_lie_about_it(start_site):
    _, _, front, _ = await echo_pair(start_site)
    extra = b"X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
    request = seen(await front.request(get(b"/index", host=b"public.example:8080", extra=extra)))
    assert header(request, "x-forwarded-for") == ["127.0.0.1"]
    assert header(request, "x-forwarded-proto") == ["http"]
    assert header(request, "x-forwarded-host") == ["public.example:8080"]
    assert header(request, "forwarded") == ['for=127.0.0.1;proto=http;host="public.example:8080"']


async def test_trusted_incoming_forwarding_headers_are_appended_to(start_site):
    _, _, front, _ = await echo_pair(start_site, forwarded=ForwardedHeaders(trust_incoming=True))
    extra = (b"X-Forwarded-For: 10.0.0.7\r\nForwarded: for=10.0.0.7\r\nX-Forwarded-Proto: https\r\n"
             b"X-Forwarded-Host: public.example\r\n")
    request = seen(await front.request(get(b"/index", extra=extra)))
    assert header(request, "x-forwarded-for") == ["10.0.0.7, 127.0.0.1"]
    assert header(request, "forwarded") == ["for=10.0.0.7, for=127.0.0.1;proto=http;host=\"a\""]
    # The proxy in front saw the client: its scheme and host are kept, once.
    assert header(request, "x-forwarded-proto") == ["https"]
    assert header(request, "x-forwarded-host") == ["public.example"]


async def test_forwarding_headers_can_be_switched_off(start_site):
    _, _, front, _ = await echo_pair(start_site, forwarded=NO_FORWARDED_HEADERS)
    request = seen(await front.request(get(b"/index", extra=b"X-Forwarded-For: 10.0.0.7\r\n")))
    assert header(request, "x-forwarded-for") == ["10.0.0.7"]
    assert header(request, "forwarded") == [] and header(request, "x-forwarded-proto") == []


async def test_via_both_ways_when_asked(start_site):
    _, _, front, _ = await echo_pair(start_site, via=b"front")
    response = await front.request(get(b"/index"))
    assert header(seen(response), "via") == ["1.1 front"]
    assert response.header(b"via") == b"1.1 front"
    relayed = await front.request(get(b"/index", extra=b"Via: 1.0 edge\r\n"))
    assert header(seen(relayed), "via") == ["1.0 edge, 1.1 front"]


async def test_via_from_the_upstream_is_extended_once(start_site, nursery):
    port = await start_raw(nursery, answering(b"HTTP/1.1 200 OK\r\nVia: 1.1 app\r\nContent-Length: 0\r\n\r\n"))
    front, _ = await proxied(start_site, port, via=b"front")
    response = await front.request(get(b"/index"))
    assert response.header_list(b"via") == [b"1.1 app, 1.1 front"]


async def test_connections_to_the_upstream_are_kept_alive_and_reused(start_site):
    echo, _, front, proxy = await echo_pair(start_site)
    for _ in range(5):
        assert (await front.request(get(b"/index"))).status == 200
    assert len(echo.client_ports) == 5 and len(set(echo.client_ports)) == 1
    assert proxy.upstream.idle_count == 1


async def test_the_pool_keeps_at_most_max_idle_connections(start_site):
    echo, _, front, proxy = await echo_pair(start_site, max_idle=2)
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(front.request, get(b"/index"))
    assert len(echo.client_ports) == 6
    assert proxy.upstream.idle_count == 2


async def test_idle_connections_are_closed_after_the_idle_timeout(start_site, nursery):
    closed = trio.Event()

    async def keep_alive_once(stream):
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert await stream.receive_some(100) == b""  # the proxy closes it when idle too long
        closed.set()

    port = await start_raw(nursery, keep_alive_once)
    front, proxy = await proxied(start_site, port, idle_timeout=0.2)
    assert (await front.request(get(b"/index"))).body == b"ok"
    assert proxy.upstream.idle_count == 1
    with trio.fail_after(3):
        await closed.wait()
    assert proxy.upstream.idle_count == 0


async def test_a_kept_alive_connection_the_upstream_dropped_is_retried_once_for_idempotent_requests(
        start_site, nursery):
    connections = 0

    async def answers_once_then_drops(stream):
        nonlocal connections
        connections += 1
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await read_head(stream)  # the next request on this connection: dropped unanswered

    port = await start_raw(nursery, answers_once_then_drops)
    front, _ = await proxied(start_site, port)
    assert (await front.request(get(b"/index"))).body == b"ok"
    second = await front.request(get(b"/index"))
    assert (second.status, second.body, connections) == (200, b"ok", 2)
    # A request with a body cannot be sent twice: the client gets a 502.
    post = await front.request(b"POST /index HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert post.status == 502


async def test_request_bodies_go_up_with_a_length_or_chunked(start_site):
    _, _, front, _ = await echo_pair(start_site)
    request = seen(await front.request(b"POST /index HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"))
    assert (request["method"], request["body"], header(request, "content-length")) == ("POST", "hello", ["5"])
    chunked = b"PUT /index HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    request = seen(await front.request(chunked))
    assert (request["method"], request["body"]) == ("PUT", "abcde")
    assert header(request, "transfer-encoding") == ["chunked"]


async def test_a_body_over_the_limit_is_413_and_the_upstream_connection_dropped(start_site):
    echo = Echo()
    upstream = await start_site(echo)
    root = Resource()
    proxy = ReverseProxyResource("127.0.0.1", upstream.port, b"/")
    proxy.max_request_body = 10
    root.putChild(b"index", proxy)
    front = await start_site(root)
    body = b"x" * 100
    response = await front.request(b"POST /index HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"64\r\n" + body + b"\r\n0\r\n\r\n")
    assert response.status == 413
    assert proxy.upstream.idle_count == 0


async def test_the_response_comes_back_without_hop_by_hop_headers_and_with_our_server_and_date(start_site, nursery):
    port = await start_raw(nursery, answering(
        b"HTTP/1.1 201 Made Here\r\nServer: upstream/1.0\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n"
        b"Connection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=3\r\nSet-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie: b=2\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"))
    front, _ = await proxied(start_site, port)
    response = await front.request(get(b"/index"))
    assert (response.status, response.reason, response.body) == (201, b"Made Here", b"hello")
    assert response.header(b"server").startswith(b"trioweb") and b"2001" not in response.header(b"date")
    assert response.header(b"x-private") is None and response.header(b"keep-alive") is None
    assert response.header_list(b"set-cookie") == [b"a=1; Path=/", b"b=2"]
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"content-length") == b"5"  # it all came at once: framed with its length


async def test_a_redirect_is_passed_on_not_followed(start_site, nursery):
    port = await start_raw(nursery, answering(
        b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n"))
    front, _ = await proxied(start_site, port)
    response = await front.request(get(b"/index"))
    assert (response.status, response.header(b"location")) == (302, b"http://elsewhere.example/")


async def test_interim_responses_are_skipped(start_site, nursery):
    port = await start_raw(nursery, answering(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    front, _ = await proxied(start_site, port)
    response = await front.request(get(b"/index"))
    assert (response.status, response.body) == (200, b"ok")


async def test_head_requests_read_no_body_and_keep_the_length(start_site):
    echo, _, front, proxy = await echo_pair(start_site)
    conn = await front.connect()
    await conn.send(b"HEAD /index HTTP/1.1\r\nHost: a\r\n\r\n")
    response = await conn.read_response(head_request=True)
    assert response.status == 200 and int(response.header(b"content-length")) > 0
    await conn.send(get(b"/index"))
    assert seen(await conn.read_response())["method"] == "GET"
    await conn.aclose()
    assert proxy.upstream.idle_count == 1
    assert len(echo.client_ports) == 2 and len(set(echo.client_ports)) == 1  # the GET reused the connection


async def test_a_close_delimited_body_is_relayed_whole(start_site, nursery):
    port = await start_raw(nursery, answering(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 200_000))
    front, proxy = await proxied(start_site, port)
    response = await front.request(get(b"/index"))
    assert response.body == b"z" * 200_000
    assert proxy.upstream.idle_count == 0


async def test_a_unix_socket_upstream(start_site, nursery, tmp_path):
    from trioweb.server import Site, serve

    path = str(tmp_path / "app.sock")
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen()
    await nursery.start(serve, Site(Echo()), [trio.SocketListener(sock)])
    root = Resource()
    root.putChild(b"app", ReverseProxyResource(f"unix:{path}", None, b"/mounted"))
    front = await start_site(root)
    request = seen(await front.request(get(b"/app/x?q=1")))
    assert request["uri"] == "/mounted/x?q=1"
    assert header(request, "host") == ["localhost"]


async def test_a_tls_upstream(start_site, nursery, tmp_path):
    import ssl
    import subprocess

    from trioweb.server import Site, serve

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    echo = Echo()
    await nursery.start(serve, Site(echo), [trio.SSLListener(listeners[0], server_context)])
    client_context = ssl.create_default_context(cafile=str(cert))
    root = Resource()
    root.putChild(b"secure", ReverseProxyResource("localhost", port, b"/s", tls=client_context))
    root.putChild(b"untrusted", ReverseProxyResource("localhost", port, b"/s", tls=ssl.create_default_context()))
    front = await start_site(root)
    for _ in range(2):  # the second over the kept-alive TLS connection
        request = seen(await front.request(get(b"/secure/x")))
        assert request["uri"] == "/s/x" and header(request, "host") == [f"localhost:{port}"]
    assert len(set(echo.client_ports)) == 1
    assert (await front.request(get(b"/untrusted/x"))).status == 502  # a certificate we do not trust


# -- failures: 502 and 504, never a hang ------------------------------------------------------


async def test_an_upstream_that_is_down_is_a_502_at_once(start_site):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    front, _ = await proxied(start_site, dead_port)
    with trio.fail_after(2):
        response = await front.request(get(b"/index"))
    assert response.status == 502
    assert b"not answering properly" in response.body


async def test_a_missing_unix_socket_is_a_502(start_site, tmp_path):
    root = Resource()
    root.putChild(b"app", ReverseProxyResource(f"unix:{tmp_path / 'none.sock'}", None, b"/"))
    front = await start_site(root)
    assert (await front.request(get(b"/app"))).status == 502


async def test_an_upstream_that_never_answers_is_a_504_at_the_read_timeout(start_site, nursery):
    async def silent(stream):
        await read_head(stream)
        await trio.sleep_forever()

    port = await start_raw(nursery, silent)
    front, _ = await proxied(start_site, port, read_timeout=0.3)
    with trio.fail_after(3):
        response = await front.request(get(b"/index"))
    assert response.status == 504


async def test_a_connect_that_does_not_complete_is_a_504_at_the_connect_timeout(start_site):
    import socket

    # A listening socket with a full backlog that never accepts: connects hang
    # (SYNs are dropped once the queue is full).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                f = socket.socket()
                f.setblocking(False)
                f.connect_ex(("127.0.0.1", port))
                fillers.append(f)
            front, _ = await proxied(start_site, port, connect_timeout=0.3)
            with trio.fail_after(3):
                response = await front.request(get(b"/index"))
            assert response.status == 504
        finally:
            for f in fillers:
                f.close()


@pytest.mark.parametrize("garbage", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 600 Too Much\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"",  # closes without a word
])
async def test_a_garbage_response_is_a_502(start_site, nursery, garbage):
    port = await start_raw(nursery, answering(garbage))
    front, proxy = await proxied(start_site, port)
    with trio.fail_after(3):
        response = await front.request(get(b"/index"))
    assert response.status == 502
    assert b"garbage" not in response.body  # a generic page, nothing of the upstream's
    assert proxy.upstream.idle_count == 0


@pytest.mark.parametrize("answer_begun", [True, False])
async def test_a_client_that_leaves_ends_the_upstream_exchange(start_site, nursery, answer_begun):
    dropped = trio.Event()

    async def waits_for_the_proxy_to_leave(stream):
        await read_head(stream)
        if answer_begun:
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"a" * 100_000)
        while await stream.receive_some(100):
            pass
        dropped.set()

    port = await start_raw(nursery, waits_for_the_proxy_to_leave)
    front, proxy = await proxied(start_site, port)
    conn = await front.connect()
    await conn.send(get(b"/index"))
    if answer_begun:
        await conn.stream.receive_some(1000)
    else:
        await trio.sleep(0.2)  # past the moment the disconnect watcher joins
    await conn.aclose()
    with trio.fail_after(3):
        await dropped.wait()
    assert proxy.upstream.idle_count == 0


async def test_an_upstream_failing_mid_body_aborts_the_client_connection(start_site, nursery):
    async def cut_short(stream):
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 300_000)
        await trio.sleep(0.1)

    port = await start_raw(nursery, cut_short)
    front, _ = await proxied(start_site, port)
    conn = await front.connect()
    await conn.send(get(b"/index"))
    with pytest.raises(EOFError):
        await conn.read_response()
    await conn.aclose()


async def test_an_upstream_stalling_mid_body_aborts_at_the_read_timeout(start_site, nursery):
    async def stalls(stream):
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 300_000)
        await trio.sleep_forever()

    port = await start_raw(nursery, stalls)
    front, _ = await proxied(start_site, port, read_timeout=0.3)
    conn = await front.connect()
    await conn.send(get(b"/index"))
    with trio.fail_after(3), pytest.raises(EOFError):
        await conn.read_response()
    await conn.aclose()
