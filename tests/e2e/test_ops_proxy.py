"""trioweb behind a real nginx terminating TLS (--proxy-headers), and behind
PROXY protocol senders (curl --haproxy-protocol, nginx's stream module)."""

from __future__ import annotations

import socket
import ssl
import struct

import pytest
import trustme

from tests.support.nginx import has_stream_module, nginx_binary, start_nginx
from tests.support.procs import curl, free_port, trioweb

needs_nginx = pytest.mark.skipif(nginx_binary() is None,
                                 reason="nginx is not installed (Debian package nginx-light, listed in .ci/run)")

INFO_RPY = """\
from trioweb.resource import Resource

class Info(Resource):
    isLeaf = True

    def render_GET(self, request):
        client = request.getClientAddress()
        return ("%s %s %s" % (getattr(client, "host", "-"), request.isSecure(),
                              request.prePathURL().decode())).encode()

resource = Info()
"""


@pytest.fixture
def htdocs(tmp_path):
    root = tmp_path / "htdocs"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "index.html").write_text("inside\n")
    (root / "info.rpy").write_text(INFO_RPY)
    return root


PROXY_SERVER = """\
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{port};
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
"""


@needs_nginx
def test_behind_nginx_terminating_tls_redirects_logs_and_security_follow_the_client(tmp_path, htdocs):
    port, tls_port = free_port(), free_port()
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    log = tmp_path / "access.log"
    https = f"https://localhost:{tls_port}"
    tls = ["--cacert", str(ca_pem), "--resolve", f"localhost:{tls_port}:127.0.0.1", "--interface", "127.0.0.2"]
    with trioweb("--path", str(htdocs), "--proxy-headers", "--logfile", str(log), port=port) as server, \
            start_nginx(tmp_path, http=PROXY_SERVER.format(tls_port=tls_port, port=port, cert=cert, key=key),
                        port=tls_port):
        redirect = curl(*tls, "-D", "-", "-o", "/dev/null", f"{https}/dir")
        assert redirect.returncode == 0, redirect.stderr
        head = redirect.stdout.decode().lower()
        assert head.startswith("http/1.1 30"), head
        assert f"location: {https}/dir/\r\n" in head
        assert curl(*tls, "-L", f"{https}/dir").stdout == b"inside\n"
        # The client (127.0.0.2) sent its own X-Forwarded-For: nginx appends the address it saw.
        info = curl(*tls, "-H", "X-Forwarded-For: 6.6.6.6", f"{https}/info.rpy").stdout.decode()
        assert info == f"127.0.0.2 True {https}/info.rpy"
        # Straight to trioweb from an address it does not trust: the headers are only headers.
        direct = curl("--interface", "127.0.0.2", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Proto: https",
                      f"http://127.0.0.1:{port}/info.rpy").stdout.decode()
        assert direct == f"127.0.0.2 False http://127.0.0.1:{port}/info.rpy"
        assert server.stop() == 0
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("127.0.0.2 - - [") for line in lines), lines


