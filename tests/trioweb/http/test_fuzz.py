"""Fuzzing a real server with hypothesis: never a 500, never a traceback, always still serving.

The server runs in a thread (its own trio loop) for the whole run; each
example is sent on a fresh connection, half-closed, and whatever comes back
is read until the server closes. What is sent: valid requests mutated
(bytes flipped, inserted, deleted, repeated), raw bytes, chunked bodies with
odd sizes, extensions and trailers, multipart forms with odd parts, and
static-file requests with odd conditional and range headers.

The default run takes a few seconds (``FUZZ_EXAMPLES`` per strategy, the
same examples every time). A longer run, with new examples each time, is
marked slow:

    .venv/bin/python -m pytest tests/trioweb/http/test_fuzz.py -m slow
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioweb.http import Limits
from trioweb.resource import Resource
from trioweb.server import Server, Site
from trioweb.static import File

FUZZ_EXAMPLES = 150
SLOW_EXAMPLES = 3000
ANSWER_500 = re.compile(rb"HTTP/1\.[01] 500 ")


class Form(Resource):
    """Reads every kind of form the way a resource would."""

    isLeaf = True

    def render_GET(self, request):
        return b"%d" % len(request.args)

    def render_POST(self, request):
        files = request.files
        return b"%d %d" % (len(request.args), sum(len(u) for u in files.values()))


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def server_in_thread(tmp: Path) -> Iterator[int]:
    """A Site (a form resource and static files) served from another thread; yields its port."""
    (tmp / "f.txt").write_bytes(b"0123456789" * 100)
    (tmp / "x.html").write_bytes(b"<p>x</p>")
    (tmp / "x.html.gz").write_bytes(b"not really gzip")
    root = File(str(tmp))
    root.putChild(b"form", Form())
    limits = Limits(header_timeout=2, body_timeout=2, keepalive_timeout=2, max_body_size=256 * 1024,
                    max_connections_per_address=0)
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server = Server(Site(root, limits=limits), listeners)
        box.update(port=listeners[0].socket.getsockname()[1], server=server,
                   token=trio.lowlevel.current_trio_token())
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["port"]  # type: ignore[misc]
    finally:
        trio.from_thread.run_sync(box["server"].stop, trio_token=box["token"])  # type: ignore[attr-defined]
        thread.join(30)


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, read until the server closes (or 5 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse mid-way and close: what it said is still read
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return bytes(received)


# -- what is sent ----------------------------------------------------------------------------------

VALID = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /f.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9,20-\r\nIf-Range: \"x\"\r\n\r\n",
    b"GET /x.html HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip;q=0.5, br\r\n"
    b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
    b"POST /form?a=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 7\r\n\r\nb=2&c=3",
    b"POST /form HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 95\r\n\r\n"
    b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        if action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.sampled_from(
                [b"\r\n", b"\n", b"\r", b":", b" ", b"\x00", b"0", b"-", b";", b"\"", b"%", b"\xff", b"\t"]))
        elif action == "delete":
            del data[position:position + draw(st.integers(1, 8))]
        else:
            end = min(len(data), position + draw(st.integers(1, 40)))
            data[position:position] = data[position:end] * draw(st.integers(1, 50))
    return bytes(data)


def chunk_size(size: int, style: str) -> bytes:
    return {"hex": b"%x" % size, "HEX": b"%X" % size, "padded": b"000%x" % size, "ext": b"%x;a=b" % size,
            "space": b"%x " % size}[style]


@st.composite
def chunked(draw: st.DrawFn) -> bytes:
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
    style = draw(st.sampled_from(["hex", "HEX", "padded", "ext", "space"]))
    body = b"".join(chunk_size(len(p), style) + b"\r\n" + p + b"\r\n" for p in pieces)
    trailers = b"".join(b"%s: %s\r\n" % (name, value) for name, value in draw(st.lists(
        st.tuples(st.from_regex(rb"\A[A-Za-z-]{1,10}\Z"), st.binary(max_size=20)), max_size=4)))
    end = draw(st.sampled_from([b"0\r\n" + trailers + b"\r\n", b"0\r\n", b"", b"0;x\r\n\r\n", b"1\r\n"]))
    return b"POST /form HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body + end


@st.composite
def multipart(draw: st.DrawFn) -> bytes:
    boundary = draw(st.sampled_from([b"B", b"----x", b"a b", b"\"q\"", b"x" * 80]))
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([b'name="f"', b"name=f", b'name="a\\"b"', b"", b'name="x"; filename="../e"',
                                     b'name="u"; filename="a.txt"']))
        ctype = draw(st.sampled_from([b"", b"\r\nContent-Type: text/plain", b"\r\nContent-Type:"]))
        content = draw(st.binary(max_size=60)) + draw(st.sampled_from([b"", b"--B", b"\r\n--B", b"\r\n--B--"]))
        parts.append(b"--" + boundary + b"\r\nContent-Disposition: form-data; " + name + ctype + b"\r\n\r\n"
                     + content + b"\r\n")
    end = draw(st.sampled_from([b"--" + boundary + b"--\r\n", b"", b"--" + boundary, b"--" + boundary + b"--"]))
    body = b"".join(parts) + end
    param = draw(st.sampled_from([b"boundary=", b"Boundary=", b"BOUNDARY=\"", b""]))
    ctype = b"multipart/form-data; " + param + boundary + (b"\"" if param.endswith(b"\"") else b"")
    return (b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


@st.composite
def static_headers(draw: st.DrawFn) -> bytes:
    value = st.one_of(st.from_regex(rb"\A[ -~]{0,40}\Z"), st.sampled_from([
        b"bytes=0-", b"bytes=-5", b"bytes=5-2", b"bytes=" + b"0-1," * 200, b"Mon, 01 Jan 10000 00:00:00 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMT", b"\"x\"", b"W/\"x\"", b"*", b"gzip;q=x", b"br;q=0"]))
    names = [b"Range", b"If-Range", b"If-Modified-Since", b"If-None-Match", b"Accept-Encoding"]
    fields = b"".join(name + b": " + draw(value) + b"\r\n" for name in draw(st.lists(st.sampled_from(names),
                                                                                      max_size=4)))
    path = draw(st.sampled_from([b"/f.txt", b"/x.html", b"/", b"/missing", b"/%2e%2e/etc/passwd", b"/f.txt/"]))
    return b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n"


ANY_INPUT = st.one_of(mutated(), st.binary(max_size=300), chunked(), multipart(), static_headers())


# -- the runs --------------------------------------------------------------------------------------


def fuzz(tmp_path: Path, examples: int, *, derandomize: bool) -> None:
    collect = Collect()
    logging.getLogger().addHandler(collect)
    try:
        with server_in_thread(tmp_path) as port:

            @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(ANY_INPUT)
            def never_a_500(data: bytes) -> None:
                answer = exchange(port, data)
                assert not ANSWER_500.search(answer), (data, answer[:300])

            never_a_500()
            fresh = exchange(port, b"GET /f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert fresh.startswith(b"HTTP/1.1 200 ")
    finally:
        logging.getLogger().removeHandler(collect)
    bad = [r for r in collect.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def test_fuzz_briefly(tmp_path):
    # The same examples every run: the default suite must not fail by chance.
    fuzz(tmp_path, FUZZ_EXAMPLES * 5, derandomize=True)


@pytest.mark.slow
def test_fuzz_long(tmp_path):
    # New examples every run: what it finds becomes a test of its own.
    fuzz(tmp_path, SLOW_EXAMPLES * 5, derandomize=False)
