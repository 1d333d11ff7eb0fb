"""Endpoint strings and the listeners they open."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.polling import wait_until
from tests.support.rawhttp import RawConnection, get
from trioweb.endpoints import (
    EndpointError,
    SSLClientEndpoint,
    SSLEndpoint,
    TCPClientEndpoint,
    TCPEndpoint,
    UNIXClientEndpoint,
    UNIXEndpoint,
    open_listeners,
    parse_client_endpoint,
    parse_endpoint,
)
from trioweb.server import Site, serve
from trioweb.static import Data


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tcp:8080", TCPEndpoint(8080)),
        ("tcp:port=8080", TCPEndpoint(8080)),
        ("tcp:8080:interface=127.0.0.1", TCPEndpoint(8080, "127.0.0.1")),
        ("tcp:8080:interface=\\:\\:1", TCPEndpoint(8080, "::1")),
        ("tcp:8080:interface=[::1]", TCPEndpoint(8080, "::1")),
        ("tcp:0:backlog=5", TCPEndpoint(0, "", 5)),
        ("unix:/tmp/s", UNIXEndpoint("/tmp/s")),
        ("unix:/tmp/s:mode=660", UNIXEndpoint("/tmp/s", 0o660)),
        ("unix:/tmp/s:lockfile=0", UNIXEndpoint("/tmp/s", 0o666, False)),
        ("unix:/tmp/s:wantPID=1", UNIXEndpoint("/tmp/s", 0o666, True)),
        ("unix:address=/tmp/s", UNIXEndpoint("/tmp/s")),
        ("ssl:8443:privateKey=k.pem:certKey=c.pem", SSLEndpoint(8443, "k.pem", "c.pem")),
        ("ssl:8443:privateKey=both.pem", SSLEndpoint(8443, "both.pem", "both.pem")),
        ("ssl:8443:privateKey=k.pem:caCerts=front.pem", SSLEndpoint(8443, "k.pem", "k.pem", ca_certs="front.pem")),
    ],
)
def test_parse(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("tcp", "no port"),
        ("tcp:http", "must be a number"),
        ("tcp:99999", "out of range"),
        ("tcp:80:bogus=1", "unexpected bogus=1"),
        ("tcp:80:extra", "unexpected extra"),
        ("tcp:80:interface=a:b", "positional value"),
        ("unix:", "no socket path"),
        ("unix:/x:mode=999", "must be a number"),
        ("unix:/x:lockfile=yes", "lockfile must be 0 or 1"),
        ("ssl:443", "privateKey"),
        ("udp:53", "unknown kind"),
        ("tcp:80:port=81", "port"),
    ],
)
def test_bad_strings_name_the_string(text, message):
    with pytest.raises(EndpointError) as info:
        parse_endpoint(text)
    assert repr(text) in str(info.value) or text in str(info.value)
    assert message in str(info.value)


async def test_unix_socket_mode_lock_and_cleanup(tmp_path, nursery):
    path = str(tmp_path / "web.sock")
    async with open_listeners([parse_endpoint(f"unix:{path}:mode=660")]) as listeners:
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o660)
        assert Path(path + ".lock").read_text() == f"{os.getpid()}\n"
        async with trio.open_nursery() as inner:
            await inner.start(serve, Site(Data(b"hi", "text/plain")), listeners)
            conn = await RawConnection.open_unix(path)
            await conn.send(get())
            response = await conn.read_response()
            assert response.body == b"hi"
            inner.cancel_scope.cancel()
    assert not os.path.exists(path) and not os.path.lexists(path + ".lock")


HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.write(fd, b'%d\\n' % os.getpid())\n"
    "print('locked', flush=True)\n"
    "time.sleep(30)\n"
)


async def test_live_owner_refuses_a_second_server(tmp_path):
    path = str(tmp_path / "web.sock")
    owner = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path + ".lock"], stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline() == b"locked\n"
        with pytest.raises(EndpointError, match=f"another server \\(pid {owner.pid}\\) is already listening"):
            async with open_listeners([UNIXEndpoint(path)]):
                pass
        assert os.path.lexists(path + ".lock")  # not ours to remove
    finally:
        owner.kill()
        owner.wait()


async def test_a_lock_dies_with_its_owner_even_unreaped(tmp_path):
    """Issue 11, item 6a: killed (SIGKILL) and not yet reaped, as when systemd
    restarts a service at once, the owner holds nothing: the next server starts."""
    path = str(tmp_path / "web.sock")
    owner = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path + ".lock"], stdout=subprocess.PIPE)
    try:
        assert owner.stdout.readline() == b"locked\n"
        owner.kill()
        await wait_until(lambda: Path(f"/proc/{owner.pid}/stat").read_text().split()[2] == "Z")
        async with open_listeners([UNIXEndpoint(path)]):  # the zombie still has its pid
            assert Path(path + ".lock").read_text() == f"{os.getpid()}\n"
    finally:
        owner.wait()


async def test_a_stale_lock_naming_a_live_unrelated_process_is_taken(tmp_path):
    """Issue 11, item 6b: after a reboot, the pid in a stale lock may be anyone's."""
    path = str(tmp_path / "web.sock")
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Path(path + ".lock").write_text(f"{unrelated.pid}\n")
        async with open_listeners([UNIXEndpoint(path)]):
            assert Path(path + ".lock").read_text() == f"{os.getpid()}\n"
        assert not os.path.lexists(path + ".lock")
    finally:
        unrelated.kill()
        unrelated.wait()


