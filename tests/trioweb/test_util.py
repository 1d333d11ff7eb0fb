"""util: redirectTo, Redirect and redirect_to_slash, in memory (trioweb.testing)."""

from __future__ import annotations

from trioweb.resource import Resource
from trioweb.testing import fetch
from trioweb.util import Redirect, redirect_to_slash


class Directory(Resource):
    isLeaf = True

    def render_GET(self, request):
        return redirect_to_slash(request)


async def test_redirect_is_a_302_with_an_escaped_page():
    response = await fetch(Redirect(b'/next?a=1&b="<x>"'), b"/anything/below")
    assert response.code == 302 and response.header(b"location") == b'/next?a=1&b="<x>"'
    assert response.header(b"content-type") == b"text/html; charset=utf-8"
    assert b'href="/next?a=1&amp;b=&quot;&lt;x&gt;&quot;"' in response.body and b"<x>" not in response.body


async def test_the_slash_redirect_is_absolute_and_keeps_the_query():
    root = Resource()
    root.putChild(b"docs", Directory())
    response = await fetch(root, b"/docs?page=2", headers=[(b"Host", b"example.com:8080")])
    assert response.header(b"location") == b"http://example.com:8080/docs/?page=2"
    secure = await fetch(root, b"/docs", headers=[(b"Host", b"example.com")], secure=True)
    assert secure.header(b"location") == b"https://example.com/docs/"
