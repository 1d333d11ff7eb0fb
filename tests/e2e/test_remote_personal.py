"""Personal servers on other machines: ``trioweb --user --users-map`` to
``trioweb --personal --listen ssl:...:caCerts=...``, on loopback.

Certificates from trustme: the front's client certificate (its own CA), the
personal servers' (another CA), and a stranger's CA for the wrong ones. One
front, its map naming users on two personal servers: ``good`` (which
accepts the front's certificate, pinned by ``caCerts``) and ``wary`` (whose
certificate is signed by the stranger, and which accepts only the
stranger's clients). No real accounts: the personal servers run as root,
as they might on their own machines.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.support.hosting import accounts, get
from tests.support.polling import wait_until_sync
from tests.support.procs import Process, free_port, trioweb, trioweb_command


@dataclass
class Pair:
    cert: Path
    key: Path
    sha256: str  # of the certificate's DER form


def issue(ca: trustme.CA, directory: Path, name: str, *identities: str) -> Pair:
    leaf = ca.issue_cert(*identities)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return Pair(cert, key, hashlib.sha256(der).hexdigest())


@dataclass
class World:
    base: Path
    front_cert: Pair
    server_ca: Path
    good: Pair  # the good personal server's certificate
    good_port: int
    wary: Pair
    wary_port: int
    users_map: Path
    front: Process
    front_port: int
    personal: dict[str, Process]

    def get(self, path: str, host: str | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.front_port, timeout=15)
        try:
            conn.request("GET", path, headers={"Host": host} if host else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def personal(site: Path, port: int, pair: Pair, accepts: Path, *extra: str) -> Process:
    site.mkdir(parents=True, exist_ok=True)
    (site / "index.html").write_text(f"<h1>remote site on {port}</h1>")
    (site / "big.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB: streamed, not in the call's answer
    return trioweb("--personal", "--path", str(site), "--logfile", "-", "--listen",
                   f"ssl:{port}:interface=127.0.0.1:privateKey={pair.key}:certKey={pair.cert}:caCerts={accepts}",
                   *extra, port=port, env={"HOME": str(site.parent)})


def map_text(world_good: Pair, good_port: int, wary: Pair, wary_port: int, dead_port: int) -> str:
    return (
        "# users on other machines\n"
        f"carol ssl:127.0.0.1:{good_port}:sha256={world_good.sha256}   # pinned\n"
        f"dave  ssl:127.0.0.1:{good_port}\n"  # checked against --backend-ca
        "\n"
        f"erin  ssl:127.0.0.1:{good_port}:sha256={'0' * 64}\n"  # a pin that does not match
        f"frank ssl:127.0.0.1:{wary_port}\n"  # a certificate from a CA the front does not trust
        f"henry ssl:127.0.0.1:{wary_port}:sha256={wary.sha256}\n"  # trusted, but it refuses the front
        f"gina  ssl:127.0.0.1:{dead_port}:sha256={world_good.sha256}\n"  # nothing listens there
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("remote")
    front_ca, server_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    front_cert = issue(front_ca, base, "front", "front.example.net")
    stranger_client = issue(stranger_ca, base, "stranger-client", "stranger.example.net")
    good = issue(server_ca, base, "good", "127.0.0.1")
    wary = issue(stranger_ca, base, "wary", "127.0.0.1")
    server_ca.cert_pem.write_to_path(str(base / "server-ca.pem"))
    good_port, wary_port, front_port = free_port(), free_port(), free_port()
    users_map = base / "users.map"
    users_map.write_text(map_text(good, good_port, wary, wary_port, free_port()))
    processes: dict[str, Process] = {}
    try:
        # The good one pins the front's own certificate (caCerts=that certificate).
        processes["good"] = personal(base / "good" / "public_html", good_port, good, front_cert.cert).__enter__()
        processes["wary"] = personal(base / "wary" / "public_html", wary_port, wary,
                                     stranger_client.cert).__enter__()
        front = trioweb("--user", "--users-map", str(users_map), "--backend-cert", str(front_cert.cert),
                        "--backend-key", str(front_cert.key), "--backend-ca", str(base / "server-ca.pem"),
                        "--backend-timeout", "5", "--status-path", "/.status", "--user-domain", "example.com",
                        "--logfile", "-", port=front_port).__enter__()
        yield World(base, front_cert, base / "server-ca.pem", good, good_port, wary, wary_port, users_map, front,
                    front_port, processes)
        front.kill()
    finally:
        for process in processes.values():
            process.kill()


def test_a_pinned_remote_personal_server_serves_its_user(world):
    status, body = world.get("/~carol/")
    assert status == 200 and f"remote site on {world.good_port}".encode() in body
    assert world.get("/users/carol/")[0] == 200
    assert world.get("/~carol")[0] == 302  # the same redirect as for a local user
    assert world.get("/~carol/big.bin") == (200, bytes(range(256)) * 8192)


def test_a_remote_user_has_her_own_host_name_too(world):
    status, body = world.get("/", host="carol.example.com")
    assert status == 200 and f"remote site on {world.good_port}".encode() in body


def test_a_server_certificate_signed_by_the_backend_ca_is_accepted(world):
    status, body = world.get("/~dave/")
    assert status == 200 and f"remote site on {world.good_port}".encode() in body


def test_a_certificate_that_does_not_match_the_pin_is_refused(world):
    assert world.get("/~erin/")[0] == 502
    wait_until_sync(lambda: f"not the pinned {'0' * 64}" in world.front.output())


def test_a_remote_server_that_is_not_running_is_a_502(world):
    assert world.get("/~gina/")[0] == 502
    wait_until_sync(lambda: "ConnectionRefusedError: connection to 127.0.0.1:" in world.front.output())


def test_a_server_certificate_from_an_unknown_ca_is_refused(world):
    assert world.get("/~frank/")[0] == 502
    wait_until_sync(lambda: "CERTIFICATE_VERIFY_FAILED" in world.front.output() or
               "certificate verify failed" in world.front.output())


def test_the_personal_server_refuses_a_front_it_does_not_know(world):
    assert world.get("/~henry/")[0] == 502  # the front trusts it (pinned), it does not trust the front
    wait_until_sync(lambda: "refused a TLS connection from 127.0.0.1" in world.personal["wary"].output())


def tls_client(world: World, pair: Pair | None) -> bytes:
    """What the good personal server sends a client presenting ``pair`` (or nothing) after the handshake."""
    context = ssl.create_default_context(cafile=str(world.server_ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    with socket.create_connection(("127.0.0.1", world.good_port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3: the server's verdict on the client comes after the handshake.
                return tls.recv(100) or b"refused: closed"
        except (ssl.SSLError, ConnectionResetError) as exc:
            return f"refused: {exc}".encode()


def test_a_missing_or_wrong_client_certificate_is_refused_by_the_personal_server(world, tmp_path):
    assert tls_client(world, None).startswith(b"refused")
    stranger = issue(trustme.CA(), tmp_path, "other", "front.example.net")
    assert tls_client(world, stranger).startswith(b"refused")
    # The front's own certificate gets the rpc hello.
    answer = tls_client(world, world.front_cert)
    assert answer and not answer.startswith(b"refused")
    wait_until_sync(lambda: "refused a TLS connection from 127.0.0.1" in world.personal["good"].output())


def test_the_status_page_has_rows_for_remote_backends(world):
    assert world.get("/~carol/")[0] == 200
    assert world.get("/~frank/")[0] == 502
    status, body = world.get("/.status")
    assert status == 200
    assert b"<td>carol</td><td>up</td>" in body
    assert b"<td>frank</td><td>down</td>" in body


def test_the_map_is_reloaded_on_sighup_and_a_bad_one_is_refused(world):
    original = world.users_map.read_text()
    assert world.get("/~judy/")[0] == 404
    try:
        world.users_map.write_text(original + f"judy ssl:127.0.0.1:{world.good_port}:sha256={world.good.sha256}\n")
        world.front.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: world.get("/~judy/")[0] == 200)
        world.users_map.write_text(original + "kim ssl:127.0.0.1\n")
        world.front.process.send_signal(signal.SIGHUP)
        wait_until_sync(lambda: "reload failed" in world.front.output())
        output = world.front.output()
        assert f"{world.users_map}, line 9" in output and "no port" in output
        assert world.get("/~judy/")[0] == 200  # the previous map is still served
    finally:
        world.users_map.write_text(original)
        world.front.process.send_signal(signal.SIGHUP)
    wait_until_sync(lambda: world.get("/~judy/")[0] == 404)


def run_trioweb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([trioweb_command(), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("line", "message"), [
    ("carol", "expected 'NAME ENDPOINT'"),
    ("carol ssl:127.0.0.1:7001 extra", "expected 'NAME ENDPOINT'"),
    ("Carol ssl:127.0.0.1:7001", "not a user name"),
    ("carol ssl:127.0.0.1:7001:sha256=abc", "64 hex digits"),
    ("carol unix:/tmp/sock", "a remote personal server is ssl:HOST:PORT"),
    ("carol http://127.0.0.1:7001", "unknown kind"),
])
def test_a_malformed_map_is_a_clear_error_at_start(tmp_path, line, message):
    users_map = tmp_path / "users.map"
    users_map.write_text(f"# comment\n\n{line}\n")
    result = run_trioweb("--user", "--users-map", str(users_map), "--listen", f"tcp:{free_port()}")
    assert result.returncode == 2
    assert f"{users_map}, line 3" in result.stderr and message in result.stderr


def test_plain_tcp_is_refused_without_the_flag(tmp_path):
    users_map = tmp_path / "users.map"
    users_map.write_text("ivan tcp:127.0.0.1:7002\n")
    result = run_trioweb("--user", "--users-map", str(users_map), "--listen", f"tcp:{free_port()}")
    assert result.returncode == 2 and "--insecure-tcp-backends" in result.stderr
    (tmp_path / "public_html").mkdir()
    result = run_trioweb("--personal", "--path", str(tmp_path / "public_html"), "--listen", "tcp:7002")
    assert result.returncode == 2 and "--insecure-tcp-backends" in result.stderr
    result = run_trioweb("--personal", "--path", str(tmp_path / "public_html"), "--listen",
                         "ssl:7002:privateKey=k.pem")
    assert result.returncode == 2 and "caCerts=FILE" in result.stderr


def test_plain_tcp_works_with_the_flag_on_both_sides(tmp_path):
    site = tmp_path / "public_html"
    site.mkdir()
    (site / "index.html").write_text("over plain tcp")
    backend_port, front_port = free_port(), free_port()
    users_map = tmp_path / "users.map"
    users_map.write_text(f"ivan tcp:127.0.0.1:{backend_port}\n")
    with trioweb("--personal", "--path", str(site), "--logfile", "-", "--insecure-tcp-backends", "--listen",
                 f"tcp:{backend_port}:interface=127.0.0.1", port=backend_port, env={"HOME": str(tmp_path)}), \
         trioweb("--user", "--users-map", str(users_map), "--insecure-tcp-backends", port=front_port):
        conn = http.client.HTTPConnection("127.0.0.1", front_port, timeout=15)
        conn.request("GET", "/~ivan/")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b"over plain tcp"
        conn.close()


def test_ssl_lines_need_a_client_certificate(tmp_path):
    users_map = tmp_path / "users.map"
    users_map.write_text(f"carol ssl:127.0.0.1:7001:sha256={'ab' * 32}\n")
    result = run_trioweb("--user", "--users-map", str(users_map), "--listen", f"tcp:{free_port()}")
    assert result.returncode == 2 and "--backend-cert" in result.stderr
    result = run_trioweb("--users-map", str(users_map))
    assert result.returncode == 2 and "--users-map can only be used with --user" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")
def test_the_map_wins_over_a_local_account_of_the_same_name(world, install):
    """alice and bob both have accounts here with a public_html; bob is in the
    map too: his site is the remote one, alice's the local one, and the index
    lists each once."""
    with accounts(install, {"alice": ("Alice,,,", "public_html"), "bob": ("Bob,,,", "public_html")},
                  tag="rm") as hosting:
        alice, bob = hosting.names["alice"], hosting.names["bob"]
        users_map = hosting.base / "users.map"
        users_map.write_text(f"{bob} ssl:127.0.0.1:{world.good_port}:sha256={world.good.sha256}\n")
        hosting.port = free_port()
        command = hosting.front_command(hosting.port, "--users-map", str(users_map), "--backend-cert",
                                        str(world.front_cert.cert), "--backend-key", str(world.front_cert.key))
        with Process(command, port=hosting.port):
            status, _, body = get(hosting, f"/~{alice}/")
            assert status == 200 and b"alice's public_html" in body
            status, _, body = get(hosting, f"/~{bob}/")
            assert status == 200 and f"remote site on {world.good_port}".encode() in body
            index = get(hosting, "/")[2].decode()
            assert index.count(f"~{alice}/") == 1 and index.count(f"~{bob}/") == 1


def test_stalled_handshakes_hold_a_bounded_share_of_a_personal_server(world, tmp_path):
    """At most --max-peer-connections TLS connections per address, counted from
    accept: a client that opens connections and never shakes hands cannot
    take them all; once it lets go, the front's certificate is served again."""
    port = free_port()
    with personal(tmp_path / "public_html", port, world.good, world.front_cert.cert,
                  "--max-peer-connections", "2") as server:
        # The start's probe (a connect, then a close) must have ended its handshake first.
        wait_until_sync(lambda: "refused a TLS connection from 127.0.0.1" in server.output())
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        try:
            # Whichever the server counted third is closed at once, without a handshake; the others wait.
            readable, _, _ = select.select(stalled, [], [], 10)
            assert len(readable) == 1 and readable[0].recv(10) == b""
            wait_until_sync(lambda: "it has 2 open already" in server.output())
        finally:
            for one in stalled:
                one.close()
        context = ssl.create_default_context(cafile=str(world.server_ca))
        context.load_cert_chain(str(world.front_cert.cert), str(world.front_cert.key))

        def served() -> bool:  # refused until the server has seen the stalled ones go
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                     context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    return bool(tls.recv(100))
            except (ConnectionResetError, ssl.SSLError):
                return False

        wait_until_sync(served)


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate is not installed")
def test_a_tcp_socket_from_systemd_is_plain_tcp_too(tmp_path):
    (tmp_path / "public_html").mkdir()
    port = free_port()
    command = [shutil.which("systemd-socket-activate") or "", f"--listen=127.0.0.1:{port}", trioweb_command(),
               "--personal", "--path", str(tmp_path / "public_html"), "--logfile", "-"]
    with Process(command, env={"HOME": str(tmp_path)}) as activator:
        wait_until_sync(lambda: "Listening on" in activator.output())
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # starts it
        assert activator.process.wait(30) == 2
        assert "a TCP socket from systemd" in activator.output() and "--insecure-tcp-backends" in activator.output()
