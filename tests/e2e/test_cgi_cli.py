"""CGI through the `trioweb` command: `--path` runs .cgi files as Twisted's
does, `--processor` adds Perl and PHP, `--cgi-*` options, and the examples
under examples/cgi (the guide's cgi-bin site and PerlScript .rpy, a PHP site,
CGIDirectory mounts). Real processes, real ports, curl."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import ROOT, curl, free_port, trioweb, trioweb_command
from tests.support.proctree import children_of

EXAMPLES = ROOT / "examples" / "cgi"
needs_perl = pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed (.ci/run installs it)")
needs_php = pytest.mark.skipif(shutil.which("php-cgi") is None,
                               reason="php-cgi is not installed (.ci/run installs it)")


def env_lines(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


def test_path_runs_cgi_and_never_shows_a_non_executable_one(tmp_path):
    shutil.copytree(EXAMPLES / "htdocs", tmp_path / "site")
    plain = tmp_path / "site" / "cgi-bin" / "plain.cgi"
    plain.write_text("#!/bin/sh\necho PLAIN-SOURCE\n")
    plain.chmod(0o644)
    port = free_port()
    with trioweb("--path", str(tmp_path / "site"), port=port):
        base = f"http://127.0.0.1:{port}"
        hello = curl("-i", f"{base}/cgi-bin/hello.cgi").stdout
        assert hello.startswith(b"HTTP/1.1 200 OK") and hello.endswith(b"\r\n\r\nHello, world!\n")
        shown = curl("-i", f"{base}/cgi-bin/plain.cgi").stdout
        assert shown.startswith(b"HTTP/1.1 403 ") and b"PLAIN-SOURCE" not in shown
        # CVE-2021-41773/42013: dot segments, encoded once or twice, never leave the tree.
        for path in ("/cgi-bin/.%2e/%2e%2e/%2e%2e/%2e%2e/bin/sh", "/cgi-bin/.%%32%65/.%%32%65/bin/sh",
                     "/cgi-bin/%2e%2e/cgi-bin/hello.cgi"):
            escaped = curl("--path-as-is", "-i", f"{base}{path}").stdout
            assert escaped.startswith(b"HTTP/1.1 404 ") and b"uid=" not in escaped, path


def test_env_cgi_shows_rfc3875_variables_and_no_proxy(tmp_path):
    port = free_port()
    with trioweb("--path", str(EXAMPLES / "htdocs"), port=port, env={"TRIOWEB_SECRET_TOKEN": "t0ken"}):
        result = curl("-H", "Proxy: evil", "-H", "X_Auth_User: admin", "-H", "Host: www.example.test:8080",
                      f"http://127.0.0.1:{port}/cgi-bin/env.cgi/extra/path?x=1")
        env = env_lines(result.stdout)
    script = EXAMPLES / "htdocs" / "cgi-bin" / "env.cgi"
    assert {k: env.get(k) for k in ("GATEWAY_INTERFACE", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                                    "REQUEST_METHOD", "SCRIPT_NAME", "SCRIPT_FILENAME", "PATH_INFO",
                                    "PATH_TRANSLATED", "QUERY_STRING", "REMOTE_ADDR", "REQUEST_URI")} == {
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_NAME": "www.example.test", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cgi-bin/env.cgi",
        "SCRIPT_FILENAME": str(script), "PATH_INFO": "/extra/path",
        "PATH_TRANSLATED": str(EXAMPLES / "htdocs") + "/extra/path", "QUERY_STRING": "x=1",
        "REMOTE_ADDR": "127.0.0.1", "REQUEST_URI": "/cgi-bin/env.cgi/extra/path?x=1"}
    assert env["SERVER_SOFTWARE"].startswith("trioweb/") and int(env["REMOTE_PORT"]) > 0
    assert "PROXY" not in env and "HTTP_PROXY" not in env and "HTTP_X_AUTH_USER" not in env
    assert b"evil" not in result.stdout and b"admin" not in result.stdout
    assert "TRIOWEB_SECRET_TOKEN" not in env  # the server's environment stays the server's


def test_cgi_options_pass_env_and_timeout(tmp_path):
    (tmp_path / "env.cgi").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv\n")
    (tmp_path / "hang.cgi").write_text("#!/bin/sh\necho $$ > pid\nsleep 300\n")
    for name in ("env.cgi", "hang.cgi"):
        (tmp_path / name).chmod(0o755)
    port = free_port()
    with trioweb("--path", str(tmp_path), "--cgi-pass-env", "TRIOWEB_ALLOWED", "--cgi-timeout", "0.5",
                 port=port, env={"TRIOWEB_ALLOWED": "yes", "TRIOWEB_OTHER": "no"}) as server:
        env = env_lines(curl(f"http://127.0.0.1:{port}/env.cgi").stdout)
        assert env["TRIOWEB_ALLOWED"] == "yes" and "TRIOWEB_OTHER" not in env
        started = time.monotonic()
        hang = curl("-i", f"http://127.0.0.1:{port}/hang.cgi").stdout
        assert hang.startswith(b"HTTP/1.1 504 ") and time.monotonic() - started < 5
        wait_until_sync(lambda: not children_of(server.pid), timeout=10)
    assert not os.path.exists(f"/proc/{int((tmp_path / 'pid').read_text())}")


def test_bad_cgi_options_are_usage_errors():
    for args in (["--cgi-timeout", "0"], ["--cgi-max-processes", "0"], ["--cgi-pass-env", "A=B"]):
        result = subprocess.run([trioweb_command(), *args], capture_output=True, timeout=30)
        assert result.returncode == 2 and b"--cgi-" in result.stderr, args


def test_client_gone_leaves_no_process_behind_the_trioweb_command(tmp_path):
    (tmp_path / "stream.cgi").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n"
                                         "while :; do echo tick; sleep 0.05; done\n")
    (tmp_path / "stream.cgi").chmod(0o755)
    port = free_port()
    with trioweb("--path", str(tmp_path), port=port) as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /stream.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
            received = b""
            while b"tick" not in received:  # the head may come first, on its own
                piece = client.recv(65536)
                assert piece, received
                received += piece
            assert children_of(server.pid)
        wait_until_sync(lambda: not children_of(server.pid), timeout=10)


@needs_perl
def test_guides_perlscript_rpy_and_a_perl_cgi():
    port = free_port()
    with trioweb("--path", str(EXAMPLES / "htdocs"), port=port):
        base = f"http://127.0.0.1:{port}"
        page = curl(f"{base}/perl.rpy/").stdout
        assert page.startswith(b"Hello from Perl v5") and b"SCRIPT_NAME=/perl.rpy/\n" in page  # the URL asked for, as in Twisted
        cookies = curl("-i", f"{base}/perl.rpy/cookie.pl").stdout
        assert cookies.startswith(b"HTTP/1.1 201 Made")
        assert b"Set-Cookie: flavour=oatmeal\r\n" in cookies and b"Set-Cookie: count=1\r\n" in cookies
        assert b"Hello, &#60;b&#62;you!" in curl(f"{base}/cgi-bin/form.cgi?name=%3Cb%3Eyou").stdout
        assert b"Hello, posted name!" in curl("--data", "name=posted+name", f"{base}/cgi-bin/form.cgi").stdout


@needs_perl
def test_processor_option_runs_perl_files(tmp_path):
    (tmp_path / "hi.pl").write_text('print "Content-Type: text/plain\\n\\nperl says hi\\n";\n')
    port = free_port()
    with trioweb("--path", str(tmp_path), "--processor", ".pl=trioweb.twcgi.PerlScript", port=port):
        assert curl(f"http://127.0.0.1:{port}/hi.pl").stdout == b"perl says hi\n"


@needs_php
def test_php_site():
    port = free_port()
    with trioweb("--path", str(EXAMPLES / "phpsite"), "--processor", ".php=trioweb.twcgi.PHPScript",
                 "--index", "index.php", port=port):
        base = f"http://127.0.0.1:{port}"
        page = curl("-i", f"{base}/?name=%3Cme%3E").stdout
        assert page.startswith(b"HTTP/1.1 200 OK") and b"X-Powered-By-Example: trioweb" in page
        assert b"Hello, &lt;me&gt;, from PHP" in page and b"SCRIPT_NAME=/ " in page
        assert b"SCRIPT_NAME=/index.php PATH_INFO=/more/path" in curl(f"{base}/index.php/more/path").stdout
        posted = curl("-i", "--data", "field=value", f"{base}/post.php").stdout
        assert b"posted: value" in posted and b"Set-Cookie: seen=yes" in posted
        redirect = curl("-i", f"{base}/redirect.php").stdout
        assert redirect.startswith(b"HTTP/1.1 302 ") and b"Location: /index.php?name=redirected" in redirect
        # CVE-2012-1823: a query without '=' must never reach php-cgi as options (-s shows the source).
        for query in ("-s", "-d+auto_prepend_file%3d/etc/passwd"):
            body = curl(f"{base}/index.php?{query}").stdout
            assert b"<?php" not in body and b"root:" not in body and b"Hello, world, from PHP" in body


def test_https_is_on_over_tls(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)
    port = free_port()
    with trioweb("--path", str(EXAMPLES / "htdocs"), "--listen",
                 f"ssl:{port}:privateKey={key}:certKey={cert}:interface=127.0.0.1", port=port):
        env = env_lines(curl("-k", f"https://127.0.0.1:{port}/cgi-bin/env.cgi").stdout)
    assert env["HTTPS"] == "on" and env["SERVER_PORT"] == str(port)


def test_guides_cgi_bin_site_example():
    port = free_port()
    with trioweb("--config", str(EXAMPLES / "cgi_bin.py"), port=port):
        base = f"http://127.0.0.1:{port}"
        assert b"CGI examples" in curl(f"{base}/").stdout
        assert curl(f"{base}/cgi-bin/hello.cgi").stdout == b"Hello, world!\n"
        listing = curl("-i", f"{base}/cgi-bin/").stdout
        assert listing.startswith(b"HTTP/1.1 404 ") and b"CGI directories do not support directory listing" in listing


def test_site_mounts_example_as_a_config_file():
    port = free_port()
    with trioweb("-y", str(EXAMPLES / "site_mounts.py"), port=port):
        base = f"http://127.0.0.1:{port}"
        assert b"twisted-python, twisted-web" in curl(f"{base}/mailman/listinfo").stdout
        about = curl(f"{base}/mailman/listinfo/twisted-python").stdout
        assert about == b"About the twisted-python list (SCRIPT_NAME=/mailman/listinfo)\n"
        status = curl("-i", f"{base}/status").stdout
        assert status.startswith(b"HTTP/1.1 200 Everything Is Fine") and status.endswith(b"status: ok\n")
        assert curl(f"{base}/cgi-bin/hello.cgi").stdout == b"Hello, world!\n"


def test_stopping_the_server_stops_its_scripts(tmp_path):
    (tmp_path / "hang.cgi").write_text("#!/bin/sh\necho $$ > pid\nsleep 300\n")
    (tmp_path / "hang.cgi").chmod(0o755)
    port = free_port()
    with trioweb("--path", str(tmp_path), "--drain-timeout", "1", port=port) as server:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /hang.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
            wait_until_sync(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip())
            assert server.stop(timeout=20) == 0
    assert not os.path.exists(f"/proc/{int((tmp_path / 'pid').read_text())}")
