"""The resource model and the request API, served over real sockets."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from tests.support.rawhttp import get
from trioweb.address import IPv6Address
from trioweb.http import ConnectionLost
from trioweb.resource import (
    NOT_DONE_YET,
    ErrorPage,
    ForbiddenResource,
    NoResource,
    Resource,
    getChildForRequest,
)
from trioweb.static import Data


class Leaf(Resource):
    isLeaf = True

    def __init__(self, render):
        super().__init__()
        self._render = render

    def render_GET(self, request):
        return self._render(request)


def test_putchild_wants_bytes():
    with pytest.raises(TypeError, match="must be bytes"):
        Resource().putChild("str", Resource())


async def test_tree_traversal_moves_segments_to_prepath(start_site):
    seen = {}

    def record(request):
        seen["prepath"], seen["postpath"] = list(request.prepath), list(request.postpath)
        return b"ok"

    root = Resource()
    branch = Resource()
    root.putChild(b"a", branch)
    branch.putChild(b"b", Leaf(record))
    site = await start_site(root)
    response = await site.request(get(b"/a/b/c%20d/e?x=1"))
    assert response.status == 200
    assert seen == {"prepath": [b"a", b"b"], "postpath": [b"c d", b"e"]}
    assert (await site.request(get(b"/a/zzz"))).status == 404


def test_get_child_for_request_stops_at_a_leaf():
    class FakeRequest:
        prepath: list = []
        postpath = [b"x", b"y"]

    root = Resource()
    leaf = Leaf(lambda r: b"")
    root.putChild(b"x", leaf)
    request = FakeRequest()
    request.prepath = []
    assert getChildForRequest(root, request) is leaf
    assert request.prepath == [b"x"] and request.postpath == [b"y"]


class GetOnly(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"x-kind", b"get-only")
        return b"body!"


async def test_head_keeps_get_headers_and_length_without_body(start_site):
    site = await start_site(GetOnly())
    conn = await site.connect()
    await conn.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + get())
    head = await conn.read_response(head_request=True)
    assert head.status == 200
    assert head.header(b"x-kind") == b"get-only"
    assert head.header(b"content-length") == b"5"
    following = await conn.read_response()
    assert following.body == b"body!"  # no stray body bytes between the two


async def test_known_method_missing_is_405_with_allow(start_site):
    site = await start_site(GetOnly())
    response = await site.request(b"POST /<script> HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert response.status == 405
    assert response.header(b"allow") == b"GET, HEAD"
    assert b"<script>" not in response.body and b"&lt;script&gt;" in response.body


async def test_method_known_to_the_parser_but_not_to_us_is_501(start_site):
    site = await start_site(GetOnly())
    response = await site.request(b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == 501


async def test_options_star(start_site):
    site = await start_site(GetOnly())
    response = await site.request(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == 200 and response.header(b"content-length") == b"0"
    response = await site.request(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == 405 and response.header(b"allow") == b"OPTIONS"


async def test_error_pages_escape_what_they_show(start_site):
    root = Resource()
    root.putChild(b"e", ErrorPage(418, "<b>brief</b>", "<script>x</script>"))
    root.putChild(b"f", ForbiddenResource())
    root.putChild(b"n", NoResource("<i>gone</i>"))
    site = await start_site(root)
    teapot = await site.request(get(b"/e/any/child"))
    assert teapot.status == 418
    assert b"<script>" not in teapot.body and b"&lt;script&gt;" in teapot.body
    assert (await site.request(get(b"/f"))).status == 403
    gone = await site.request(get(b"/n"))
    assert gone.status == 404 and b"&lt;i&gt;gone" in gone.body


def boom(request):
    raise RuntimeError("secret detail")


async def test_exception_is_500_without_details(start_site):
    site = await start_site(Leaf(boom))
    response = await site.request(get())
    assert response.status == 500
    assert b"Processing Failed" in response.body
    assert b"secret detail" not in response.body


async def test_display_tracebacks_shows_escaped_details(start_site):
    def boom_markup(request):
        raise RuntimeError("<b>secret</b>")

    site = await start_site(Leaf(boom_markup), displayTracebacks=True)
    response = await site.request(get())
    assert response.status == 500
    assert b"&lt;b&gt;secret&lt;/b&gt;" in response.body and b"Traceback" in response.body


async def test_render_returning_non_bytes_is_500(start_site):
    site = await start_site(Leaf(lambda request: "a str"))
    assert (await site.request(get())).status == 500


async def test_header_injection_is_refused(start_site):
    def inject(request):
        request.setHeader(b"x-a", b"v\r\nSet-Cookie: x=1")
        return b"never"

    site = await start_site(Leaf(inject))
    response = await site.request(get())
    assert response.status == 500
    assert response.header(b"set-cookie") is None


async def test_redirect_is_302_with_location(start_site):
    def go(request):
        request.redirect(b"/elsewhere?a=1")
        return b""

    site = await start_site(Leaf(go))
    response = await site.request(get())
    assert response.status == 302 and response.header(b"location") == b"/elsewhere?a=1"


async def test_redirect_with_crlf_is_refused(start_site):
    def go(request):
        request.redirect(b"/x\r\nSet-Cookie: evil=1")
        return b""

    site = await start_site(Leaf(go))
    response = await site.request(get())
    assert response.status == 500 and response.header(b"set-cookie") is None


async def test_status_code_and_message(start_site):
    def teapot(request):
        request.setResponseCode(418, b"I am a teapot")
        return b"short and stout"

    site = await start_site(Leaf(teapot))
    response = await site.request(get())
    assert (response.status, response.reason) == (418, b"I am a teapot")


async def test_cookies_both_ways(start_site):
    def cookies(request):
        request.addCookie(b"session", b"abc", path=b"/", httpOnly=True, sameSite="lax")
        return request.getCookie(b"theme") or b"none"

    site = await start_site(Leaf(cookies))
    response = await site.request(get(extra=b"Cookie: theme=dark; other=1\r\n"))
    assert response.body == b"dark"
    assert response.header(b"set-cookie") == b"session=abc; Path=/; HttpOnly; SameSite=Lax"


async def test_cookie_with_semicolon_is_refused(start_site):
    def bad(request):
        request.addCookie(b"a", b"b; Domain=evil")
        return b""

    site = await start_site(Leaf(bad))
    assert (await site.request(get())).status == 500


async def test_args_from_query_urlencoded_and_multipart(start_site):
    class Form(Resource):
        isLeaf = True

        def render_POST(self, request):
            return repr(sorted(request.args.items())).encode()

    site = await start_site(Form())
    body = b"b=2&c=%20x"
    response = await site.request(
        b"POST /?a=1&a=2 HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert response.body == repr([(b"a", [b"1", b"2"]), (b"b", [b"2"]), (b"c", [b" x"])]).encode()
    multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
                 b"Content-Type: text/plain\r\n\r\nfile\r\ndata\r\n--XyZ\r\n"
                 b"Content-Disposition: form-data; name=\"g\"\r\n\r\nvalue\r\n--XyZ--\r\n")
    response = await site.request(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        b"Content-Length: %d\r\n\r\n" % len(multipart) + multipart)
    assert response.body == repr([(b"f", [b"file\r\ndata"]), (b"g", [b"value"])]).encode()
    broken = multipart[:-8]
    response = await site.request(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
        b"Content-Length: %d\r\n\r\n" % len(broken) + broken)
    assert response.status == 400


async def test_urls_and_addresses(start_site):
    def where(request):
        return b" ".join([request.prePathURL(), bytes(request.URLPath().child(b"c d")),
                          request.getClientAddress().host.encode(), b"%r" % request.isSecure()])

    root = Resource()
    root.putChild(b"a", Leaf(where))
    site = await start_site(root)
    response = await site.request(get(b"/a/b", host=b"example.com:8080"))
    assert response.body == b"http://example.com:8080/a http://example.com:8080/a/c%20d 127.0.0.1 False"
    response = await site.request(get(b"/a", host=b"example.com:80"))
    assert response.body.startswith(b"http://example.com/a ")


async def test_ipv6_client_address(nursery):
    from trioweb.server import Site, serve

    def where(request):
        client = request.getClientAddress()
        return b"%s %s" % (type(client).__name__.encode(), client.host.encode())

    try:
        listeners = await trio.open_tcp_listeners(0, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    await nursery.start(serve, Site(Leaf(where)), listeners)
    port = listeners[0].socket.getsockname()[1]
    stream = await trio.open_tcp_stream("::1", port)
    from tests.support.rawhttp import RawConnection

    conn = RawConnection(stream)
    await conn.send(get(host=b"[::1]:%d" % port))
    response = await conn.read_response()
    assert response.body == b"IPv6Address ::1"
    assert IPv6Address("TCP", "::1", 1).host == "::1"


async def test_conditional_get_helpers(start_site):
    def cached(request):
        from trioweb.server import CACHED

        if request.setLastModified(1_000_000_000) is CACHED or request.setETag(b"v1") is CACHED:
            return b""
        return b"fresh"

    site = await start_site(Leaf(cached))
    fresh = await site.request(get())
    assert fresh.body == b"fresh" and fresh.header(b"etag") == b'"v1"'
    since = fresh.header(b"last-modified")
    assert (await site.request(get(extra=b"If-Modified-Since: " + since + b"\r\n"))).status == 304
    assert (await site.request(get(extra=b'If-None-Match: "v1"\r\n'))).status == 304
    assert (await site.request(get(extra=b'If-None-Match: "v2"\r\n'))).status == 200
    assert (await site.request(get(extra=b"If-Modified-Since: garbage\r\n"))).status == 200


async def test_data_resource(start_site):
    site = await start_site(Data(b"<data/>", "application/xml"))
    response = await site.request(get())
    assert response.header(b"content-type") == b"application/xml" and response.body == b"<data/>"


class Delayed(Resource):
    isLeaf = True

    def render_GET(self, request):
        async def later():
            await trio.sleep(0.05)
            request.write(b"later")
            request.finish()

        request.start_soon(later)
        return NOT_DONE_YET


async def test_not_done_yet_finishes_later_with_keepalive(start_site):
    site = await start_site(Delayed())
    conn = await site.connect()
    await conn.send(get() + get())
    assert [(await conn.read_response()).body for _ in range(2)] == [b"later", b"later"]


async def test_async_render(start_site):
    class Async(Resource):
        isLeaf = True

        async def render_GET(self, request):
            await trio.sleep(0.01)
            request.setHeader(b"x-async", b"yes")
            return b"awaited"

    site = await start_site(Async())
    response = await site.request(get())
    assert response.body == b"awaited" and response.header(b"x-async") == b"yes"
    assert response.header(b"content-length") == b"7"


async def test_async_render_failing_before_output_is_500(start_site):
    class Fails(Resource):
        isLeaf = True

        async def render_GET(self, request):
            await trio.lowlevel.checkpoint()
            raise ValueError("nope")

    site = await start_site(Fails())
    assert (await site.request(get())).status == 500


async def test_failure_after_output_started_aborts_the_connection(start_site):
    class HalfThenFail(Resource):
        isLeaf = True

        async def render_GET(self, request):
            request.write(b"half")
            await request.drain()
            raise ValueError("mid-body")

    site = await start_site(HalfThenFail())
    conn = await site.connect()
    await conn.send(get())
    with pytest.raises(EOFError):
        await conn.read_response()  # the chunked body never ends: not passed off as complete


class NotWanted(Resource):
    """The guide's "Knowing when we're not wanted", the trio way."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.notified = trio.Event()
        self.cancelled = trio.Event()

    def render_GET(self, request):
        async def watch():
            try:
                await request.notifyFinish()
            except ConnectionLost:
                self.notified.set()

        async def slow():
            try:
                await trio.sleep(30)
            except trio.Cancelled:
                self.cancelled.set()
                raise

        request.start_soon(watch)
        request.start_soon(slow)
        return NOT_DONE_YET


