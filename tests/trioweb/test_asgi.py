"""ASGIResource: the http scope, receive/send, streaming both ways, disconnects,
errors, pathsend and the lifespan; in memory and over real sockets."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import trio

from tests.support.rawhttp import get
from trioweb.asgi import ASGIResource, ClientDisconnected, LifespanError
from trioweb.http import Limits, MiB
from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.testing import fetch


async def show_scope(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        body += message["body"]
        if not message["more_body"]:
            break
    shown = {key: value for key, value in scope.items() if key not in ("headers", "raw_path", "query_string")}
    shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
    shown["raw_path"] = scope["raw_path"].decode()
    shown["query_string"] = scope["query_string"].decode()
    shown["body"] = body.decode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(shown).encode()})


def mounted(app, name=b"app"):
    root = Resource()
    root.putChild(b"", Data(b"root", "text/plain"))
    root.putChild(name, ASGIResource(app))
    return root


async def scope_of(target, **request):
    response = await fetch(mounted(show_scope), target, **request)
    assert response.code == 200, bytes(response.body)
    return json.loads(bytes(response.body))


async def test_the_http_scope():
    scope = await scope_of(b"/app/caf%C3%A9/x?a=1", method=b"POST", body=b"hello",
                           headers=[(b"X-Twice", b"1"), (b"X-Twice", b"2")])
    assert scope["type"] == "http" and scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1" and scope["method"] == "POST" and scope["scheme"] == "http"
    assert scope["path"] == "/app/café/x" and scope["raw_path"] == "/app/caf%C3%A9/x"
    assert scope["root_path"] == "/app"
    assert scope["query_string"] == "a=1"
    assert ["x-twice", "1"] in scope["headers"] and ["x-twice", "2"] in scope["headers"]
    assert ["host", "localhost"] in scope["headers"]
    assert scope["client"] == ["127.0.0.1", 40000] and scope["server"] == ["127.0.0.1", 8080]
    assert scope["body"] == "hello"
    assert "http.response.pathsend" in scope["extensions"]
    assert (await scope_of(b"/app/", secure=True))["scheme"] == "https"


async def test_at_the_root_root_path_is_empty():
    response = await fetch(ASGIResource(show_scope), b"/x")
    scope = json.loads(bytes(response.body))
    assert scope["root_path"] == "" and scope["path"] == "/x"


async def streams(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(3):
        await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_a_streamed_response_is_chunked_and_one_message_gets_a_content_length(start_site):
    site = await start_site(mounted(streams))
    response = await site.request(get(b"/app/"))
    assert response.chunked and response.body == b"piece 0\npiece 1\npiece 2\n"
    site = await start_site(mounted(show_scope))
    response = await site.request(get(b"/app/"))
    assert not response.chunked and response.header(b"content-length") == b"%d" % len(response.body)


async def test_the_request_body_arrives_in_pieces(start_site):
    pieces = []

    async def hashes(scope, receive, send):
        digest = hashlib.sha256()
        while True:
            message = await receive()
            digest.update(message["body"])
            pieces.append(len(message["body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": digest.hexdigest().encode()})

    site = await start_site(ASGIResource(hashes), limits=Limits(max_body_size=32 * MiB))
    body = os.urandom(1024 * 1024) * 20
    conn = await site.connect(timeout=30)
    await conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    await conn.send(body)
    response = await conn.read_response()
    await conn.aclose()
    assert response.body == hashlib.sha256(body).hexdigest().encode()
    assert len(pieces) > 10  # streamed, not read whole first
    response = await site.request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert response.body == hashlib.sha256(b"abcde").hexdigest().encode()


async def test_too_large_a_body_is_413_and_the_application_hears_disconnect():
    heard = []

    async def app(scope, receive, send):
        heard.append((await receive())["type"])
        with pytest.raises(ClientDisconnected):
            await send({"type": "http.response.start", "status": 200})
        heard.append("refused")

    resource = ASGIResource(app)
    resource.max_request_body = 10
    response = await fetch(resource, b"/", method=b"POST", body=b"x" * 100)
    assert response.code == 413 and heard == ["http.disconnect", "refused"]


async def test_the_application_hears_disconnect_once_the_response_is_done(start_site):
    heard = trio.Event()

    async def app(scope, receive, send):
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"done"})
        assert (await receive())["type"] == "http.disconnect"
        heard.set()

    site = await start_site(ASGIResource(app))
    assert (await site.request(get(b"/"))).body == b"done"
    with trio.fail_after(5):
        await heard.wait()


async def test_a_client_that_leaves_stops_a_streaming_application(start_site):
    stopped = trio.Event()

    async def endless(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        finally:
            stopped.set()

    site = await start_site(ASGIResource(endless))
    conn = await site.connect()
    await conn.send(get(b"/"))
    await trio.sleep(0.3)
    await conn.aclose()
    with trio.fail_after(5):
        await stopped.wait()


async def test_a_client_that_leaves_cancels_a_waiting_application(start_site):
    cancelled = trio.Event()

    async def waits(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"wait", "more_body": True})
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise

    site = await start_site(ASGIResource(waits))
    await leave_mid_request(site, b"/", cancelled)


async def leave_mid_request(site, path: bytes, cancelled: trio.Event) -> None:
    """Send a request for ``path``, leave while it is served, and see the application cancelled."""
    conn = await site.connect()
    await conn.send(get(path))
    await trio.sleep(0.2)
    await conn.aclose()
    with trio.fail_after(5):
        await cancelled.wait()


async def test_an_application_that_waits_in_scopes_of_its_own_is_answered_on_a_kept_connection(start_site):
    # Its first wait is inside its own cancel scopes: the rest of it runs in
    # none of the server's (see Request.run_until_it_waits), and the connection goes on.
    async def waits(scope, receive, send):
        with trio.move_on_after(30):
            await trio.sleep(0.01)
        with trio.fail_after(30):
            await trio.lowlevel.checkpoint()
            await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    site = await start_site(ASGIResource(waits))
    conn = await site.connect()
    for path in (b"/one", b"/two"):
        await conn.send(get(path))
        response = await conn.read_response()
        assert response.status == 200 and response.body == path
    await conn.aclose()


async def test_a_client_that_leaves_cancels_an_application_waiting_in_its_own_scope(start_site):
    cancelled = trio.Event()

    async def waits(scope, receive, send):
        if scope["path"] == "/quick":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"quick"})
            return
        try:
            with trio.move_on_after(30):
                await trio.sleep(30)
        except trio.Cancelled:
            cancelled.set()
            raise

    site = await start_site(ASGIResource(waits))
    await leave_mid_request(site, b"/slow", cancelled)
    assert (await site.request(get(b"/quick"))).body == b"quick"


@pytest.mark.parametrize("app", [
    lambda scope, receive, send: _raise(RuntimeError("before")),
    lambda scope, receive, send: send({"type": "http.response.body", "body": b"no start"}),
    lambda scope, receive, send: send({"type": "http.nonsense"}),
    lambda scope, receive, send: _nothing(),  # returns without a response
    lambda scope, receive, send: send({"type": "http.response.start", "status": 200,
                                       "headers": [(b"x-bad", b"a\r\nInjected: 1")]}),
    lambda scope, receive, send: send({"type": "http.response.start", "status": 42}),
    lambda scope, receive, send: _start_then(send, {"type": "http.response.body", "body": "text, not bytes"}),
    lambda scope, receive, send: _start_then(send, {"type": "http.response.start", "status": 200}),
    lambda scope, receive, send: _start_then(send, {"type": "http.response.body", "body": 5}),
], ids=["raises", "body-first", "unknown-message", "no-response", "crlf", "bad-status", "str-body", "start-twice",
        "int-body"])
async def test_broken_applications_get_a_500(app, caplog):
    response = await fetch(ASGIResource(app), b"/")
    assert response.code == 500 and b"Processing Failed" in response.body
    assert not any(n == b"injected" for n, _ in response.headers)
    assert "error rendering" in caplog.text


async def _raise(exc):
    raise exc


async def _nothing():
    pass


async def _start_then(send, message):
    await send({"type": "http.response.start", "status": 200})
    await send(message)


async def test_an_error_after_the_first_byte_aborts_the_connection(start_site, caplog):
    async def fails(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        raise RuntimeError("midway")

    site = await start_site(ASGIResource(fails))
    await site.request_cut_short(get(b"/"))
    assert "failed after its response started" in caplog.text


async def test_returning_mid_response_aborts_the_connection(start_site, caplog):
    async def quits(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})

    site = await start_site(ASGIResource(quits))
    await site.request_cut_short(get(b"/"))
    assert "returned before its response was complete" in caplog.text


async def test_pathsend_sends_a_file(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(200_000)
    path.write_bytes(data)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    response = await fetch(ASGIResource(app), b"/")
    assert bytes(response.body) == data and response.header(b"content-length") == b"200000"


async def test_websocket_upgrades_are_refused_without_calling_the_application():
    called = []

    async def app(scope, receive, send):
        called.append(scope)

    response = await fetch(ASGIResource(app), b"/", headers=[(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])
    assert response.code == 404 and not called


def test_put_child_raises():
    with pytest.raises(RuntimeError):
        ASGIResource(show_scope).putChild(b"x", Resource())


# -- lifespan --------------------------------------------------------------------------


def lifespan_app(events, fail_startup=False):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            if fail_startup:
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            scope["state"]["db"] = "connected"
            events.append("started")
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            events.append("stopped")
            await send({"type": "lifespan.shutdown.complete"})
            return
        events.append(("request", scope["state"]["db"]))
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def test_lifespan_runs_around_serving_and_its_state_reaches_requests():
    events = []
    resource = ASGIResource(lifespan_app(events))

    async def serve():
        events.append("serving")
        assert bytes((await fetch(resource, b"/")).body) == b"ok"

    await resource.run_with_lifespan(serve)
    assert events == ["started", "serving", ("request", "connected"), "stopped"]


async def test_a_failed_startup_raises_and_nothing_is_served():
    events = []
    resource = ASGIResource(lifespan_app(events, fail_startup=True))

    async def serve():
        events.append("serving")

    with pytest.raises(LifespanError, match="no database"):
        await resource.run_with_lifespan(serve)
    assert events == []


async def test_an_application_without_lifespan_is_served_anyway():
    async def http_only(scope, receive, send):
        assert scope["type"] == "http", "lifespan not supported"
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    served = []
    resource = ASGIResource(http_only)

    async def serve():
        served.append(bytes((await fetch(resource, b"/")).body))

    await resource.run_with_lifespan(serve)
    assert served == [b"ok"]


async def test_errors_of_serve_propagate_as_they_are():
    resource = ASGIResource(lifespan_app([]))

    async def serve():
        raise KeyError("from serve")

    with pytest.raises(KeyError):
        await resource.run_with_lifespan(serve)


async def test_behind_a_front_root_path_is_the_users_prefix(start_site, nursery, tmp_path):
    from tests.trioweb.distrib.personal import front_to_personal

    site, _ = await front_to_personal(start_site, nursery, tmp_path, root=mounted(show_scope))
    response = await site.request(b"POST /~alice/app/x?q=1 HTTP/1.1\r\nHost: example.org\r\n"
                                  b"Content-Length: 4\r\n\r\nbody")
    scope = json.loads(response.body)
    assert (scope["root_path"], scope["path"], scope["query_string"]) == ("/~alice/app", "/~alice/app/x", "q=1")
    assert scope["body"] == "body" and ["host", "example.org"] in scope["headers"]
    streamed = await site.request(get(b"/~alice/app/", host=b"example.org"))
    assert streamed.status == 200
