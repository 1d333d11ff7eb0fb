"""vhost.NameVirtualHost, rendered through the real Site in memory (trioweb.testing)."""

from __future__ import annotations

import pytest

from trioweb.resource import Resource
from trioweb.static import Data
from trioweb.testing import fetch
from trioweb.vhost import NameVirtualHost


class Where(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"%s %r" % (request.getRequestHostname(), request.postpath)


def hosts() -> NameVirtualHost:
    vhost = NameVirtualHost()
    site = Resource()
    site.putChild(b"page", Data(b"example page", "text/plain"))
    vhost.addHost(b"example.com", site)
    vhost.addHost("Other.Example", Where())
    return vhost


@pytest.mark.parametrize("host", [b"example.com", b"EXAMPLE.com", b"example.com:8080"])
async def test_a_host_reaches_its_tree_whatever_its_case_and_port(host):
    response = await fetch(hosts(), b"/page", headers=[(b"Host", host)])
    assert (response.code, bytes(response.body)) == (200, b"example page")


async def test_a_leaf_host_gets_the_whole_path():
    response = await fetch(hosts(), b"/a/b", headers=[(b"Host", b"other.example")])
    assert bytes(response.body) == b"other.example [b'a', b'b']"


async def test_an_unknown_host_is_a_404_that_escapes_the_name():
    response = await fetch(hosts(), b"/page", headers=[(b"Host", b"evil.example")])
    assert response.code == 404
    assert b"evil.example" in response.body and b"<script" not in response.body


async def test_the_default_answers_unknown_hosts_and_a_removed_host_is_gone():
    vhost = hosts()
    vhost.default = Data(b"default site", "text/plain")
    assert bytes((await fetch(vhost, b"/", headers=[(b"Host", b"unknown")])).body) == b"default site"
    vhost.removeHost(b"example.com")
    assert bytes((await fetch(vhost, b"/", headers=[(b"Host", b"example.com")])).body) == b"default site"
    with pytest.raises(KeyError):
        vhost.removeHost(b"example.com")
