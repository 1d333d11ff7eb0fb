"""Proxy (the forward proxy) on loopback: what it forwards, and all it refuses."""

from __future__ import annotations

import json

import pytest

from tests.trioweb.proxy.upstreams import Echo
from trioweb.proxy import Proxy


def absolute(url: bytes, host: bytes, extra: bytes = b"", method: bytes = b"GET") -> bytes:
    return method + b" " + url + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


async def pair(start_site, **options):
    echo = Echo()
    upstream = await start_site(echo)
    proxy = Proxy(allowed_hosts=["127.0.0.1"], allowed_ports=[upstream.port], **options)
    front = await start_site(proxy)
    return echo, upstream, front


async def test_an_allowed_absolute_url_is_forwarded_in_origin_form(start_site):
    _, upstream, front = await pair(start_site)
    url = b"http://127.0.0.1:%d/a/b?c=d" % upstream.port
    response = await front.request(absolute(url, b"127.0.0.1:%d" % upstream.port,
                                            b"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n"))
    assert response.status == 200
    seen = json.loads(response.body)
    assert seen["uri"] == "/a/b?c=d"
    names = {n.lower(): v for n, v in seen["headers"]}
    assert names["host"] == f"127.0.0.1:{upstream.port}"
    assert "proxy-authorization" not in names and "proxy-connection" not in names
    assert names["via"].startswith("1.1 trioweb-")  # a forward proxy says it is one
    assert response.header(b"via").startswith(b"1.1 trioweb-")


async def test_an_empty_path_becomes_a_slash(start_site):
    _, upstream, front = await pair(start_site)
    response = await front.request(absolute(b"http://127.0.0.1:%d" % upstream.port, b"x"))
    assert json.loads(response.body)["uri"] == "/"


@pytest.mark.parametrize(("target", "code"), [
    (b"http://localhost:{port}/", 403),  # the allowlist names hosts as written
    (b"http://127.0.0.1:1/", 403),  # a port not on the list
    (b"http://10.0.0.1:{port}/", 403),
    (b"https://127.0.0.1:{port}/", 400),  # https goes through a tunnel (CONNECT), not as a URL
    (b"/relative", 400),  # not a proxy request
    (b"ftp://127.0.0.1:{port}/", 400),
    (b"http://127.0.0.1:abc/", 400),
    (b"http://[::1/", 400),
])
async def test_what_is_not_an_allowed_http_url_is_refused(start_site, target, code):
    _, upstream, front = await pair(start_site)
    target = target.replace(b"{port}", b"%d" % upstream.port)
    response = await front.request(absolute(target, b"127.0.0.1"))
    assert response.status == code


async def test_connect_is_refused(start_site):
    _, upstream, front = await pair(start_site)
    response = await front.request(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                                   % (upstream.port, upstream.port))
    assert response.status == 405
    assert b"GET" in response.header(b"allow") and b"CONNECT" not in response.header(b"allow")


async def test_a_request_to_the_proxy_itself_is_a_loop(start_site):
    proxy = Proxy(allowed_hosts=["127.0.0.1", "localhost"], allowed_ports=range(1, 65536))
    front = await start_site(proxy)
    for host in (b"127.0.0.1", b"localhost"):
        response = await front.request(absolute(b"http://%s:%d/" % (host, front.port), b"x"))
        assert response.status == 508


async def test_a_request_that_already_went_through_this_proxy_is_a_loop(start_site):
    _, upstream, front = await pair(start_site, via=b"edge-7")
    response = await front.request(absolute(b"http://127.0.0.1:%d/" % upstream.port, b"x",
                                            b"Via: 1.1 edge-7\r\n"))
    assert response.status == 508


async def test_nothing_is_forwarded_without_an_allowlist(start_site):
    echo = Echo()
    upstream = await start_site(echo)
    front = await start_site(Proxy(allowed_hosts=[]))
    response = await front.request(absolute(b"http://127.0.0.1:%d/" % upstream.port, b"x"))
    assert response.status == 403 and echo.client_ports == []
