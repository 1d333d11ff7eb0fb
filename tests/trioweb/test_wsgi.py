"""WSGIResource: PEP 3333 in memory (the environ, start_response, the validator)
and over real sockets (streaming both ways, backpressure, disconnects, aborts)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from wsgiref.validate import validator

import pytest
import trio

from tests.support.polling import wait_until
from tests.support.rawhttp import get
from trioweb.http import Limits, MiB
from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.testing import fetch
from trioweb.wsgi import WSGIResource


def echo_environ(environ, start_response):
    """The environ's CGI-style keys (and a few wsgi ones) as JSON."""
    shown = {key: value for key, value in environ.items() if key.isupper()}
    shown["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    shown["wsgi.input_terminated"] = environ["wsgi.input_terminated"]
    shown["wsgi.multithread"] = environ["wsgi.multithread"]
    shown["body"] = environ["wsgi.input"].read(-1).decode("latin-1")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown).encode()]


def mounted(app, name=b"app", **options):
    root = Resource()
    root.putChild(b"", Data(b"root", "text/plain"))
    root.putChild(name, WSGIResource(app, **options))
    return root


async def environ_of(target, root=None, **request):
    response = await fetch(root or mounted(validator(echo_environ)), target, **request)
    assert response.code == 200, bytes(response.body)
    return json.loads(bytes(response.body))


async def test_script_name_is_the_mount_point_and_path_info_the_rest():
    environ = await environ_of(b"/app/a/b?x=1&y=%20")
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/a/b"
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    environ = await environ_of(b"/app")
    assert environ["SCRIPT_NAME"] == "/app" and environ["PATH_INFO"] == ""
    environ = await environ_of(b"/app/")
    assert environ["PATH_INFO"] == "/"


async def test_at_the_root_script_name_is_empty():
    environ = await environ_of(b"/x", root=WSGIResource(validator(echo_environ)))
    assert environ["SCRIPT_NAME"] == "" and environ["PATH_INFO"] == "/x"


async def test_path_info_is_the_decoded_bytes_as_latin1():
    environ = await environ_of(b"/app/caf%C3%A9/%2e%2e%3F")
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/..?"  # the bytes, each as one character
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/..?"


async def test_body_headers_have_their_own_keys_and_repeated_headers_are_joined():
    environ = await environ_of(b"/app/", method=b"POST", body=b"a=1",
                               headers=[(b"Content-Type", b"application/x-www-form-urlencoded"),
                                        (b"X-Twice", b"one"), (b"X-Twice", b"two"),
                                        (b"Cookie", b"a=1"), (b"Cookie", b"b=2")])
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_X_TWICE"] == "one,two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"  # cookies joined so that they still parse
    assert environ["body"] == "a=1"


async def test_no_body_means_no_content_length_and_an_empty_input():
    environ = await environ_of(b"/app/")
    assert "CONTENT_LENGTH" not in environ and "CONTENT_TYPE" not in environ
    assert environ["body"] == ""


async def test_underscore_headers_and_proxy_never_reach_the_environ():
    # CVE-2015-0219: X_Auth_User must not pass for X-Auth-User; httpoxy: no HTTP_PROXY.
    environ = await environ_of(b"/app/", headers=[(b"X_Auth_User", b"admin"), (b"Script_Name", b"/evil"),
                                                  (b"Proxy", b"http://evil:8080/")])
    assert "HTTP_X_AUTH_USER" not in environ and "HTTP_PROXY" not in environ
    assert "HTTP_SCRIPT_NAME" not in environ and environ["SCRIPT_NAME"] == "/app"


async def test_server_and_remote_addresses_and_scheme():
    environ = await environ_of(b"/app/", headers=[(b"Host", b"example.org:8443")], secure=True)
    assert environ["SERVER_NAME"] == "example.org"
    assert environ["SERVER_PORT"] == "8080"  # the port the server listens on
    assert environ["HTTP_HOST"] == "example.org:8443"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"] == "40000"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.input_terminated"] is True and environ["wsgi.multithread"] is True
    assert (await environ_of(b"/app/"))["wsgi.url_scheme"] == "http"


