"""Every configuration file under examples/config, run by ``trioweb --config`` (or ``-y``)
and fetched with curl, as the guide's "Advanced Configuration" and the
tutorial's slides describe them.

The examples that serve users' sites need a real account with a
``public_html`` (and one runs a personal server as that account): those
tests run as root, creating the account, and are skipped otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.hosting import accounts
from tests.support.procs import ROOT, Process, curl, free_port, trioweb, trioweb_command

EXAMPLES = ROOT / "examples" / "config"
HTDOCS = ROOT / "examples" / "htdocs"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a user account")


def serve(name: str, *args: str, **kwargs) -> tuple[Process, str]:
    port = free_port()
    return trioweb("--config", str(EXAMPLES / name), *args, port=port, **kwargs), f"http://127.0.0.1:{port}"


def get(url: str, *args: str) -> tuple[int, bytes]:
    """(status, body) of a GET with curl."""
    out = curl("-w", "\n%{http_code}", *args, url).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def test_adding_children_doc_and_cgi_bin():
    package = sorted(p for p in os.listdir("/usr/share/doc") if os.path.isdir(f"/usr/share/doc/{p}"))[0]
    process, base = serve("doc_child.py")
    with process:
        assert get(f"{base}/") == (200, (HTDOCS / "index.html").read_bytes())
        status, listing = get(f"{base}/doc/")
        assert status == 200 and f'href="./{package}/"'.encode() in listing
        assert get(f"{base}/doc/{package}")[0] == 302  # a directory without its slash redirects
        assert get(f"{base}/cgi-bin/hello.cgi") == (200, b"Hello, world!\n")
        status, env = get(f"{base}/cgi-bin/env.cgi/extra?x=1")
        assert status == 200 and b"\nSCRIPT_NAME=/cgi-bin/env.cgi\n" in env and b"\nPATH_INFO=/extra\n" in env
        assert get(f"{base}/cgi-bin/")[0] == 404  # a CGI directory lists nothing
        assert get(f"{base}/cgi-bin/missing.cgi")[0] == 404


def test_modifying_file_resources_index_rpy():
    process, base = serve("index_rpy.py")
    with process:
        assert get(f"{base}/") == (200, b"<html><body>index.rpy rendered this page.</body></html>")
        assert get(f"{base}/foo.rpy") == (200, b"foo.rpy at foo.rpy")
        assert get(f"{base}/foo")[0] == 404  # no ignoreExt here


def test_modifying_file_resources_ignore_ext():
    process, base = serve("ignore_ext.py")
    with process:
        assert get(f"{base}/foo") == (200, b"foo.rpy at foo")
        assert get(f"{base}/foo.rpy") == (200, b"foo.rpy at foo.rpy")
        assert get(f"{base}/nothing")[0] == 404


def test_modifying_file_resources_content_types():
    process, base = serve("content_types.py")
    with process:
        assert b"Content-Type: font/woff2" in curl("-I", f"{base}/placeholder.woff2").stdout
        assert b"Content-Type: text/gemini" in curl("-I", f"{base}/hello.gmi").stdout


def test_virtual_hosts():
    process, base = serve("virtual_hosts.py")
    with process:
        assert get(f"{base}/", "-H", "Host: foo.com") == (200, b"<h1>foo.com</h1>\n")
        assert get(f"{base}/", "-H", "Host: BAR.com:8080") == (200, b"<h1>bar.com</h1>\n")
        assert get(f"{base}/hello", "-H", "Host: baz") == (200, b"baz says hello from baz")
        assert get(f"{base}/hello.rpy", "-H", "Host: baz") == (200, b"baz says hello from baz")
        assert get(f"{base}/", "-H", "Host: elsewhere.example") == (200, (HTDOCS / "index.html").read_bytes())
        assert get(f"{base}/hello", "-H", "Host: foo.com")[0] == 404  # foo.com runs no scripts


def test_vhosts_from_a_directory():
    process, base = serve("vhosts_from_directory.py")
    with process:
        assert get(f"{base}/", "-H", "Host: example.org")[1] == b"<h1>example.org, from a directory of vhosts</h1>\n"
        assert get(f"{base}/", "-H", "Host: example.net")[1] == b"<h1>example.net, from a directory of vhosts</h1>\n"
        assert get(f"{base}/", "-H", "Host: example.com")[1] == (HTDOCS / "index.html").read_bytes()


def test_ports_from_a_file(tmp_path):
    ports = [free_port(), free_port()]
    (tmp_path / "ports").write_text(f"{ports[0]}\n{ports[1]}\n")
    env = {"WEB_PORTS": str(tmp_path / "ports"), "WEB_INTERFACE": "127.0.0.1"}
    with Process([trioweb_command(), "-y", str(EXAMPLES / "ports_from_file.py")], port=ports[0], env=env) as server:
        for port in ports:
            assert get(f"http://127.0.0.1:{port}/") == (200, (HTDOCS / "index.html").read_bytes())
        assert server.stop() == 0


def test_ports_from_a_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run([trioweb_command(), "-y", str(EXAMPLES / "ports_from_file.py")],
                            env=dict(os.environ, WEB_PORTS=str(tmp_path / "none")), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert f"ports_from_file.py:23: FileNotFoundError: [Errno 2] No such file or directory: " \
           f"'{tmp_path / 'none'}'" in result.stderr


def test_uber_example(tmp_path):
    log = tmp_path / "access.log"
    upstream_port = free_port()
    upstream = trioweb("--path", str(ROOT / "examples" / "proxy" / "htdocs"), port=upstream_port)
    process, base = serve("uber.py", env={"WEB_ACCESS_LOG": str(log), "PROXIED_UPSTREAM": f"127.0.0.1:{upstream_port}"})
    with upstream, process as server:
        assert get(f"{base}/")[1] == (HTDOCS / "index.html").read_bytes()
        assert get(f"{base}/hello.rpy")[0] == 200  # the main site runs resource scripts
        assert get(f"{base}/doc/")[0] == 200
        assert get(f"{base}/cgi-bin/hello.cgi") == (200, b"Hello, world!\n")
        assert get(f"{base}/", "-H", "Host: foo.com")[1] == b"<h1>foo.com</h1>\n"
        assert get(f"{base}/cgi-bin/hello.cgi", "-H", "Host: foo.com")[0] == 404  # the main site's only
        # The proxied host: another server's pages, under this server's name.
        assert get(f"{base}/docs/", "-H", "Host: proxied.com") == (
            200, b"<html><body>The inner documents.</body></html>\n")
        assert get(f"{base}/where.rpy", "-H", "Host: proxied.com") == (
            200, b"http 127.0.0.1 http://127.0.0.1:%d/where.rpy\n" % upstream_port)
        assert get(f"{base}/docs/")[0] == 404  # not on the main site
        assert get(f"{base}/users/")[0] == 200
        assert get(f"{base}/~no-such-user-here/")[0] == 404
        # A body to a method the resource takes (a method it lacks is 405 before any size check):
        status = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "GET",
                                 "--data-binary", "@-", f"{base}/hello.rpy"], input=b"x" * (65 * 1024),
                                capture_output=True, timeout=20).stdout
        assert status == b"413"  # the Site's own limit (64 KiB), not the default 1 MiB
        assert server.stop() == 0
    assert '"GET /doc/ HTTP/1.1" 200' in log.read_text()


def test_wsgi_resource_in_a_tree():
    process, base = serve("wsgi_resource.py")
    with process:
        assert get(f"{base}/") == (200, b"<a href='app/'>the application</a>")
        assert get(f"{base}/app/a/b?q=1") == (200, b"/app | /a/b")
        assert get(f"{base}/app") == (200, b"/app | ")
        assert b"Content-Type: text/plain; charset=utf-8" in curl("-sI", f"{base}/app/x").stdout
        assert get(f"{base}/elsewhere")[0] == 404


def test_a_site_config_refuses_the_site_options_it_settles():
    for option in (["--logfile", "-"], ["--max-body-size", "10"], ["--display-tracebacks"]):
        result = subprocess.run([trioweb_command(), "-y", str(EXAMPLES / "uber.py"), *option],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert f"{option[0]}: {EXAMPLES / 'uber.py'} defines 'site'" in result.stderr


# -- the examples that serve users' sites: a real account ---------------------------


# What a GET of the account's public_html index gives (tests/support/hosting.py writes it).
PUBLIC_HTML_INDEX = (200, b"<h1>cfg's public_html</h1>")


@pytest.fixture(scope="module")
def hosting(install):
    """A real account, ``cfg`` (uid ≥ 1000, named twcfgcPID), whose ``public_html``
    has a page, a script, a CGI script and a dotfile (the shared hosting kit)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user account")
    with accounts(install, {"cfg": ("Config Tester,,,", "public_html")}, tag="c") as hosting:
        yield hosting


