"""The front's checks on what a personal server answers (pure logic)."""

from __future__ import annotations

import pytest

from trioweb.distrib._messages import ForwardedResponse, MessageError
from trioweb.distrib._response_checks import (
    BadBackendResponse,
    check_headers,
    check_status,
    confine_cookie,
    cookie_copies,
)

PREFIX = b"/~alice/"


@pytest.mark.parametrize("code", [0, 100, 101, 199, 600, 1000, "200", 200.0, None, True])
def test_bad_status(code):
    with pytest.raises(BadBackendResponse):
        check_status(code, None)


def test_good_status():
    assert check_status(418, b"I'm a teapot") == (418, b"I'm a teapot")
    with pytest.raises(BadBackendResponse):
        check_status(200, b"OK\r\nX: y")


@pytest.mark.parametrize(
    "pair",
    [
        (b"X\r\nSet-Cookie", b"v"),
        (b"X-A", b"v\r\nSet-Cookie: evil=1"),
        (b"X-A", b"v\nX: y"),
        (b"X-A", b"a\x00b"),
        (b"", b"v"),
        (b"X A", b"v"),
    ],
)
def test_injection_and_garbage_are_refused(pair):
    with pytest.raises(BadBackendResponse):
        check_headers([pair], PREFIX)


@pytest.mark.parametrize("pair", [["X-A", b"v"], [b"X-A", "v"], [b"X-A"], (b"X-A", b"v"), b"X-A: v"])
def test_headers_that_are_not_pairs_of_bytes_are_malformed(pair):
    with pytest.raises(MessageError):
        ForwardedResponse.from_wire({"status": 200, "reason": None, "headers": [pair], "length": None})


@pytest.mark.parametrize("message", [
    None, [], {"status": "200", "headers": []}, {"status": 200, "headers": {}},
    {"status": 200, "headers": [], "length": -1}, {"status": 200, "headers": [], "reason": "OK"},
    {"status": 200, "headers": [], "body": "text"}, {"status": 200, "headers": [], "stream": b"not a stream"},
])
def test_malformed_responses(message):
    with pytest.raises(MessageError):
        ForwardedResponse.from_wire(message)


def test_a_response_without_a_length_has_none():
    response = ForwardedResponse.from_wire({"status": 204, "headers": [[b"X-A", b"v"]]})
    assert (response.status, response.reason, response.headers, response.length) == (204, None, ((b"X-A", b"v"),), None)


def test_framing_hop_by_hop_and_origin_wide_headers_are_dropped():
    relayed = check_headers(
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked"),
         (b"Connection", b"Upgrade"), (b"Upgrade", b"h2c"), (b"Strict-Transport-Security", b"max-age=1"),
         (b"Alt-Svc", b'h2="evil:443"'), (b"Clear-Site-Data", b'"*"'), (b"Service-Worker-Allowed", b"/"),
         (b"X-Sendfile", b"/etc/shadow"), (b"X-Accel-Redirect", b"/internal"), (b"NEL", b"{}"),
         (b"Report-To", b"{}"), (b"X-Custom", b"kept")],
        PREFIX,
    )
    assert relayed == [(b"content-type", b"text/plain"), (b"x-custom", b"kept")]


def test_too_many_headers():
    with pytest.raises(BadBackendResponse):
        check_headers([(b"X-%d" % i, b"v") for i in range(101)], PREFIX)
    with pytest.raises(BadBackendResponse):
        check_headers([(b"X", b"v" * 70000)], PREFIX)


@pytest.mark.parametrize(
    "cookie, expected",
    [
        (b"a=1", b"a=1; Path=/~alice/"),
        (b"a=1; Path=/", b"a=1; Path=/~alice/"),
        (b"a=1; Path=/~bob/", b"a=1; Path=/~alice/"),
        (b"a=1; Path=/~alice/app", b"a=1; Path=/~alice/app"),
        (b"a=1; Path=/~alice/../x", b"a=1; Path=/~alice/"),
        (b"a=1; Domain=example.org; HttpOnly", b"a=1; Path=/~alice/; HttpOnly"),
        (b"a=1; Max-Age=10; Secure; SameSite=Lax", b"a=1; Path=/~alice/; Max-Age=10; Secure; SameSite=Lax"),
    ],
)
def test_cookies_are_confined_to_the_users_path(cookie, expected):
    assert confine_cookie(cookie, PREFIX) == expected


@pytest.mark.parametrize("cookie", [b"__Host-id=1; Path=/; Secure", b"TWISTED_SESSION=x", b"=1", b"a b=1"])
def test_forbidden_cookies(cookie):
    with pytest.raises(BadBackendResponse):
        confine_cookie(cookie, PREFIX, frozenset({b"TWISTED_SESSION"}))


@pytest.mark.parametrize(
    "cookie, expected",
    [
        (b"a=1; Path=/~alice/; HttpOnly", b"a=1; Path=/users/alice/; HttpOnly"),
        (b"a=1; Path=/~alice/app; Secure", b"a=1; Path=/users/alice/app; Secure"),
        (b"a=x; Path=/~alice/", b"a=x; Path=/users/alice/"),
    ],
)
def test_a_cookie_is_copied_under_the_other_prefix_of_the_same_site(cookie, expected):
    confined = confine_cookie(cookie, PREFIX)
    assert cookie_copies(confined, PREFIX, [b"/users/alice/"]) == [expected]
    assert cookie_copies(confined, PREFIX, []) == []
