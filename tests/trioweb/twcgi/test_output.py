"""The CGI output parser (sans-I/O): where the header block ends, what it may hold."""

from __future__ import annotations

import pytest

from trioweb.twcgi import MalformedOutput, OutputParser


def parse(*pieces: bytes, nph: bool = False, max_size: int = 64 * 1024):
    parser = OutputParser(nph=nph, max_size=max_size)
    for piece in pieces:
        head = parser.feed(piece)
        if head is not None:
            return head, parser.rest
    return None, parser.unfinished()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_lf_and_crlf_lines(newline):
    head, rest = parse(b"Content-Type: text/plain" + newline + b"X-A:1" + newline + newline + b"body\n")
    assert head.code == 200 and head.headers == [(b"content-type", b"text/plain"), (b"x-a", b"1")]
    assert rest == b"body\n"


def test_end_of_block_split_across_pieces_byte_by_byte():
    text = b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello"
    parser = OutputParser()
    heads = [parser.feed(text[i:i + 1]) for i in range(len(text))]
    head = next(h for h in heads if h is not None)
    assert heads.index(head) == text.index(b"\r\n\r\n") + 3
    assert [v for n, v in head.headers if n == b"set-cookie"] == [b"a=1", b"b=2"]


def test_status_and_reason():
    head, _ = parse(b"Status: 404 Not Here\nContent-Type: text/plain\n\n")
    assert (head.code, head.reason) == (404, b"Not Here")
    assert (b"status", b"404 Not Here") not in head.headers


def test_location_without_status_is_302_with_status_kept():
    assert parse(b"Location: http://example.com/\n\n")[0].code == 302
    head, _ = parse(b"Status: 301 Moved\nLocation: /x\n\n")
    assert head.code == 301 and (b"location", b"/x") in head.headers


def test_server_date_and_hop_by_hop_fields_are_dropped():
    head, _ = parse(b"Content-Type: a/b\nServer: evil\nDate: never\nConnection: close\n"
                    b"Transfer-Encoding: chunked\nKeep-Alive: 5\n\n")
    assert head.headers == [(b"content-type", b"a/b")]


def test_content_length_is_taken_apart():
    head, _ = parse(b"Content-Type: a/b\nContent-Length: 12\n\n")
    assert head.content_length == 12 and head.headers == [(b"content-type", b"a/b")]


@pytest.mark.parametrize("block", [
    b"Content-Type text/plain\n\n",          # no colon
    b"Bad Name: x\n\n",                      # not a token
    b"Content-Type: a/b\n folded\n\n",       # obsolete folding
    b"Status: abc\n\n",
    b"Status: 99\n\n",
    b"Status: 101 Switching\n\n",            # not a final status
    b"Status: 700\n\n",
    b"Status: 200 O\rK\n\n",
    b"Status: 200 O\x00K\n\n",
    b"Status: 200\nStatus: 404\n\n",
    b"Content-Length: 1\nContent-Length: 2\n\n",
    b"Content-Length: -1\n\n",
    b"X: a\x00b\n\n",
    b"X: a\rb\n\n",
    b"\nbody without headers",
    b"\r\nbody without headers",
])
def test_malformed_blocks(block):
    with pytest.raises(MalformedOutput):
        parse(block)


def test_oversized_block_is_refused_before_it_ends():
    parser = OutputParser(max_size=1000)
    parser.feed(b"X-A: " + b"a" * 900 + b"\n")
    with pytest.raises(MalformedOutput, match="longer than 1000"):
        parser.feed(b"X-B: " + b"b" * 200)


def test_unfinished_block_is_kept_for_the_log():
    head, unfinished = parse(b"Content-Type: text/pl")
    assert head is None and unfinished == b"Content-Type: text/pl"


def test_nph_status_line_and_fields_pass_through():
    head, rest = parse(b"HTTP/1.1 203 Partly Mine\r\nContent-Type: a/b\r\nLocation: /x\r\nServer: s\r\n\r\nraw",
                       nph=True)
    assert (head.code, head.reason) == (203, b"Partly Mine")
    assert head.headers == [(b"content-type", b"a/b"), (b"location", b"/x")]
    assert rest == b"raw"


@pytest.mark.parametrize("block", [b"Content-Type: a/b\n\n", b"HTTP/2 200 OK\n\n", b"HTTP/1.1 20 OK\n\n"])
def test_nph_without_a_status_line(block):
    with pytest.raises(MalformedOutput):
        parse(block, nph=True)