@pytest.fixture(scope="module")
def account(hosting):
    return hosting.account("cfg")


@needs_root
def test_user_directory_server(account):
    name = account.pw_name
    process, base = serve("user_directory.py")
    with process:
        status, index = get(f"{base}/")
        assert status == 200 and f'href="~{name}/"'.encode() in index and b"Config Tester" in index
        assert get(f"{base}/~{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/users/{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/~{name}/app.rpy")[0] == 404  # no script runs on the front, none is shown
        assert get(f"{base}/~{name}/.secret")[0] == 404
        assert get(f"{base}/~root/")[0] == 404


@needs_root
def test_user_subdomains_bonus(account):
    """``<user>.example.com``: her public_html at her own host name; the front's pages elsewhere."""
    name = account.pw_name
    process, base = serve("user_subdomains.py", env={"USER_DOMAIN": "example.test"})
    with process:
        assert get(f"{base}/", "-H", f"Host: {name}.example.test") == PUBLIC_HTML_INDEX
        assert get(f"{base}/", "-H", f"Host: {name}.example.test:8080") == PUBLIC_HTML_INDEX  # port ignored
        assert get(f"{base}/.secret", "-H", f"Host: {name}.example.test")[0] == 404
        assert get(f"{base}/", "-H", "Host: no-such-user-here.example.test")[0] == 404
        assert get(f"{base}/", "-H", f"Host: x.{name}.example.test")[0] == 404  # one label only
        assert get(f"{base}/", "-H", f"Host: {name.upper()}.example.test")[0] == 404
        assert get(f"{base}/", "-H", "Host: root.example.test")[0] == 404  # a system account
        status, index = get(f"{base}/", "-H", "Host: example.test")  # the front itself: the users' list
        assert status == 200 and f'href="~{name}/"'.encode() in index
        assert get(f"{base}/~{name}/", "-H", "Host: example.test") == PUBLIC_HTML_INDEX


