"""Real Flask, Django and Starlette applications served by the installed
``trioweb`` command (``--wsgi``, ``--asgi``, ``--class``), fetched with curl
and http.client. The applications live in tests/e2e/pyapps and are found
because the command runs in their directory (the current directory is on
the module path)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import ROOT, curl, free_port, trioweb, trioweb_command

APPS = Path(__file__).parent / "pyapps"
PAYLOAD_SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """A copy of the applications, with the file they send (payload.bin)."""
    where = tmp_path_factory.mktemp("pyapps")
    for path in APPS.glob("*.py"):
        shutil.copy(path, where / path.name)
    (where / "payload.bin").write_bytes(os.urandom(PAYLOAD_SIZE))
    return where


def serve(apps: Path, *args: str, env: dict | None = None):
    port = free_port()
    return trioweb(*args, "--max-body-size", str(64 * 1024 * 1024), port=port, cwd=apps,
                   env={"PYTHONPATH": "", **(env or {})}), port


def fetch(port: int, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- Flask -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_server(apps):
    server, port = serve(apps, "--wsgi", "flask_app:app")
    with server:
        yield port
        assert "Traceback" not in server.output()


def test_flask_routes_and_redirects(flask_server):
    port = flask_server
    status, _, body = fetch(port, "/")
    assert (status, body) == (200, b"Flask at /")
    status, headers, _ = fetch(port, "/go")
    assert status == 302 and headers["location"] == "/target"
    status, headers, _ = fetch(port, "/go-external")
    assert status == 302 and headers["location"] == f"http://127.0.0.1:{port}/target"
    assert fetch(port, "/target")[2] == f"target: /target http://127.0.0.1:{port}/target".encode()
    assert fetch(port, "/missing")[0] == 404


def test_flask_session_cookie(flask_server, tmp_path):
    jar = tmp_path / "jar"
    url = f"http://127.0.0.1:{flask_server}/visit"
    answers = [curl("-c", str(jar), "-b", str(jar), url).stdout for _ in range(3)]
    assert answers == [b"visits: 1", b"visits: 2", b"visits: 3"]


def test_flask_upload_of_20_mib(flask_server, tmp_path):
    data = os.urandom(1024 * 1024) * 20
    upload = tmp_path / "big.bin"
    upload.write_bytes(data)
    result = curl("-F", f"file=@{upload}", f"http://127.0.0.1:{flask_server}/upload", timeout=60)
    assert result.stdout == f"big.bin {len(data)} {hashlib.sha256(data).hexdigest()}".encode()


def test_flask_streamed_response_and_send_file(flask_server, apps):
    result = curl("-si", f"http://127.0.0.1:{flask_server}/stream?n=1000")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"".join(b"line %d\n" % i for i in range(1000))
    status, headers, body = fetch(flask_server, "/file")
    assert status == 200 and body == (apps / "payload.bin").read_bytes()
    assert headers["content-length"] == str(PAYLOAD_SIZE)


def test_flask_head(flask_server):
    status, headers, body = fetch(flask_server, "/", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(b"Flask at /"))


# -- Django ----------------------------------------------------------------------------


def test_django_project(apps):
    server, port = serve(apps, "--wsgi", "django_app.application")  # Twisted's spelling
    with server:
        assert fetch(port, "/")[2] == b"Django: home is /, page is /page/7/"
        assert fetch(port, "/page/3/?x=1")[2] == b"page 3 at /page/3/ (/page/3/?x=1)"
        status, headers, _ = fetch(port, "/moved/")
        assert status == 302 and headers["location"] == "/page/1/"
        status, headers, _ = fetch(port, "/page/3")  # CommonMiddleware's APPEND_SLASH
        assert status == 301 and headers["location"] == "/page/3/"
        body = b"name=trio&x=" + b"y" * 100_000
        status, _, answer = fetch(port, "/echo/", "POST", body,
                                  {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and answer == b"POST %d trio" % len(body)
        assert fetch(port, "/", headers={"Host": "evil.example"})[0] == 400  # ALLOWED_HOSTS


# -- mounted below the root: SCRIPT_NAME and root_path ------------------------------------


def test_applications_mounted_below_the_root_make_urls_under_their_mount(apps):
    server, port = serve(apps, "--class", "mounts.Root")  # found in the current directory
    with server:
        assert fetch(port, "/")[2] == b"the root"
        assert fetch(port, "/flask/")[2] == b"Flask at /flask"
        status, headers, _ = fetch(port, "/flask/go")
        assert status == 302 and headers["location"] == "/flask/target"
        status, headers, _ = fetch(port, "/flask/go-external")
        assert headers["location"] == f"http://127.0.0.1:{port}/flask/target"
        assert fetch(port, "/django/")[2] == b"Django: home is /django/, page is /django/page/7/"
        status, headers, _ = fetch(port, "/django/moved/")
        assert status == 302 and headers["location"] == "/django/page/1/"
        assert fetch(port, "/starlette/")[2] == (
            f"Starlette on /starlette started=no url=http://127.0.0.1:{port}/starlette/".encode())


# -- Starlette -------------------------------------------------------------------------


def test_starlette_application_with_lifespan(apps, tmp_path):
    marker = tmp_path / "shutdown"
    server, port = serve(apps, "--asgi", "starlette_app:app", env={"STARLETTE_TEST_MARKER": str(marker)})
    with server:
        assert fetch(port, "/")[2] == f"Starlette on / started=yes url=http://127.0.0.1:{port}/".encode()
        status, headers, _ = fetch(port, "/go")
        assert status == 307 and headers["location"] == f"http://127.0.0.1:{port}/"
        result = curl("-si", f"http://127.0.0.1:{port}/stream?n=20")
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head and body == b"".join(b"line %d\n" % i for i in range(20))
        status, headers, body = fetch(port, "/file")
        assert status == 200 and body == (apps / "payload.bin").read_bytes()
        assert headers["content-length"] == str(PAYLOAD_SIZE)
        data = os.urandom(1024 * 1024) * 8
        upload = tmp_path / "up.bin"
        upload.write_bytes(data)
        result = curl("--data-binary", f"@{upload}", "-H", "Content-Type: application/octet-stream",
                      f"http://127.0.0.1:{port}/upload", timeout=60)
        size, digest, pieces = result.stdout.split()
        assert (int(size), digest.decode()) == (len(data), hashlib.sha256(data).hexdigest())
        assert int(pieces) > 1  # the body arrived in pieces
        assert server.stop() == 0
    assert marker.read_text() == "shut down"  # the lifespan shutdown ran


def test_a_failed_lifespan_startup_exits_1_with_the_reason(apps):
    result = subprocess.run([trioweb_command(), "--asgi", "starlette_app:app", "--listen",
                             f"tcp:{free_port()}:interface=127.0.0.1"], cwd=apps, capture_output=True, text=True,
                            timeout=30, env={**os.environ, "STARLETTE_FAIL_STARTUP": "1"})
    assert result.returncode == 1, result.stderr
    assert "the ASGI application failed to start" in result.stderr
    assert "the database is not there" in result.stderr


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--wsgi", "no_such_module.app"], "No such WSGI application: 'no_such_module.app'"),
    (["--wsgi", "flask_app:nothing"], "No such WSGI application: 'flask_app:nothing'"),
    (["--wsgi", "flask_app"], "No such WSGI application: 'flask_app'"),
    (["--asgi", "starlette_app:nope"], "No such ASGI application: 'starlette_app:nope'"),
    (["--wsgi", "flask_app:HERE"], "is not callable"),
    (["--wsgi-threads", "4"], "--wsgi-threads can only be used with --wsgi"),
    (["--wsgi", "flask_app:app", "--wsgi-threads", "0"], "--wsgi-threads"),
    (["--wsgi", "flask_app:app", "--path", "."], "choose the root"),
    (["--wsgi", "flask_app:app", "--asgi", "starlette_app:app"], "choose the root"),
])
def test_bad_application_options_are_one_line_usage_errors(apps, args, message):
    result = subprocess.run([trioweb_command(), *args], cwd=apps, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_wsgi_with_add_header_serves_every_request(apps):
    # Twisted answers every request 500 in this combination.
    server, port = serve(apps, "--wsgi", "flask_app:app", "--add-header", "X-Served-By: trioweb",
                         "--wsgi-threads", "2")
    with server:
        for path in ("/", "/target", "/missing"):
            status, headers, _ = fetch(port, path)
            assert status in (200, 404) and headers["x-served-by"] == "trioweb"
        assert fetch(port, "/")[0] == 200


def test_the_guides_helloworld_example():
    port = free_port()
    with trioweb("--wsgi", "helloworld.application", port=port, cwd=ROOT / "examples" / "wsgi",
                 env={"PYTHONPATH": ""}):
        result = curl("-si", f"http://127.0.0.1:{port}/")
        assert result.stdout.endswith(b"\r\n\r\nHello World!")
        assert re.search(rb"Content-Type: text/plain\r\n", result.stdout)


def test_the_starlette_example():
    port = free_port()
    with trioweb("--asgi", "starlette_app:app", port=port, cwd=ROOT / "examples" / "asgi", env={"PYTHONPATH": ""}):
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"Hello from Starlette on trio!"
        assert curl(f"http://127.0.0.1:{port}/count").stdout == b"0\n1\n2\n3\n4\n"
        echoed = curl("--data-binary", "twelve bytes", f"http://127.0.0.1:{port}/echo").stdout
        assert echoed == b'{"received":12,"root_path":""}'
