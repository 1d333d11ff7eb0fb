"""Conditional GET (ETag, Last-Modified, If-Range) and byte ranges on static.File."""

from __future__ import annotations

import os
import re
from email.utils import formatdate

import pytest

from tests.trioweb.static.sizes import BIG_SIZE
from trioweb.static._ranges import MAX_RANGES, parse_range

DATA = b"0123456789abcdefghij"


async def test_if_none_match_gives_304_without_body(tree, serve_file):
    site = await serve_file(tree)
    etag = (await site.get("/a.txt")).header(b"etag")
    for header in (etag, b'"nope", ' + etag, b"W/" + etag, b"*"):
        cached = await site.get("/a.txt", b"If-None-Match: " + header + b"\r\n")
        assert cached.status == 304, header
        assert cached.body == b""
        assert cached.header(b"etag") == etag
        assert cached.header(b"content-type") is None
    fresh = await site.get("/a.txt", b'If-None-Match: "other"\r\n')
    assert (fresh.status, fresh.body) == (200, DATA)


async def test_if_modified_since(tree, serve_file):
    site = await serve_file(tree)
    modified = (await site.get("/big.bin")).header(b"last-modified")
    cached = await site.get("/big.bin", b"If-Modified-Since: " + modified + b"\r\n")
    assert (cached.status, cached.body) == (304, b"")
    older = formatdate(os.stat(tree / "big.bin").st_mtime - 3600, usegmt=True).encode()
    assert (await site.get("/big.bin", b"If-Modified-Since: " + older + b"\r\n")).status == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
    both = await site.get("/big.bin", b"If-Modified-Since: " + modified + b'\r\nIf-None-Match: "x"\r\n')
    assert both.status == 200


async def test_etag_changes_with_the_file(tree, serve_file):
    site = await serve_file(tree)
    before = (await site.get("/a.txt")).header(b"etag")
    (tree / "a.txt").write_bytes(DATA + b"!")
    after = await site.get("/a.txt", b"If-None-Match: " + before + b"\r\n")
    assert after.status == 200 and after.body == DATA + b"!"
    assert after.header(b"etag") != before


@pytest.mark.parametrize(("spec", "first", "last"), [
    (b"bytes=0-9", 0, 9), (b"bytes=15-", 15, 19), (b"bytes=-5", 15, 19), (b"bytes=5-100", 5, 19),
    (b"bytes=-100", 0, 19), (b"BYTES = 3 - 4", 3, 4), (b"bytes=,,2-3,", 2, 3),
])
async def test_single_range(tree, serve_file, spec, first, last):
    site = await serve_file(tree)
    response = await site.get("/a.txt", b"Range: " + spec + b"\r\n")
    assert response.status == 206
    assert response.header(b"content-range") == b"bytes %d-%d/20" % (first, last)
    assert response.body == DATA[first:last + 1]
    assert response.header(b"content-length") == b"%d" % (last - first + 1)


async def test_range_of_big_file_uses_the_streaming_path(tree, serve_file):
    site = await serve_file(tree)
    data = (tree / "big.bin").read_bytes()
    response = await site.get("/big.bin", b"Range: bytes=1000-2000999\r\n")
    assert response.status == 206
    assert response.body == data[1000:2001000]
    tail = await site.get("/big.bin", b"Range: bytes=-70000\r\n")
    assert tail.body == data[-70000:]
    assert tail.header(b"content-range") == b"bytes %d-%d/%d" % (BIG_SIZE - 70000, BIG_SIZE - 1, BIG_SIZE)


@pytest.mark.parametrize("spec", [b"bytes=20-", b"bytes=30-40", b"bytes=-0", b"bytes=25-30,40-"])
async def test_unsatisfiable_is_416(tree, serve_file, spec):
    site = await serve_file(tree)
    response = await site.get("/a.txt", b"Range: " + spec + b"\r\n")
    assert response.status == 416
    assert response.header(b"content-range") == b"bytes */20"
    assert response.body == b""


@pytest.mark.parametrize("spec", [
    b"bytes", b"bytes=", b"bytes=3", b"bytes=-", b"bytes=foo-", b"bytes=-foo", b"bytes=5-4",
    b"items=0-1", b"bytes=1-2-3", b"bytes=0x1-2", b"bytes=+1-2",
])
async def test_invalid_range_is_ignored(tree, serve_file, spec):
    site = await serve_file(tree)
    response = await site.get("/a.txt", b"Range: " + spec + b"\r\n")
    assert (response.status, response.body) == (200, DATA)
    assert response.header(b"content-range") is None