@needs_root
def test_personal_config_behind_the_front(hosting, account):
    """``trioweb --personal --config``: the user's own configuration file, run as the user."""
    home = Path(account.pw_dir)
    shutil.copy(EXAMPLES / "personal.py", home / "personal.py")
    hosting.give_home("cfg")
    personal = hosting.start_personal("cfg", "--config", str(home / "personal.py"))
    try:
        process, base = serve("user_directory.py")
        with process:
            assert get(f"{base}/~{account.pw_name}/whoami") == (
                200, f"served by uid {account.pw_uid} for ~{account.pw_name}/whoami".encode())
            assert get(f"{base}/~{account.pw_name}/") == PUBLIC_HTML_INDEX
    finally:
        personal.kill()
        (home / ".trioweb-pb").unlink(missing_ok=True)


@needs_root
def test_registry_example_with_user_directory(account):
    name = account.pw_name
    process, base = serve("registry_users.py")
    with process:
        status, index = get(f"{base}/users/")
        assert status == 200 and f'href="{name}/"'.encode() in index  # mounted: Twisted's plain names
        assert get(f"{base}/users/{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/users/~{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/users.rpy/~{name}/") == PUBLIC_HTML_INDEX


@needs_root
def test_uber_example_users(account):
    name = account.pw_name
    process, base = serve("uber.py")
    with process:
        assert get(f"{base}/users/{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/~{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/~{name}/", "-H", "Host: foo.com")[0] == 404  # the users are the main site's