# -- start_response and the iterable ------------------------------------------------


def streamed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    yield b"one "
    yield b""
    yield b"two"


def uses_write(environ, start_response):
    write = start_response("201 Created", [("Content-Type", "text/plain"), ("X-Made", "yes")])
    write(b"written, ")
    return [b"then returned"]


def file_wrapped(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    handle = open(environ["test.path"], "rb")
    handle.seek(int(environ["QUERY_STRING"] or 0))
    return environ["wsgi.file_wrapper"](handle, 4096)


def with_path(path):
    def app(environ, start_response):
        environ["test.path"] = str(path)
        return file_wrapped(environ, start_response)
    return app


def reads_input(environ, start_response):
    body = environ["wsgi.input"]
    how = environ["QUERY_STRING"]
    if how == "lines":
        parts = [body.readline(), body.readline(5), body.readline(), body.readline()]
    elif how == "iter":
        parts = list(body)
    elif how == "sized":
        parts = [body.read(2), body.read(3), body.read(100), body.read(1)]
    else:
        parts = [body.read(-1)]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps([p.decode() for p in parts]).encode()]


async def test_a_generator_is_streamed_and_empty_pieces_are_skipped():
    response = await fetch(WSGIResource(validator(streamed)), b"/")
    assert response.code == 200 and bytes(response.body) == b"one two" and response.complete
    assert response.header(b"content-type") == b"text/plain"


async def test_write_callable_then_iterable():
    response = await fetch(WSGIResource(validator(uses_write)), b"/")
    assert response.code == 201 and response.phrase == b"Created"
    assert bytes(response.body) == b"written, then returned" and response.header(b"x-made") == b"yes"


async def test_no_default_content_type_is_added():
    def bare(environ, start_response):
        start_response("200 OK", [])
        return [b"x"]
    response = await fetch(WSGIResource(bare), b"/")  # (the validator insists on a content type)
    assert response.header(b"content-type") is None and bytes(response.body) == b"x"


async def test_file_wrapper_sends_the_file_from_its_position(tmp_path):
    path = tmp_path / "data.bin"
    data = os.urandom(100_000)
    path.write_bytes(data)
    response = await fetch(WSGIResource(with_path(path)), b"/?1000")
    assert bytes(response.body) == data[1000:]
    assert response.header(b"content-length") == b"%d" % (len(data) - 1000)


@pytest.mark.parametrize("how, expected", [
    ("lines", ["first\n", "secon", "d\n", "third"]),
    ("iter", ["first\n", "second\n", "third"]),
    ("sized", ["fi", "rst", "\nsecond\nthird", ""]),
    ("all", ["first\nsecond\nthird"]),
])
async def test_wsgi_input_read_readline_iteration(how, expected):
    response = await fetch(WSGIResource(validator(reads_input)), b"/?" + how.encode(), method=b"POST",
                           body=b"first\nsecond\nthird")
    assert response.code == 200, bytes(response.body)
    assert json.loads(bytes(response.body)) == expected


def exc_info_before_the_head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("oops")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"sorry"]


async def test_exc_info_before_the_head_replaces_the_status():
    response = await fetch(WSGIResource(validator(exc_info_before_the_head)), b"/")
    assert response.code == 503 and bytes(response.body) == b"sorry"