async def test_client_disconnect_fails_notify_finish_and_cancels_the_nursery(start_site):
    root = NotWanted()
    site = await start_site(root)
    conn = await site.connect()
    await conn.send(get())
    await trio.sleep(0.1)
    await conn.aclose()
    with trio.fail_after(5):
        await root.notified.wait()
        await root.cancelled.wait()
    # the server keeps serving
    other = await start_site(GetOnly())
    assert (await other.request(get())).status == 200
    second = await site.connect()
    await second.send(get())
    await trio.sleep(0.1)
    assert not second.eof


async def test_a_failing_task_cancels_the_render_and_its_siblings_before_the_500(start_site):
    """The render and the request's tasks share one fate, as in a nursery of the
    request's own: a task that fails cancels the render and the others, and
    the 500 goes out only once they have all returned."""
    cancelled: list[str] = []

    class FailsInATask(Resource):
        isLeaf = True

        async def render_GET(self, request):
            async def sibling():
                try:
                    await trio.sleep_forever()
                finally:
                    cancelled.append("sibling")

            async def fails():
                await trio.sleep(0.01)
                raise ValueError("task failed")

            request.start_soon(sibling)
            request.start_soon(fails)
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append("render")

    site = await start_site(FailsInATask())
    conn = await site.connect()
    with trio.fail_after(5):
        await conn.send(get())
        first = await conn.read_response()
        assert first.status == 500 and sorted(cancelled) == ["render", "sibling"]
        await conn.send(get())
        assert (await conn.read_response()).status == 500  # the connection goes on
    assert sorted(cancelled) == ["render", "render", "sibling", "sibling"]


async def test_notify_finish_completes_normally(start_site):
    finished = trio.Event()

    class Watched(Resource):
        isLeaf = True

        def render_GET(self, request):
            async def watch():
                await request.notifyFinish()
                finished.set()

            request.start_soon(watch)
            return b"done"

    site = await start_site(Watched())
    assert (await site.request(get())).body == b"done"
    with trio.fail_after(2):
        await finished.wait()


async def test_write_after_finish_is_an_error(start_site):
    errors = []

    def twice(request):
        request.write(b"x")
        request.finish()
        try:
            request.write(b"y")
        except RuntimeError as exc:
            errors.append(exc)
        return NOT_DONE_YET

    site = await start_site(Leaf(twice))
    assert (await site.request(get())).body == b"x"
    assert errors
