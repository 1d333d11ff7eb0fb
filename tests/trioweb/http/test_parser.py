"""The sans-I/O request parser, in memory, and differentially against h11."""

from __future__ import annotations

import re

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioweb.http import END_OF_MESSAGE, Limits, ParseError, RequestHead, RequestParser


def parse(data: bytes, limits: Limits | None = None, pieces: int = 1) -> list[object]:
    parser = RequestParser(limits or Limits())
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        parser.feed(data[start : start + step])
    return list(parser.events)


def test_simple_request_events():
    events = parse(b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.version, head.host) == (b"POST", b"/p?q=1", b"1.1", b"h")
    assert head.content_length == 3 and not head.chunked and head.keep_alive
    assert events[1:] == [b"abc", END_OF_MESSAGE]


def test_byte_at_a_time_gives_the_same_request():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    events = parse(data, pieces=len(data))
    assert b"".join(e for e in events if isinstance(e, bytes)) == b"abc"
    assert events[-1] is END_OF_MESSAGE


def test_pipelined_requests_come_out_in_order():
    events = parse(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [e.target for e in events if isinstance(e, RequestHead)] == [b"/1", b"/2"]


def test_error_is_last_and_parser_stops():
    parser = RequestParser(Limits())
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nBAD\x00 / HTTP/1.1\r\n\r\n")
    assert isinstance(parser.events[-1], ParseError)
    assert parser.closed
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert isinstance(parser.events[-1], ParseError)


def test_keep_alive_rules():
    assert not parse(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive
    assert parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].keep_alive
    assert not parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")[0].keep_alive


def test_limits_in_memory():
    small = Limits(max_request_line=10, max_header_bytes=64, max_header_count=2)
    assert parse(b"GET /" + b"a" * 20 + b" HTTP/1.1\r\n\r\n", small)[-1].status == 414
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\nC: d\r\n\r\n", small)[-1].status == 431
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"b" * 100 + b"\r\n\r\n", small)[-1].status == 431


def test_expectation_other_than_100_continue_is_417():
    assert parse(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n")[-1].status == 417


def test_expect_continue_only_on_http11():
    assert parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")[0].expect_continue
    assert not parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")[0].expect_continue


@pytest.mark.parametrize("host", [b"example.com", b"example.com:80", b"127.0.0.1:8080", b"[::1]:8080", b"[::1]", b"xn--bcher-kva.example"])
def test_valid_hosts(host):
    assert parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0].host == host


# -- differential: the same bytes through our parser and through h11 ---------------

def our_result(data: bytes):
    events = parse(data)
    if events and isinstance(events[-1], ParseError) and not any(e is END_OF_MESSAGE for e in events):
        return ("reject", events[-1].status)
    if not events or not isinstance(events[0], RequestHead):
        return ("incomplete",)
    head = events[0]
    body = b""
    for event in events[1:]:
        if event is END_OF_MESSAGE:
            headers = sorted((n, v.strip(b" \t")) for n, values in head.headers.items() for v in values)
            return ("accept", head.method, head.target, headers, body)
        if isinstance(event, ParseError):
            return ("reject", event.status)
        body += event
    return ("incomplete",)


def h11_result(data: bytes):
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    conn.receive_data(data)
    try:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return ("incomplete",)
        assert isinstance(event, h11.Request)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return ("incomplete",)
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return ("reject", exc.error_status_hint)
    headers = sorted(request_headers(conn, data))
    return ("accept", conn.their_http_version and data.split(b" ", 1)[0], data.split(b" ", 2)[1], headers, body)


def request_headers(conn, data):
    # h11's event lower-cases names and strips values; rebuild from its Request.
    request = h11.Connection(h11.SERVER)
    request.receive_data(data)
    return [(n, v) for n, v in request.next_event().headers]