@pytest.mark.parametrize("app", [
    lambda environ, start_response: [b"no start_response"],
    lambda environ, start_response: (start_response("200 OK", []), start_response("200 OK", []), [b""])[2],
    lambda environ, start_response: (start_response("OK", []), [b""])[1],
    lambda environ, start_response: (start_response("200 OK", [("Connection", "close")]), [b""])[1],
    lambda environ, start_response: (start_response("200 OK", [("X-Bad", "a\r\nInjected: 1")]), [b""])[1],
    lambda environ, start_response: (start_response("200 OK", [(b"X-Bytes", b"1")]), [b""])[1],
    lambda environ, start_response: (start_response("200 OK", []), ["text, not bytes"])[1],
    lambda environ, start_response: 1 / 0,
    lambda environ, start_response: (start_response("200 OK", []), None)[1],
    lambda environ, start_response: (start_response("200 OK", [("X-Ünicode", "1")]), [b""])[1],
], ids=["no-start", "twice", "bad-status", "hop-by-hop", "crlf", "bytes-headers", "str-body", "raises",
        "not-iterable", "bad-header-name"])
async def test_broken_applications_get_a_500_without_details(app, caplog):
    response = await fetch(WSGIResource(app), b"/")
    assert response.code == 500 and b"Processing Failed" in response.body
    assert b"Injected" not in bytes(response.body) and not any(n == b"injected" for n, _ in response.headers)
    assert "error rendering" in caplog.text


async def test_display_tracebacks_shows_the_application_error():
    from trioweb.server import Site

    def fails(environ, start_response):
        raise RuntimeError("<the detail>")
    response = await fetch(Site(WSGIResource(fails), displayTracebacks=True), b"/")
    assert response.code == 500 and b"&lt;the detail&gt;" in response.body


async def test_head_requests_get_the_head_only():
    response = await fetch(WSGIResource(validator(streamed)), b"/", method=b"HEAD")
    assert response.code == 200 and bytes(response.body) == b""


async def test_a_too_large_body_is_413():
    resource = WSGIResource(reads_input)
    resource.max_request_body = 10
    response = await fetch(resource, b"/", method=b"POST", body=b"x" * 100)
    assert response.code == 413


def test_put_child_raises():
    with pytest.raises(RuntimeError):
        WSGIResource(echo_environ).putChild(b"x", Resource())


# -- over a real socket -------------------------------------------------------------


async def test_validator_over_a_socket_for_many_kinds_of_request(start_site, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"file content")
    apps = Resource()
    apps.putChild(b"echo", WSGIResource(validator(echo_environ)))
    apps.putChild(b"stream", WSGIResource(validator(streamed)))
    apps.putChild(b"write", WSGIResource(validator(uses_write)))
    apps.putChild(b"input", WSGIResource(validator(reads_input)))
    apps.putChild(b"file", WSGIResource(validator(with_path(path))))
    site = await start_site(apps)
    requests = [
        get(b"/echo/x?a=b"),
        b"POST /echo/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /input/?lines HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nfirst\n\r\n7\r\nsecond\n\r\n5\r\nthird\r\n0\r\n\r\n",
        b"POST /input/?iter HTTP/1.0\r\nContent-Length: 12\r\n\r\nfirst\nsecond",
        get(b"/stream/"), get(b"/write/"), get(b"/file/?5"),
    ]
    for raw in requests:
        response = await site.request(raw)
        assert response.status in (200, 201), (raw, response.body)
    assert (await site.request(get(b"/file/?5"))).body == b"content"
    chunked = await site.request(get(b"/stream/"))
    assert chunked.chunked and chunked.body == b"one two"


async def test_the_body_is_streamed_to_the_application(start_site):
    """A 20 MiB upload is hashed piece by piece: the application sees it as it arrives."""
    def hashes(environ, start_response):
        digest = hashlib.sha256()
        while piece := environ["wsgi.input"].read(65536):
            digest.update(piece)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [digest.hexdigest().encode()]

    site = await start_site(WSGIResource(validator(hashes)), limits=Limits(max_body_size=32 * MiB))
    body = os.urandom(1024 * 1024) * 20
    conn = await site.connect(timeout=30)
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    await conn.send(body)
    response = await conn.read_response()
    assert response.body == hashlib.sha256(body).hexdigest().encode()
    await conn.aclose()