def _parts(response, ctype=b"text/plain"):
    """(Content-Range, data) of each part of a multipart/byteranges body, checking its framing."""
    boundary = re.fullmatch(rb"multipart/byteranges; boundary=([0-9a-f]+)", response.header(b"content-type"))[1]
    body = response.body
    parts = []
    position = 0
    marker = b"\r\n--" + boundary + b"\r\n"
    while body.startswith(marker, position):
        head_end = body.index(b"\r\n\r\n", position + len(marker))
        head = body[position + len(marker):head_end]
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        assert fields[b"Content-Type"] == ctype
        first, last = map(int, fields[b"Content-Range"].split(b" ")[1].split(b"/")[0].split(b"-"))
        start = head_end + 4
        parts.append((fields[b"Content-Range"], body[start:start + last - first + 1]))
        position = start + last - first + 1
    assert body[position:] == b"\r\n--" + boundary + b"--\r\n"
    return parts, boundary


async def test_multiple_ranges_are_multipart(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/a.txt", b"Range: bytes=0-1, 15-, 30-40\r\n")
    assert response.status == 206
    assert int(response.header(b"content-length")) == len(response.body)
    parts, _ = _parts(response)
    assert parts == [(b"bytes 0-1/20", b"01"), (b"bytes 15-19/20", b"fghij")]


async def test_multipart_of_big_file(tree, serve_file):
    site = await serve_file(tree)
    data = (tree / "big.bin").read_bytes()
    response = await site.get("/big.bin", b"Range: bytes=-10,0-99999,2000000-2100000\r\n")
    assert response.status == 206
    parts, _ = _parts(response, b"application/octet-stream")
    assert parts == [
        (b"bytes 0-99999/%d" % BIG_SIZE, data[:100000]),
        (b"bytes 2000000-2100000/%d" % BIG_SIZE, data[2000000:2100001]),
        (b"bytes %d-%d/%d" % (BIG_SIZE - 10, BIG_SIZE - 1, BIG_SIZE), data[-10:]),
    ]


async def test_overlapping_ranges_are_merged(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/a.txt", b"Range: bytes=0-4,2-8,9-10\r\n")
    assert response.status == 206
    assert response.header(b"content-range") == b"bytes 0-10/20"
    assert response.body == DATA[:11]


async def test_apache_killer_is_bounded(tree, serve_file):
    """CVE-2011-3192: 1,300 overlapping ranges must not multiply the response."""
    site = await serve_file(tree)
    killer = b"bytes=0-," + b",".join(b"5-%d" % n for n in range(1300))
    response = await site.get("/big.bin", b"Range: " + killer + b"\r\nRequest-Range: " + killer + b"\r\n")
    assert response.status == 200
    assert len(response.body) == BIG_SIZE
    thousand = b"bytes=" + b",".join(b"%d-%d" % (n * 2, n * 2) for n in range(1000))
    response = await site.get("/big.bin", b"Range: " + thousand + b"\r\n")
    assert response.status == 200
    assert len(response.body) == BIG_SIZE


async def test_many_overlapping_ranges_under_the_cap_merge_to_one(tree, serve_file):
    site = await serve_file(tree)
    ranges = b"bytes=0-," + b",".join(b"5-%d" % n for n in range(5, MAX_RANGES + 4))
    response = await site.get("/big.bin", b"Range: " + ranges + b"\r\n")
    assert response.status == 206
    assert response.header(b"content-range") == b"bytes 0-%d/%d" % (BIG_SIZE - 1, BIG_SIZE)
    assert len(response.body) == BIG_SIZE


async def test_if_range(tree, serve_file):
    site = await serve_file(tree)
    full = await site.get("/a.txt")
    etag, modified = full.header(b"etag"), full.header(b"last-modified")
    for validator in (etag, modified):
        ranged = await site.get("/a.txt", b"Range: bytes=0-1\r\nIf-Range: " + validator + b"\r\n")
        assert (ranged.status, ranged.body) == (206, b"01"), validator
    for stale in (b'"stale"', b"W/" + etag, b"Mon, 01 Jan 2001 00:00:00 GMT", b"garbage"):
        whole = await site.get("/a.txt", b"Range: bytes=0-1\r\nIf-Range: " + stale + b"\r\n")
        assert (whole.status, whole.body) == (200, DATA), stale


async def test_head_with_range(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/big.bin", b"Range: bytes=0-99\r\n", method=b"HEAD")
    assert response.status == 206
    assert response.header(b"content-length") == b"100"
    assert response.body == b""


def test_parse_range_units():
    assert parse_range(b"bytes=0-", 10) == [(0, 9)]
    assert parse_range(b"bytes=-3", 10) == [(7, 9)]
    assert parse_range(b"bytes=0-0,-1", 1) == [(0, 0)]
    assert parse_range(b"bytes=0-1,3-4,2-2", 10) == [(0, 4)]
    assert parse_range(b"bytes=0-", 0) == []
    assert parse_range(b"bytes=" + b",".join([b"1-1"] * (MAX_RANGES + 1)), 10) is None
