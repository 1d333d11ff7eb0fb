"""Forwarded and X-Forwarded-*: believed from trusted peers only, the client
found from the right, malformed values ignored one by one."""

from __future__ import annotations

import pytest

from trioweb.address import IPv4Address, IPv6Address, UNIXAddress
from trioweb.resource import Resource
from trioweb.server import Site, TrustedProxies
from trioweb.static import Data
from trioweb.testing import fetch
from trioweb.util import redirect_to_slash

PROXY = IPv4Address("TCP", "127.0.0.1", 40000)
STRANGER = IPv4Address("TCP", "203.0.113.9", 40000)


class Report(Resource):
    """What the request believes, as text; ``/dir`` redirects to ``/dir/``."""

    isLeaf = True

    def render_GET(self, request):
        if request.postpath == [b"dir"]:
            request.prepath, request.postpath = [b"dir"], []
            return redirect_to_slash(request)
        client = request.getClientAddress()
        return b"%s %s %s %s" % (
            getattr(client, "host", "-").encode(), b"secure" if request.isSecure() else b"plain",
            request.getRequestHostname(), request.prePathURL())


def site(spec: str = "127.0.0.1,::1,unix") -> Site:
    return Site(Report(), proxies=TrustedProxies(spec))


async def report(headers, *, client=PROXY, spec="127.0.0.1,::1,unix", target=b"/x", secure=False):
    response = await fetch(site(spec), target, headers=headers, client=client, secure=secure)
    return response.body.decode()


async def test_x_forwarded_from_a_trusted_proxy_sets_client_scheme_and_host():
    body = await report([(b"host", b"127.0.0.1:8080"), (b"x-forwarded-for", b"198.51.100.7"),
                         (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"www.example.com")])
    assert body == "198.51.100.7 secure www.example.com https://www.example.com/"


async def test_the_slash_redirect_follows_the_forwarded_scheme_and_port():
    response = await fetch(site(), b"/dir", client=PROXY, headers=[
        (b"host", b"example.com:8443"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"192.0.2.1")])
    assert response.code == 302
    assert response.header(b"location") == b"https://example.com:8443/dir/"


async def test_headers_from_an_untrusted_peer_are_ignored():
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https"),
                         (b"forwarded", b"for=198.51.100.8;proto=https")], client=STRANGER)
    assert body == "203.0.113.9 plain h http://h/"


async def test_a_client_cannot_pose_as_another_by_sending_its_own_x_forwarded_for():
    # The client wrote "1.2.3.4"; our proxy appended the address it saw.
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4, 198.51.100.7")])
    assert body.startswith("198.51.100.7 ")
    # Two proxies of ours in a row are skipped.
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4, 198.51.100.7, 10.0.0.2")],
                        spec="127.0.0.1, 10.0.0.0/8")
    assert body.startswith("198.51.100.7 ")


async def test_forwarded_rfc7239_with_quotes_ipv6_and_ports():
    body = await report([(b"host", b"h"),
                         (b"forwarded", b'for=1.2.3.4, for="[2001:db8::7]:4711";proto=https;host="a.example:444"')])
    assert body == "2001:db8::7 secure a.example https://a.example:444/"


async def test_forwarded_wins_over_x_forwarded_and_obfuscated_nodes_name_no_client():
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"9.9.9.9"), (b"forwarded", b"for=_hidden")])
    assert body.startswith("127.0.0.1 ")
    body = await report([(b"host", b"h"), (b"forwarded", b"for=unknown;proto=https")])
    assert body == "127.0.0.1 secure h https://h/"


@pytest.mark.parametrize("headers", [
    [(b"x-forwarded-for", b"not-an-ip")],
    [(b"x-forwarded-for", b"999.1.1.1")],
    [(b"x-forwarded-proto", b"gopher")],
    [(b"x-forwarded-host", b"evil.example/path")],
    [(b"x-forwarded-host", b"a b")],
    [(b"x-forwarded-port", b"99999")],
    [(b"x-forwarded-host", b"h2:99999")],
    [(b"forwarded", b'for="unterminated')],
    [(b"forwarded", b"=;;,,proto")],
])
async def test_malformed_values_are_ignored(headers):
    assert await report([(b"host", b"h"), *headers]) == "127.0.0.1 plain h http://h/"


async def test_x_forwarded_port_and_a_tls_proxy_without_port_in_host():
    body = await report([(b"host", b"h"), (b"x-forwarded-proto", b"https"), (b"x-forwarded-port", b"8443")])
    assert body == "127.0.0.1 secure h https://h:8443/"
    body = await report([(b"host", b"h"), (b"x-forwarded-proto", b"https")])
    assert body == "127.0.0.1 secure h https://h/"


async def test_unix_peers_ipv6_networks_and_star():
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"192.0.2.5")], client=UNIXAddress(None))
    assert body.startswith("192.0.2.5 ")
    body = await report([(b"host", b"h"), (b"x-forwarded-for", b"192.0.2.5")], client=UNIXAddress(None),
                        spec="127.0.0.1")
    assert body.startswith("- ")
    v6 = IPv6Address("TCP", "fd00::1", 1)
    assert (await report([(b"x-forwarded-for", b"192.0.2.5")], client=v6, spec="fd00::/8")).startswith("192.0.2.5")
    assert (await report([(b"x-forwarded-for", b"192.0.2.5")], client=STRANGER, spec="*")).startswith("192.0.2.5")


def test_a_bad_trusted_list_is_refused_naming_the_item():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        TrustedProxies("127.0.0.1, 10.0.0.300")


async def test_without_proxies_a_site_ignores_the_headers():
    response = await fetch(Site(Data(b"x", "text/plain")), b"/", headers=[(b"x-forwarded-proto", b"https")])
    assert response.code == 200
