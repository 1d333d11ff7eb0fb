"""The proxy examples, run as real processes and reached with curl: the
fronts are configuration files under examples/config (run by ``trioweb
--config``), the upstreams come from examples/proxy."""

from __future__ import annotations

import sys

from tests.support.procs import ROOT, Process, curl, free_port, trioweb, trioweb_command

EXAMPLES = ROOT / "examples" / "proxy"
CONFIGS = ROOT / "examples" / "config"


def front(config: str, port: int, **env: str) -> Process:
    """``trioweb --config examples/config/CONFIG`` on ``port``, with ``env`` for the file."""
    return trioweb("--config", str(CONFIGS / config), port=port, env=env)


def inner_trioweb(port: int, path: str = "htdocs") -> Process:
    return Process([trioweb_command(), "--path", str(EXAMPLES / path), "--listen",
                    f"tcp:{port}:interface=127.0.0.1"], port=port)


def test_guide_reverse_proxy_serves_a_local_trioweb():
    inner, port = free_port(), free_port()
    with inner_trioweb(inner), \
         front("reverse_proxy.py", port, UPSTREAM=f"127.0.0.1:{inner}"):
        page = curl("-i", f"http://127.0.0.1:{port}/docs/")
        assert b"200 OK" in page.stdout and b"The inner documents." in page.stdout
        # The inner server sees the proxy's Host (127.0.0.1:inner), as Twisted's proxy sends it.
        assert curl(f"http://127.0.0.1:{port}/where.rpy").stdout == \
            b"http 127.0.0.1 http://127.0.0.1:%d/where.rpy\n" % inner
        assert b"404" in curl("-i", f"http://127.0.0.1:{port}/missing").stdout


def test_guide_forward_proxy_forwards_allowed_addresses_only():
    inner, port = free_port(), free_port()
    with inner_trioweb(inner), \
         front("forward_proxy.py", port, PROXY_ALLOW=f"127.0.0.1:{inner}"):
        proxy = f"http://127.0.0.1:{port}"
        page = curl("-x", proxy, f"http://127.0.0.1:{inner}/docs/")
        assert page.stdout == b"<html><body>The inner documents.</body></html>\n"
        # Not on the allowlist: refused, never fetched.
        assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxy,
                    f"http://localhost:{inner}/docs/").stdout == b"403"
        assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxy,
                    f"http://127.0.0.1:{free_port()}/").stdout == b"403"
        # Not a proxy request at all: the proxy has no pages of its own.
        assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"{proxy}/docs/").stdout == b"400"
        # No tunnels.
        tunnel = curl("-s", "-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", proxy,
                      f"http://127.0.0.1:{inner}/docs/")
        assert tunnel.stdout == b"405", tunnel


def test_guide_forward_proxy_makes_tunnels_to_allowed_ports_when_told():
    inner, port = free_port(), free_port()
    with inner_trioweb(inner), \
         front("forward_proxy.py", port, PROXY_ALLOW=f"127.0.0.1:{inner}", PROXY_CONNECT_PORTS=str(inner)):
        proxy = f"http://127.0.0.1:{port}"
        # curl -p: CONNECT, then its own HTTP request through the tunnel.
        page = curl("-s", "-w", "\n%{http_connect}", "-p", "-x", proxy, f"http://127.0.0.1:{inner}/docs/")
        assert page.stdout == b"<html><body>The inner documents.</body></html>\n\n200"
        refused = curl("-s", "-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", proxy,
                       f"http://127.0.0.1:{free_port()}/")
        assert refused.stdout == b"403"


def test_forward_proxy_refuses_a_loop_through_itself():
    port = free_port()
    with front("forward_proxy.py", port, PROXY_ALLOW=f"127.0.0.1:{port}"):
        code = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", f"http://127.0.0.1:{port}",
                    f"http://127.0.0.1:{port}/")
        assert code.stdout == b"508"


def test_guide_vhost_monster_pair_shows_the_public_host():
    inner, port = free_port(), free_port()
    with inner_trioweb(inner), \
         front("vhost_monster_front.py", port, PUBLIC_ADDRESS=f"www.example.com:{port}", INNER_PORT=str(inner)):
        public = f"www.example.com:{port}"
        where = curl("-H", f"Host: {public}", f"http://127.0.0.1:{port}/where.rpy")
        assert where.stdout == f"http www.example.com http://{public}/where.rpy\n".encode()
        # A directory without its slash: the redirect names the public address.
        redirect = curl("-i", "-H", f"Host: {public}", f"http://127.0.0.1:{port}/docs")
        assert f"Location: http://{public}/docs/".encode() in redirect.stdout, redirect.stdout
        assert b"The inner documents." in curl("-H", f"Host: {public}", f"http://127.0.0.1:{port}/docs/").stdout
        # Another name is not in the front's map.
        assert b"404" in curl("-i", "-H", "Host: other.example", f"http://127.0.0.1:{port}/where.rpy").stdout


def test_tutorial_splitting_with_reverse_proxy_bannerfish_behind_the_main_site():
    banner, port = free_port(), free_port()
    with Process([sys.executable, str(EXAMPLES / "bannerfish.py"), str(banner)], port=banner) as fish, \
         front("splitting.py", port, BANNERFISH_PORT=str(banner)):
        assert b'<iframe src="foo/">' in curl(f"http://127.0.0.1:{port}/").stdout
        banners = [curl(f"http://127.0.0.1:{port}/foo/").stdout for _ in range(4)]
        assert banners[0] == (b'<p class="banner" data-pid="%d" data-path="/foo/">Bannerfish swims standalone</p>'
                              % fish.pid)
        assert banners[1] != banners[0] and banners[3] == banners[0]
        deeper = curl(f"http://127.0.0.1:{port}/foo/a%20b?x=1").stdout
        assert b'data-path="/foo/a%20b"' in deeper


def test_a_reverse_proxy_in_a_cached_rpy_under_path(tmp_path):
    inner, port = free_port(), free_port()
    site = tmp_path / "site"
    site.mkdir()
    (site / "app.rpy").write_text(
        "from trioweb.proxy import ReverseProxyResource\n"
        "cache()\n"
        f"resource = ReverseProxyResource('127.0.0.1', {inner}, b'/docs')\n")
    with inner_trioweb(inner), \
         Process([trioweb_command(), "--path", str(site), "--listen", f"tcp:{port}:interface=127.0.0.1"], port=port):
        for _ in range(2):
            assert curl(f"http://127.0.0.1:{port}/app.rpy/").stdout == b"<html><body>The inner documents.</body></html>\n"