# Mostly well-formed pieces with a sprinkling of hostile ones, so that both
# "both accept" (compare what was parsed) and the edge cases get exercised.
methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"])
safe_path = st.binary(max_size=12).map(lambda b: b"/" + bytes(c for c in b if 0x21 <= c <= 0x7E and c != 0x23))
targets = st.one_of(safe_path, safe_path, safe_path, st.sampled_from([b"*", b"http://h/x", b"/a b", b"/\x7f", b""]))
versions = st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"] * 3 + [b"HTTP/2.0", b"HTTP/1.2", b"http/1.1"])
header_names = st.sampled_from([b"X-A", b"Accept", b"User-Agent", b"X-Forwarded-For", b"Cookie"] * 8 + [
    b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"X_U", b"X A", b"", b"X\x85",
    b"Content-Length "])
value_chars = st.sampled_from(list(b"abc019 ,;=-/.") * 12 + [0x09, 0x00, 0x0B, 0x7F, 0xE9, 0x0D, 0x0A])
header_values = st.one_of(
    st.lists(value_chars, max_size=8).map(bytes),
    st.lists(value_chars, max_size=8).map(bytes),
    st.sampled_from([b"chunked", b"5", b"0", b"+5", b"05", b"close", b"keep-alive", b"gzip, chunked", b"1_0"]),
)
line_ends = st.sampled_from([b"\r\n"] * 8 + [b"\n"])


@st.composite
def requests(draw):
    method = draw(methods)
    line_end = draw(line_ends)
    lines = [method + b" " + draw(targets) + b" " + draw(versions)]
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    if draw(st.integers(0, 4)):
        headers.insert(draw(st.integers(0, len(headers))), (b"Host", draw(st.sampled_from([b"example.com", b"h:80"]))))
    for name, value in headers:
        lines.append(name + b": " + value)
    body = draw(st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n"]))
    return line_end.join(lines) + line_end + line_end + body


# Each entry: (we reject while h11 accepts?, predicate on the raw bytes, why).
# The reasons are the deliberate strictness listed in docs/http.md.
DELIBERATE = [
    (True, lambda d, h: re.search(rb"(?<!\r)\n", d), "bare LF line endings are rejected (llhttp)"),
    (True, lambda d, h: b"transfer-encoding" in h, "Transfer-Encoding must be exactly chunked, never on 1.0"),
    (True, lambda d, h: h.count(b"content-length") > 1, "any duplicate Content-Length is rejected"),
    (True, lambda d, h: re.search(rb"content-length: *0\d", h), "leading zeros in Content-Length: llhttp"),
    (True, lambda d, h: re.search(rb"^\S+ \S* http/(?!1\.[01]\r?$)", h, re.M), "only HTTP/1.0 and 1.1"),
    (True, lambda d, h: re.search(rb"\nhost:[^\n]*[^a-z0-9.:\[\]\-\r\n ]", h), "Host must be host[:port]"),
    (True, lambda d, h: re.search(rb"\nhost: *\r?(\n|$)", h), "an empty Host is refused on HTTP/1.1"),
    (True, lambda d, h: re.search(rb"\n[^:\n]*:[^\n]*[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", h),
     "control characters in values"),
    (True, lambda d, h: re.search(rb"^\S+ (\*|http://)", h), "asterisk and absolute forms are checked"),
    (False, lambda d, h: b"connection:" in h, "h11 refuses some Connection values llhttp ignores"),
    (False, lambda d, h: b"\xe9" in h, "obs-text in values is accepted (RFC 9110 allows it)"),
]


def deliberate_difference(data: bytes, ours) -> str | None:
    """Why our answer may differ from h11's for this input, or None if it may not."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0].lower()
    we_reject = ours[0] == "reject"
    for rejecting, predicate, reason in DELIBERATE:
        if rejecting == we_reject and predicate(data, head):
            return reason
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_differential_against_h11(data):
    ours, theirs = our_result(data), h11_result(data)
    if "incomplete" in (ours[0], theirs[0]):
        return  # one side waits for more input (e.g. a body the other framed differently)
    if ours[0] == theirs[0] == "reject":
        return
    if ours[0] == theirs[0] == "accept":
        assert ours[1:3] == (theirs[1], theirs[2]), data
        assert ours[3] == theirs[3], data
        assert ours[4] == theirs[4], data
        return
    reason = deliberate_difference(data, ours)
    assert reason is not None, f"undocumented difference for {data!r}: ours={ours} h11={theirs}"
