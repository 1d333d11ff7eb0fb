"""The root ``trioweb --personal`` serves: dotfiles hidden whatever the tree (issue 11, item 8).

The end-to-end check, through a front with real accounts, is in
tests/e2e/test_hosting_lifecycle.py; here the wrapper over both kinds of root.
"""

from __future__ import annotations

import pytest

from trioweb.cli._distrib_options import HideDotfiles
from trioweb.resource import Resource
from trioweb.static import Data, File
from trioweb.testing import fetch


class Path(Resource):
    """A leaf root: it answers every path, with the path."""

    isLeaf = True

    def render_GET(self, request):
        return b"/".join(request.postpath)


@pytest.mark.parametrize("target", [b"/.htpasswd", b"/.env", b"/sub/.git/config", b"/%2eenv", b"/a/..hidden"])
async def test_any_segment_starting_with_a_dot_is_404(tmp_path, target):
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / ".htpasswd").write_text("secret")
    (tmp_path / "sub" / ".git" / "config").write_text("secret")
    for root in (File(str(tmp_path)), Path()):
        response = await fetch(HideDotfiles(root), target)
        assert response.code == 404 and b"secret" not in response.body


async def test_everything_else_reaches_the_root(tmp_path):
    (tmp_path / "index.html").write_text("home")
    (tmp_path / "a.b").write_text("dotted name")
    assert (await fetch(HideDotfiles(File(str(tmp_path))), b"/")).body == b"home"
    assert (await fetch(HideDotfiles(File(str(tmp_path))), b"/a.b")).body == b"dotted name"
    assert (await fetch(HideDotfiles(Path()), b"/x/y")).body == b"x/y"  # a leaf root gets the whole path
    root = Resource()
    root.putChild(b"data", Data(b"data", "text/plain"))
    assert (await fetch(HideDotfiles(root), b"/data")).body == b"data"