async def test_a_slow_client_slows_the_application_and_close_is_called_when_it_leaves(start_site):
    produced = 0
    closed = threading.Event()

    class Endless:
        def __iter__(self):
            nonlocal produced
            while True:
                produced += 1
                yield b"x" * 65536

        def close(self):
            closed.set()

    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless()

    site = await start_site(WSGIResource(endless))
    conn = await site.connect()
    await conn.send(get(b"/"))
    await trio.sleep(1.0)  # the client reads nothing
    stalled_at = produced
    await trio.sleep(0.5)
    assert produced == stalled_at, "the application kept producing for a client that reads nothing"
    assert produced * 65536 < 64 * 1024 * 1024  # what the socket buffers hold, not the whole body
    await conn.aclose()
    assert await trio.to_thread.run_sync(closed.wait, 10)
    assert produced <= stalled_at + 2  # iteration stopped


async def test_close_is_called_when_the_client_leaves_a_slow_application(start_site):
    closed = threading.Event()

    class Slow:
        def __iter__(self):
            for _ in range(100):
                time.sleep(0.05)
                yield b"tick\n"

        def close(self):
            closed.set()

    def slow(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Slow()

    site = await start_site(WSGIResource(slow))
    conn = await site.connect()
    await conn.send(get(b"/"))
    await trio.sleep(0.3)
    await conn.aclose()
    assert await trio.to_thread.run_sync(closed.wait, 4)  # well before the 5 s the whole body would take


async def test_an_error_after_the_first_byte_aborts_the_connection(start_site, caplog):
    def fails_midway(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a first piece"
        raise RuntimeError("midway")

    site = await start_site(WSGIResource(fails_midway))
    await site.request_cut_short(get(b"/"))  # chunked, never terminated by its last chunk
    assert "failed after its response started" in caplog.text and "midway" in caplog.text


async def test_exc_info_after_the_head_aborts_the_connection(start_site, caplog):
    def late(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a piece"
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"never"

    site = await start_site(WSGIResource(late))
    await site.request_cut_short(get(b"/"))
    assert "late" in caplog.text


async def test_threads_are_bounded_by_the_limiter(start_site):
    running = 0
    most = 0
    lock = threading.Lock()

    def busy(environ, start_response):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    site = await start_site(WSGIResource(busy, limiter=trio.CapacityLimiter(2)))
    results = []

    async def one():
        results.append((await site.request(get(b"/"))).body)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert results == [b"done"] * 5 and most == 2


async def test_calls_beyond_the_limiter_wait_in_order_and_all_run(start_site):
    """More calls than tokens (threads awake at once): the others wait and
    run in the order they came; once the threads sleep, none holds a token."""
    order = []

    def numbered(environ, start_response):
        order.append(environ["PATH_INFO"])
        time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    limiter = trio.CapacityLimiter(1)
    site = await start_site(WSGIResource(numbered, limiter=limiter))
    results = []

    async def one(number: int) -> None:
        results.append((await site.request(get(b"/%d" % number))).body)

    async with trio.open_nursery() as nursery:
        for number in range(6):
            nursery.start_soon(one, number)
            await trio.sleep(0.002)  # the requests arrive in this order
    assert sorted(results) == [b"/%d" % number for number in range(6)]
    assert order == [f"/{number}" for number in range(6)] and limiter.borrowed_tokens == 0


async def test_a_shared_limiter_held_elsewhere_delays_calls_until_a_token_comes_back(start_site):
    """With every token of a shared limiter held by someone else and no thread
    of this resource awake, its calls wait (one waiter in the limiter, for a
    thread's token) and run once a token is released."""

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    limiter = trio.CapacityLimiter(1)
    holder = object()
    limiter.acquire_on_behalf_of_nowait(holder)
    site = await start_site(WSGIResource(hello, limiter=limiter))
    results = []

    async def one() -> None:
        results.append((await site.request(get(b"/"))).body)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
        await trio.sleep(0.3)
        assert results == [] and limiter.statistics().tasks_waiting == 1
        limiter.release_on_behalf_of(holder)
    assert results == [b"hello"] * 3 and limiter.borrowed_tokens == 0


async def test_a_call_waiting_for_a_thread_is_dropped_when_its_client_goes_away(start_site):
    """A request whose client left while its call waited for a thread never
    runs the application, and its place is not kept: the next call runs."""
    paths = []
    release = threading.Event()

    def app(environ, start_response):
        paths.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/first":
            release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    limiter = trio.CapacityLimiter(1)
    site = await start_site(WSGIResource(app, limiter=limiter))
    first = []

    async def fetch_first() -> None:
        first.append((await site.request(get(b"/first"))).body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch_first)
        await wait_until(lambda: paths == ["/first"], timeout=5)
        gone = await site.connect()
        await gone.send(get(b"/gone"))
        await trio.sleep(0.2)
        await gone.aclose()
        await trio.sleep(0.3)  # the server sees the client go (its watcher starts after 50 ms)
        await trio.to_thread.run_sync(release.set)
    assert first == [b"done"]
    assert (await site.request(get(b"/after"))).body == b"done"
    assert paths == ["/first", "/after"] and limiter.borrowed_tokens == 0


def test_a_resource_serves_again_in_a_new_trio_run_with_all_its_tokens():
    """A resource outlives a trio run (a test, an embedding program): the next
    run gets a dispatcher of its own and the limiter's every token."""

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    limiter = trio.CapacityLimiter(2)
    resource = WSGIResource(hello, limiter=limiter)

    async def fetch_some() -> list[bytes]:
        bodies: list[bytes] = []

        async def one() -> None:
            bodies.append((await fetch(resource, b"/")).body)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
        return bodies

    for _ in range(3):
        assert trio.run(fetch_some) == [b"hello"] * 5
    # A thread that went to sleep as a run ended, its token not released by that run's loop:
    stale = threading.Lock()
    limiter.acquire_on_behalf_of_nowait(stale)
    resource.workers._asleep_with_token.add(stale)
    assert trio.run(fetch_some) == [b"hello"] * 5
    assert stale not in limiter.statistics().borrowers


def test_a_run_that_ends_while_a_call_waits_for_a_shared_limiter_leaves_the_threads_usable():
    """The dispatcher waits in a shared limiter with a sleeping thread set
    aside for the token; if the run ends meanwhile, the thread goes back among
    the sleeping ones (it may end when idle, and is woken by the next run)."""

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    limiter = trio.CapacityLimiter(1)
    resource = WSGIResource(hello, limiter=limiter)

    async def fetch_hello() -> bytes:
        return (await fetch(resource, b"/")).body

    holder = object()

    async def a_call_that_waits() -> None:
        limiter.acquire_on_behalf_of_nowait(holder)
        with trio.move_on_after(0.3):
            await fetch_hello()

    assert trio.run(fetch_hello) == b"hello"  # a thread, asleep now
    trio.run(a_call_that_waits)
    workers = resource.workers
    assert workers._threads == len(workers._idle) == 1
    limiter.release_on_behalf_of(holder)
    assert trio.run(fetch_hello) == b"hello"
    assert workers._threads == 1


async def test_the_event_loop_is_free_while_the_application_blocks(start_site):
    def blocks(environ, start_response):
        time.sleep(1.0)
        start_response("200 OK", [])
        return [b"late"]

    root = mounted(blocks)
    site = await start_site(root)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.request, get(b"/app/"))
        await trio.sleep(0.1)
        started = trio.current_time()
        assert (await site.request(get(b"/"))).body == b"root"
        assert trio.current_time() - started < 0.5


async def test_wsgi_errors_go_to_the_error_log(caplog):
    def complains(environ, start_response):
        environ["wsgi.errors"].write("first line\nsecond ")
        environ["wsgi.errors"].write("line\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="trioweb.wsgi"):
        response = await fetch(WSGIResource(validator(complains)), b"/")
    assert response.code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "trioweb.wsgi"] == ["first line", "second line"]


async def test_behind_a_front_script_name_is_the_users_prefix(start_site, nursery, tmp_path):
    from tests.trioweb.distrib.personal import front_to_personal

    site, _ = await front_to_personal(start_site, nursery, tmp_path, root=mounted(validator(echo_environ)))
    response = await site.request(b"POST /~alice/app/x?q=1 HTTP/1.1\r\nHost: example.org:8000\r\n"
                                  b"Content-Length: 4\r\n\r\nbody")
    environ = json.loads(response.body)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/~alice/app", "/x", "q=1")
    assert environ["body"] == "body" and environ["HTTP_HOST"] == "example.org:8000"
    assert environ["SERVER_NAME"] == "example.org"
    (tmp_path / "2").mkdir()
    site, _ = await front_to_personal(start_site, nursery, tmp_path / "2", root=mounted(validator(streamed)))
    chunked = await site.request(get(b"/~alice/app/"))
    assert chunked.body == b"one two"


async def test_wsgi_input_never_reads_past_the_body(start_site):
    """A pipelined request right behind a body stays a request of its own."""
    site = await start_site(WSGIResource(validator(reads_input)))
    conn = await site.connect()
    await conn.send(b"POST /?all HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nfirst"
                    b"POST /?all HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nsecond")
    first = await conn.read_response()
    second = await conn.read_response()
    await conn.aclose()
    assert json.loads(first.body) == ["first"] and json.loads(second.body) == ["second"]


async def test_idle_worker_threads_end_and_new_calls_start_new_ones():
    """A resource replaced by a reload leaves no thread behind: idle workers end."""
    from trioweb.wsgi import _workers

    def hello(environ, start_response):
        time.sleep(0.05)  # long enough for the calls to overlap, so that several threads start
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    resource = WSGIResource(hello)
    resource.workers = _workers.Workers(resource.limiter, idle_seconds=0.2)

    async def fetch_hello(results: list) -> None:
        results.append((await fetch(resource, b"/")).body)

    results: list[bytes] = []
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(fetch_hello, results)
    assert results == [b"hello"] * 4 and resource.workers._threads >= 2
    await wait_until(lambda: resource.workers._threads == 0, timeout=5)
    assert (await fetch(resource, b"/")).body == b"hello"  # a call after they ended starts a thread again


async def test_calls_never_wait_for_the_stall_check(monkeypatch):
    """Threads are woken after the scheduler pass that queued calls, the very
    first call of a resource included: single, sequential and concurrent
    requests to a quick application never need the stall check (which
    wakes threads for calls left waiting behind blocked ones)."""
    from trioweb.wsgi import _workers

    monkeypatch.setattr(_workers, "STALL_SECONDS", 1.0)
    stalled = []

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    resource = WSGIResource(hello)
    wake_stalled = resource.workers._wake_stalled
    resource.workers._wake_stalled = lambda: (stalled.append(True), wake_stalled())  # type: ignore[method-assign]
    bodies: list[bytes] = []

    async def fetch_hello() -> None:
        bodies.append((await fetch(resource, b"/")).body)

    for _ in range(3):
        await fetch_hello()
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(fetch_hello)
    assert bodies == [b"hello"] * 23 and stalled == []


async def test_a_first_chunk_with_the_whole_declared_length_completes_the_response():
    """The application is not asked for more once it gave its Content-Length; close() is called."""
    asked_again = []
    closed = threading.Event()

    class Body:
        def __init__(self):
            self.chunks = iter([b"", b"hello"])

        def __iter__(self):
            return self

        def __next__(self):
            try:
                return next(self.chunks)
            except StopIteration:
                asked_again.append(True)
                raise

        def close(self):
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return Body()

    response = await fetch(WSGIResource(validator(app)), b"/")
    assert (response.code, response.body, asked_again) == (200, b"hello", [])
    assert response.header(b"content-length") == b"5" and response.complete and closed.is_set()