def _raw_get(port: int, header: bytes, path: bytes = b"/info.rpy") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(header + b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # closed with the request unread
            assert data == b""
    return data


def _v2(family_protocol: int, addresses: bytes, command: int = 0x21) -> bytes:
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([command, family_protocol]) + struct.pack("!H", len(addresses)) + addresses


def test_proxy_protocol_v1_and_v2_name_the_client_and_bad_headers_close(tmp_path, htdocs):
    port = free_port()
    log = tmp_path / "access.log"
    listen = f"tcp:{port}:interface=127.0.0.1:proxy=1"
    with trioweb("--path", str(htdocs), "--listen", listen, "--logfile", str(log), port=port) as server:
        # curl's own PROXY v1 header names the address it connects from.
        via_curl = curl("--haproxy-protocol", "--interface", "127.0.0.3", f"http://127.0.0.1:{port}/info.rpy")
        assert via_curl.stdout.decode() == f"127.0.0.3 False http://127.0.0.1:{port}/info.rpy"
        v1 = _raw_get(port, b"PROXY TCP4 198.51.100.4 127.0.0.1 5555 80\r\n")
        assert v1.endswith(b"198.51.100.4 False http://h/info.rpy")
        v1_six = _raw_get(port, b"PROXY TCP6 2001:db8::5 ::1 5555 80\r\n")
        assert v1_six.endswith(b"2001:db8::5 False http://h/info.rpy")
        v2 = _raw_get(port, _v2(0x11, socket.inet_aton("203.0.113.6") + socket.inet_aton("127.0.0.1")
                                 + struct.pack("!HH", 1234, 80) + b"\x03\x00\x04tlv!"))
        assert v2.endswith(b"203.0.113.6 False http://h/info.rpy")
        local = _raw_get(port, _v2(0x00, b"", command=0x20))  # the balancer's own health check
        assert local.endswith(b"127.0.0.1 False http://h/info.rpy")
        unknown = _raw_get(port, b"PROXY UNKNOWN\r\n")
        assert unknown.endswith(b"127.0.0.1 False http://h/info.rpy")
        for bad in (b"", b"PROXY TCP4 1.2.3.4\r\n", b"PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n",
                    b"PROXY TCP4 " + b"1" * 200 + b"\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00"):
            assert _raw_get(port, bad) == b"", bad
        assert curl(f"http://127.0.0.1:{port}/").stdout == b""  # a client without the header is refused
        assert _raw_get(port, b"PROXY TCP4 198.51.100.4 127.0.0.1 5555 80\r\n").startswith(b"HTTP/1.1 200")
        assert server.stop() == 0
    assert "198.51.100.4 - - [" in log.read_text()


@needs_nginx
@pytest.mark.skipif(not has_stream_module(), reason="nginx's stream module is not installed (libnginx-mod-stream)")
def test_proxy_protocol_from_nginx_stream_in_front_of_tls(tmp_path, htdocs):
    port, front = free_port(), free_port()
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, ca_pem = tmp_path / "both.pem", tmp_path / "ca.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_pem))
    stream = f"""\
    server {{
        listen 127.0.0.1:{front};
        proxy_pass 127.0.0.1:{port};
        proxy_protocol on;
    }}
"""
    listen = f"ssl:{port}:interface=127.0.0.1:privateKey={cert}:proxy=1"
    with trioweb("--path", str(htdocs), "--listen", listen, port=port), \
            start_nginx(tmp_path, stream=stream, port=front):
        got = curl("--cacert", str(ca_pem), "--resolve", f"localhost:{front}:127.0.0.1", "--interface", "127.0.0.4",
                   f"https://localhost:{front}/info.rpy")
        assert got.stdout.decode() == f"127.0.0.4 True https://localhost:{front}/info.rpy", got.stderr


def test_proxy_protocol_before_tls_on_an_ssl_listener(tmp_path, htdocs):
    port = free_port()
    ca = trustme.CA()
    both = tmp_path / "both.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(both))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    listen = f"ssl:{port}:interface=127.0.0.1:privateKey={both}:proxy=1"
    with trioweb("--path", str(htdocs), "--listen", listen, port=port) as server:
        for header in (b"PROXY TCP4 198.51.100.77 127.0.0.1 4000 443\r\n",
                       _v2(0x11, socket.inet_aton("198.51.100.77") + socket.inet_aton("127.0.0.1")
                           + struct.pack("!HH", 4000, 443))):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(header)
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"GET /info.rpy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    answer = b""
                    while chunk := tls.recv(65536):
                        answer += chunk
            assert answer.endswith(b"198.51.100.77 True https://localhost/info.rpy"), answer
        # TLS straight away, without the header: refused before any handshake.
        with pytest.raises((ssl.SSLError, ConnectionError)), socket.create_connection(("127.0.0.1", port)) as raw, \
                context.wrap_socket(raw, server_hostname="localhost"):
            pass
        assert server.stop() == 0
