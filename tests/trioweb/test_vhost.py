"""vhost.NameVirtualHost, rendered through the real Site in memory (trioweb.testing)."""

from __future__ import annotations

import pytest

from trioweb.resource import NoResource, Resource
from trioweb.static import Data
from trioweb.testing import fetch
from trioweb.vhost import NameVirtualHost, UserNameVirtualHost


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


# -- VHostMonsterResource ---------------------------------------------------------------------

class Where2(Resource):
    """Says how the request sees itself."""

    isLeaf = True

    def render_GET(self, request):
        host = request.getHost()
        return b"%s|%s|%s:%d|%s|%s|%s" % (
            b"secure" if request.isSecure() else b"plain", request.getRequestHostname(), host.host.encode(),
            host.port, request.prePathURL(), request.uri, b"/".join(request.postpath))


def monster_site() -> Resource:
    from trioweb.util import redirect_to_slash
    from trioweb.vhost import VHostMonsterResource

    class Directory(Resource):
        def render_GET(self, request):
            return redirect_to_slash(request)

    root = Resource()
    root.putChild(b"vhost.rpy", VHostMonsterResource())
    root.putChild(b"where", Where2())
    root.putChild(b"dir", Directory())
    return root


@pytest.mark.parametrize(("target", "expected"), [
    (b"/vhost.rpy/https/example.com/where/a/b?x=1",
     b"secure|example.com|example.com:443|https://example.com/where|/where/a/b?x=1|a/b"),
    (b"/vhost.rpy/http/example.com/where",
     b"plain|example.com|example.com:80|http://example.com/where|/where|"),
    (b"/vhost.rpy/https/Example.COM:8443/where/x",
     b"secure|example.com|example.com:8443|https://example.com:8443/where|/where/x|x"),
    (b"/vhost.rpy/http/example.com:443/where",
     b"plain|example.com|example.com:443|http://example.com:443/where|/where|"),
    (b"/vhost.rpy/http/[::1]:8080/where/a%2Fb",
     b"plain|[::1]|[::1]:8080|http://[::1]:8080/where|/where/a%2Fb|a/b"),
])
async def test_vhost_monster_makes_the_request_see_the_public_address(target, expected):
    response = await fetch(monster_site(), target)
    assert (response.code, bytes(response.body)) == (200, expected)


async def test_vhost_monster_redirects_name_the_public_address():
    response = await fetch(monster_site(), b"/vhost.rpy/https/www.example.com/dir?q=1")
    assert response.code in (301, 302)
    assert response.header(b"location") == b"https://www.example.com/dir/?q=1"


async def test_vhost_monster_over_tls_can_say_the_client_used_http():
    response = await fetch(monster_site(), b"/vhost.rpy/http/example.com/where", secure=True)
    assert bytes(response.body).startswith(b"plain|")


@pytest.mark.parametrize(("target", "code"), [
    (b"/vhost.rpy/ftp/example.com/where", 404),
    (b"/vhost.rpy", 404),
    (b"/vhost.rpy/http/exa%0d%0ample.com/where", 400),
    (b"/vhost.rpy/http/example.com:99999/where", 400),
    (b"/vhost.rpy/http/<b>x</b>/where", 400),
    (b"/vhost.rpy/http/example.com:/where", 400),
])
async def test_vhost_monster_refuses_what_is_not_a_scheme_and_a_host(target, code):
    response = await fetch(monster_site(), target)
    assert response.code == code
    assert b"<b>x" not in bytes(response.body)


# -- UserNameVirtualHost ----------------------------------------------------------------------

class Users:
    """What UserNameVirtualHost asks for a user's site (distrib.UserDirectory in a front)."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []

    def user_resource(self, name: bytes) -> Resource:
        self.asked.append(name)
        return Where() if name == b"alice" else NoResource()


def user_hosts(users: Users) -> UserNameVirtualHost:
    return UserNameVirtualHost(Data(b"the main site", "text/plain"), "Example.COM", users)


@pytest.mark.parametrize("host", [b"alice.example.com", b"alice.example.com:8080", b"alice.EXAMPLE.com"])
async def test_a_user_host_is_served_by_the_users_site_at_its_root_whatever_the_port(host):
    users = Users()
    response = await fetch(user_hosts(users), b"/a/b", headers=[(b"Host", host)])
    assert (response.code, bytes(response.body)) == (200, host.split(b":")[0] + b" [b'a', b'b']")
    assert users.asked == [b"alice"]


@pytest.mark.parametrize("host", [b"example.com", b"www.example.org", b"127.0.0.1", b"[::1]:80", b"example.com.evil",
                                  b"aliceexample.com"])
async def test_other_hosts_get_the_default(host):
    users = Users()
    response = await fetch(user_hosts(users), b"/", headers=[(b"Host", host)])
    assert bytes(response.body) == b"the main site" and users.asked == []


@pytest.mark.parametrize("host", [b"a.alice.example.com", b".example.com", b"..example.com", b"ALICE.example.com",
                                  b"Alice.example.com", b"alice.example.com.", b"example.com.", b"1alice.example.com",
                                  b"al%69ce.example.com", b"-alice.example.com"])
async def test_malformed_user_hosts_are_the_unknown_users_404_without_a_lookup(host):
    users = Users()
    response = await fetch(user_hosts(users), b"/", headers=[(b"Host", host)])
    unknown = await fetch(user_hosts(Users()), b"/", headers=[(b"Host", b"nobody.example.com")])
    assert response.code == 404 == unknown.code
    assert bytes(response.body) == bytes(unknown.body)
    assert users.asked == []


def test_an_empty_tail_is_refused():
    with pytest.raises(ValueError):
        UserNameVirtualHost(Data(b"x", "text/plain"), ".")
