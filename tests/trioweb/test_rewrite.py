"""rewrite.RewriterResource with tildeToUsers and alias, in memory (trioweb.testing)."""

from __future__ import annotations

from trioweb.resource import Resource
from trioweb.rewrite import RewriterResource, alias, tildeToUsers
from trioweb.testing import fetch


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


async def test_tilde_reaches_users():
    root = RewriterResource(tree(), tildeToUsers)
    tilde = await fetch(root, b"/~joe/a/b")
    assert tilde.code == 200
    assert bytes(tilde.body) == b"/users/joe/a/b prepath=[b'users', b'joe'] postpath=[b'a', b'b']"
    plain = await fetch(root, b"/users/joe/a/b")
    assert plain.body == tilde.body
    assert (await fetch(root, b"/~nobody/")).code == 404


async def test_alias():
    response = await fetch(RewriterResource(tree(), alias(b"/manual", b"/docs")), b"/manual/x")
    assert response.code == 200 and response.body.startswith(b"/docs/x ")
