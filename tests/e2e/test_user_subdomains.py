"""User subdomains: `trioweb --user --user-domain example.test`, with real accounts.

alice.example.test is served by alice's own personal server (running as her),
bob.example.test by the front from his public_html, and /~alice/ still works
on the same front. Host values that name no one are the same 404 as
/~nobody/; malformed ones are 400. Runs as root (accounts, uids).
"""

from __future__ import annotations

import http.client
import os
import socket

import pytest

from tests.support.hosting import get, hosted
from tests.support.procs import curl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

DOMAIN = "example.test"
USERS = {
    "alice": ("Alice,,,", "personal"),
    "bob": ("Bob,,,", "public_html"),
    "carol": ("Carol,,,", "nothing"),
    "mallory": ("Mallory,,,", "hostile"),
}


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, ("alice",), "--user-domain", DOMAIN, tag="sd") as hosting:
        yield hosting


def get_host(hosting, host: str, path: str = "/") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def raw(hosting, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", hosting.port), timeout=10) as client:
        client.sendall(request)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


def test_curl_with_alices_host_is_served_by_her_own_process(hosting):
    alice = hosting.account("alice")
    done = curl("-H", f"Host: {alice.pw_name}.{DOMAIN}", hosting.url("/whoami.rpy"))
    assert done.stdout == f"{alice.pw_uid} {alice.pw_name}".encode()
    status, _, body = get_host(hosting, f"{alice.pw_name}.{DOMAIN}")
    assert status == 200 and b"alice's personal site" in body


def test_the_port_in_host_is_ignored(hosting):
    alice = hosting.account("alice")
    status, _, body = get_host(hosting, f"{alice.pw_name}.{DOMAIN}:{hosting.port}", "/whoami.rpy")
    assert status == 200 and body == f"{alice.pw_uid} {alice.pw_name}".encode()


def test_tilde_paths_still_work_on_the_same_front(hosting):
    alice = hosting.names["alice"]
    assert get(hosting, f"/~{alice}/whoami.rpy")[0] == 200
    status, _, body = get_host(hosting, DOMAIN, f"/~{alice}/")
    assert status == 200 and b"alice's personal site" in body
    status, _, body = get_host(hosting, DOMAIN, "/")
    assert status == 200 and alice.encode() in body  # the index, on the domain itself


def test_bobs_host_serves_his_public_html_without_scripts(hosting):
    bob = f"{hosting.names['bob']}.{DOMAIN}"
    status, _, body = get_host(hosting, bob)
    assert status == 200 and b"bob's public_html" in body
    assert get_host(hosting, bob, "/notes.txt")[2] == b"plain notes"
    for hidden in ("/app.rpy", "/.secret", "/cgi-bin/hello.cgi"):
        status, _, body = get_host(hosting, bob, hidden)
        assert status == 404 and b"resource = None" not in body and b"CGI-RAN" not in body


def test_a_users_host_serves_only_that_user(hosting):
    """alice.example.test/~bob/ is a path on alice's site, never bob's."""
    status, _, body = get_host(hosting, f"{hosting.names['alice']}.{DOMAIN}", f"/~{hosting.names['bob']}/")
    assert status == 404 and b"bob's public_html" not in body


def test_a_cookie_set_on_a_users_host_is_for_that_host_at_the_root(hosting):
    status, headers, body = get_host(hosting, f"{hosting.names['alice']}.{DOMAIN}", "/session.rpy")
    assert status == 200 and body.startswith(hosting.names["alice"].encode())
    cookie = headers["Set-Cookie"]
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert "Domain" not in cookie


@pytest.mark.parametrize("host", [
    "nobody.{d}", "root.{d}", "www-data.{d}", "{carol}.{d}", "no-such-user.{d}", "{ALICE}.{d}",
    "x.{alice}.{d}", "{alice}.{d}.", ".{d}", "..{d}", "al%69ce.{d}",
])
def test_hosts_naming_no_user_are_the_same_404_as_tilde_nobody(hosting, host):
    alice = hosting.names["alice"]
    host = host.format(d=DOMAIN, alice=alice, ALICE=alice.upper(), carol=hosting.names["carol"])
    status, _, body = get_host(hosting, host)
    reference_status, _, reference = get(hosting, "/~nobody/")
    assert status == reference_status == 404
    assert body == reference


@pytest.mark.parametrize("host_lines", [
    b"Host: a b.example.test\r\n",
    b"Host: alice.example.test\r\nHost: bob.example.test\r\n",
    b"Host: alice\x00.example.test\r\n",
    b"Host: <h1>x</h1>.example.test\r\n",
    b"",
])
def test_malformed_host_headers_are_400(hosting, host_lines):
    answer = raw(hosting, b"GET / HTTP/1.1\r\n" + host_lines + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"<h1>x</h1>" not in answer


def test_the_fronts_socket_checks_apply_to_user_hosts(hosting):
    """mallory's socket answered by a process of another uid (root here): 502
    on her host as on /~mallory/, and nothing is sent to it."""
    mallory = hosting.account("mallory")
    path = hosting.home("mallory") / ".trioweb-pb"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    os.lchown(path, mallory.pw_uid, mallory.pw_gid)
    try:
        assert get_host(hosting, f"{mallory.pw_name}.{DOMAIN}")[0] == 502
        assert get(hosting, f"/~{mallory.pw_name}/")[0] == 502
        listener.settimeout(0.5)
        while True:
            try:
                accepted, _ = listener.accept()
            except TimeoutError:
                break
            with accepted:
                accepted.settimeout(1)
                assert accepted.recv(4096) == b""  # the front hung up without a byte
    finally:
        listener.close()
        path.unlink()


def test_without_user_status_the_status_name_is_the_users_own_hidden_dotfile(hosting):
    assert get(hosting, f"/~{hosting.names['alice']}/.status")[0] == 404  # her server hides dotfiles