def front_page(uid: int) -> tuple[int, bytes]:
    """What twistedmatrix_com.py's ``/`` gives: its index.cgi, run as ``uid``."""
    return 200, f"<h1>twistedmatrix.com</h1>\n<p>index.cgi at /, run as uid {uid}</p>\n".encode()


@pytest.fixture(scope="module")
def examples_for_www_data(install):
    """(the trioweb command, the examples folder) www-data can use once the server
    drops to it: this checkout's, or, where www-data cannot read the checkout (a
    0700 clone), the accounts' install and a world-readable copy of examples/."""
    if install.trioweb == trioweb_command():
        yield install.trioweb, ROOT / "examples"
        return
    base = Path(tempfile.mkdtemp(prefix="trioweb-examples-"))
    try:
        shutil.copytree(ROOT / "examples", base / "examples", symlinks=True)
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        yield install.trioweb, base / "examples"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_twistedmatrix_com_configuration_runs_as_www_data(account, examples_for_www_data):
    name = account.pw_name
    www_data = pwd.getpwnam("www-data")
    command, examples = examples_for_www_data
    port = free_port()
    process = Process([command, "--config", str(examples / "config" / "twistedmatrix_com.py"),
                       "--listen", f"tcp:{port}:interface=127.0.0.1"], port=port)
    base = f"http://127.0.0.1:{port}"
    with process as server:
        status = Path(f"/proc/{server.pid}/status").read_text()
        assert f"\nUid:\t{www_data.pw_uid}\t{www_data.pw_uid}\t" in status
        assert f"\nGid:\t{www_data.pw_gid}\t{www_data.pw_gid}\t" in status
        # indexNames with index.cgi: the front page is the script's output, and the CGI runs as www-data.
        assert get(f"{base}/") == front_page(www_data.pw_uid)
        assert get(f"{base}/index.cgi")[1].startswith(b"<h1>twistedmatrix.com</h1>\n<p>index.cgi at /index.cgi,")
        assert get(f"{base}/about.html") == (200, b"<h1>About twistedmatrix.com</h1>\n")
        # The CGIDirectory mounts.
        assert get(f"{base}/mailman/listinfo") == (200, b"Mailing lists at 127.0.0.1: twisted-python, twisted-web\n")
        assert get(f"{base}/mailman/listinfo/twisted-python") == (
            200, b"About the twisted-python list (SCRIPT_NAME=/mailman/listinfo)\n")
        assert get(f"{base}/cgi-bin/hello.cgi") == (200, b"Hello, world!\n")
        assert get(f"{base}/mailman/")[0] == 404
        # UserDirectory under users, and tildeToUsers: Twisted's URLs.
        status_code, index = get(f"{base}/users/")
        assert status_code == 200 and f'href="{name}/"'.encode() in index
        assert get(f"{base}/users/{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/~{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/users/~{name}/") == PUBLIC_HTML_INDEX
        assert get(f"{base}/~{name}/.secret")[0] == 404
        assert get(f"{base}/users/{name}/cgi-bin/hello.cgi")[0] == 404  # a user's CGI never runs on the front
        assert get(f"{base}/~root/")[0] == 404
        assert get(f"{base}/doc/")[0] == 200


def test_twistedmatrix_com_uid_is_overridden_by_the_command_line():
    """Without root, --uid/--gid (which win over the file's) keep the process as it is."""
    process, base = serve("twistedmatrix_com.py", "--uid", str(os.getuid()), "--gid", str(os.getgid()))
    with process as server:
        assert f"\nUid:\t{os.getuid()}\t" in Path(f"/proc/{server.pid}/status").read_text()
        assert get(f"{base}/") == front_page(os.getuid())
        assert get(f"{base}/~no-such-user-here/")[0] == 404
