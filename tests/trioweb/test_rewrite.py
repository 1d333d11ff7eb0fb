"""rewrite.RewriterResource with tildeToUsers and alias, over real sockets."""

from __future__ import annotations

from tests.support.rawhttp import get
from trioweb.resource import Resource
from trioweb.rewrite import RewriterResource, alias, tildeToUsers


class Where(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"%s prepath=%r postpath=%r" % (request.path, request.prepath, request.postpath)


def tree():
    root = Resource()
    users = Resource()
    root.putChild(b"users", users)
    users.putChild(b"joe", Where())
    root.putChild(b"docs", Where())
    return root


async def test_tilde_reaches_users(start_site):
    site = await start_site(RewriterResource(tree(), tildeToUsers))
    tilde = await site.request(get(b"/~joe/a/b"))
    assert tilde.status == 200
    assert tilde.body == b"/users/joe/a/b prepath=[b'users', b'joe'] postpath=[b'a', b'b']"
    plain = await site.request(get(b"/users/joe/a/b"))
    assert plain.body == tilde.body
    assert (await site.request(get(b"/~nobody/"))).status == 404


async def test_alias(start_site):
    site = await start_site(RewriterResource(tree(), alias(b"/manual", b"/docs")))
    response = await site.request(get(b"/manual/x"))
    assert response.status == 200 and response.body.startswith(b"/docs/x ")