async def test_stale_socket_and_lock_of_a_dead_process_are_replaced(tmp_path):
    path = str(tmp_path / "web.sock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on
    os.symlink(str(dead.pid), path + ".lock")  # the lock of an older version
    async with open_listeners([UNIXEndpoint(path)]):
        assert Path(path + ".lock").read_text() == f"{os.getpid()}\n"


async def test_a_live_socket_nobody_locked_is_not_replaced(tmp_path):
    """Issue 11, item 6: another program's socket, without a lock file, is refused."""
    path = str(tmp_path / "web.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(EndpointError, match=r"without holding .*lock"):
            async with open_listeners([UNIXEndpoint(path)]):
                pass
        live.settimeout(1)
        probe, _ = live.accept()  # still the other program's socket
        probe.close()
        assert not os.path.lexists(path + ".lock")
    finally:
        live.close()


async def test_stale_socket_without_lock_is_replaced(tmp_path):
    path = str(tmp_path / "web.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    async with open_listeners([UNIXEndpoint(path, lockfile=False)]):
        assert os.path.exists(path)


async def test_live_socket_without_lock_is_not_stolen(tmp_path):
    path = str(tmp_path / "web.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(EndpointError, match="already listening"):
            async with open_listeners([UNIXEndpoint(path, lockfile=False)]):
                pass
    finally:
        live.close()


async def test_regular_file_at_the_path_is_never_removed(tmp_path):
    path = tmp_path / "web.sock"
    path.write_text("precious")
    with pytest.raises(EndpointError, match="not a socket"):
        async with open_listeners([UNIXEndpoint(str(path))]):
            pass
    assert path.read_text() == "precious"
    assert not os.path.lexists(str(path) + ".lock")


async def test_port_in_use_is_a_clear_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(EndpointError, match=f"127.0.0.1:{port}"):
            async with open_listeners([TCPEndpoint(port, "127.0.0.1")]):
                pass
    finally:
        holder.close()


async def test_ipv6_interface(nursery):
    try:
        async with open_listeners([parse_endpoint("tcp:0:interface=\\:\\:1")]) as listeners:
            assert listeners[0].socket.getsockname()[0] == "::1"
    except EndpointError:
        pytest.skip("no IPv6 loopback here")


async def test_bad_tls_files_are_a_clear_error(tmp_path):
    with pytest.raises(EndpointError, match="TLS"):
        async with open_listeners([SSLEndpoint(0, str(tmp_path / "missing.pem"), str(tmp_path / "missing.pem"))]):
            pass


async def test_tls_endpoint_serves_https(tmp_path, nursery):
    import shutil
    import ssl

    from trioweb.resource import Resource

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)

    class Secure(Resource):
        isLeaf = True

        def render_GET(self, request):
            return request.prePathURL() + b" %r" % request.isSecure()

    async with open_listeners([parse_endpoint(f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1")]) as listeners:
        await nursery.start(serve, Site(Secure()), listeners)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        context = ssl.create_default_context(cafile=str(cert))
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname="localhost")
        conn = RawConnection(stream)
        await conn.send(get(host=b"localhost:%d" % port))
        response = await conn.read_response()
        assert response.body == b"https://localhost:%d/ True" % port
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("text", "endpoint"), [
    ("unix:/run/alice.sock", UNIXClientEndpoint("/run/alice.sock")),
    ("unix:path=/run/a\\:b.sock", UNIXClientEndpoint("/run/a:b.sock")),
    ("tcp:example.com:8080", TCPClientEndpoint("example.com", 8080)),
    ("tcp:host=127.0.0.1:port=80", TCPClientEndpoint("127.0.0.1", 80)),
    ("tcp:[::1]:8080", TCPClientEndpoint("::1", 8080)),
    ("ssl:host2.example.net:7001", SSLClientEndpoint("host2.example.net", 7001)),
    ("ssl:127.0.0.1:7001:sha256=" + "ab" * 32, SSLClientEndpoint("127.0.0.1", 7001, bytes.fromhex("ab" * 32))),
    # openssl's fingerprint form, its colons escaped as any literal colon in an endpoint
    ("ssl:h:1:sha256=" + "\\:".join(["AB"] * 32), SSLClientEndpoint("h", 1, bytes.fromhex("ab" * 32))),
])
def test_client_endpoints(text, endpoint):
    assert parse_client_endpoint(text) == endpoint


@pytest.mark.parametrize(("text", "message"), [
    ("unix:", "no path"),
    ("tcp:example.com", "no port"),
    ("tcp:example.com:http", "port must be a number"),
    ("tcp:example.com:70000", "out of range"),
    ("http:example.com:443", "unknown kind"),
    ("ssl:example.com:443:sha256=abcd", "64 hex digits"),
    ("ssl:example.com:443:sha256=" + "zz" * 32, "64 hex digits"),
    ("tcp:example.com:443:sha256=" + "ab" * 32, "unexpected"),
    ("unix:/a:/b", "unexpected"),
])
def test_bad_client_endpoints(text, message):
    with pytest.raises(EndpointError, match=message):
        parse_client_endpoint(text)

