"""trioweb.testing: resources rendered through the real Site and Request, in memory."""

from __future__ import annotations

import trio

from trioweb.http import ConnectionLost
from trioweb.resource import NOT_DONE_YET, Resource
from trioweb.server import Site
from trioweb.static import Data
from trioweb.testing import MemoryChannel, fetch, request_head


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"x-path", b"/".join(request.postpath))
        return request.content.read()


class Later(Resource):
    isLeaf = True

    def render_GET(self, request):
        async def finish_later():
            await trio.sleep(0.01)
            request.write(b"later")
            request.finish()

        request.start_soon(finish_later)
        return NOT_DONE_YET


async def test_a_plain_render_and_its_headers():
    response = await fetch(Data(b"hello", "text/plain"), b"/")
    assert (response.code, response.phrase, bytes(response.body)) == (200, b"OK", b"hello")
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"content-length") == b"5" and response.complete


async def test_a_body_reaches_the_resource():
    root = Resource()
    root.putChild(b"echo", Echo())
    response = await fetch(root, b"/echo/a/b", method=b"POST", body=b"payload")
    assert bytes(response.body) == b"payload" and response.header(b"x-path") == b"a/b"


async def test_the_site_s_error_pages_and_limits_apply():
    root = Resource()
    root.putChild(b"echo", Echo())
    assert (await fetch(root, b"/missing")).code == 404
    not_allowed = await fetch(root, b"/echo")
    assert not_allowed.code == 405 and not_allowed.header(b"allow") == b"POST"
    site = Site(root)
    site.limits = site.limits.__class__(max_body_size=4)
    assert (await fetch(site, b"/echo", method=b"POST", body=b"too long")).code == 413


async def test_a_deferred_response():
    response = await fetch(Later(), b"/")
    assert bytes(response.body) == b"later" and response.complete


async def test_head_gets_no_body():
    response = await fetch(Data(b"hello", "text/plain"), b"/", method=b"HEAD")
    assert response.body == b"" and response.header(b"content-length") == b"5"


async def test_a_client_that_goes_away_is_seen_by_notify_finish():
    outcome = []

    class Waiting(Resource):
        isLeaf = True

        async def render_GET(self, request):
            request.write(b"partial")
            await request.drain()
            try:
                await request.notifyFinish()
            except ConnectionLost:
                outcome.append("lost")
                raise

    site = Site(Waiting())
    head = request_head(b"GET", b"/", [], b"")
    channel = MemoryChannel(head)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.process, site.requestFactory(site, channel, head))
        await trio.sleep(0.1)  # past the point where the disconnect watcher joins
        channel.disconnect()
    assert outcome == ["lost"]
    assert channel.response is not None and bytes(channel.response.body) == b"partial"
    assert not channel.response.complete


async def test_a_request_the_parser_refuses_is_an_error():
    try:
        await fetch(Resource(), b"/", headers=[(b"Host", b"two words")])
    except ValueError as exc:
        assert "400" in str(exc)
    else:
        raise AssertionError("an invalid Host was accepted")
