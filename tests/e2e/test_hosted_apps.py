"""A Flask application published by a real user: ``trioweb --personal --wsgi
app:app`` run as that user in their home, behind a ``trioweb --user`` front
running as www-data. The application sees itself mounted at ``/~user`` and
makes its URLs there. Root only (real accounts), like test_community_hosting."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
from pathlib import Path

import pytest

from tests.support.hosting import hosted
from tests.support.procs import curl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

FLASK_APP = Path(__file__).parent / "pyapps" / "flask_app.py"


@pytest.fixture(scope="module")
def published(install):
    """(front port, account): the account publishes pyapps/flask_app.py as ~/app.py."""
    with hosted(install, {"flask": ("Flask Publisher,,,", "nothing")}, (), tag="f") as hosting:
        home = hosting.home("flask")
        shutil.copy(FLASK_APP, home / "app.py")
        hosting.give_home("flask")
        personal = hosting.start_personal("flask", "--wsgi", "app:app")
        yield hosting.port, hosting.account("flask")
        assert "Traceback" not in personal.output() + (home / ".trioweb.log").read_text()


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_application_runs_as_its_user_under_the_users_prefix(published):
    port, account = published
    user = account.pw_name
    status, _, body = get(port, f"/~{user}/whoami")
    assert status == 200 and body == f"{account.pw_uid} /~{user} /whoami".encode()
    assert get(port, f"/~{user}/")[2] == f"Flask at /~{user}".encode()


def test_redirects_and_url_for_give_urls_under_the_prefix(published):
    port, account = published
    user = account.pw_name
    status, headers, _ = get(port, f"/~{user}/go")
    assert status == 302 and headers["location"] == f"/~{user}/target"
    status, headers, _ = get(port, f"/~{user}/go-external")
    assert status == 302 and headers["location"] == f"http://127.0.0.1:{port}/~{user}/target"
    status, _, body = get(port, f"/~{user}/target")
    assert body == f"target: /~{user}/target http://127.0.0.1:{port}/~{user}/target".encode()
    # Followed by a real client, the redirect lands on the application again.
    result = curl("-sL", f"http://127.0.0.1:{port}/~{user}/go")
    assert result.stdout.startswith(f"target: /~{user}/target".encode())


def test_sessions_uploads_and_streams_through_the_front(published, tmp_path):
    port, account = published
    base = f"http://127.0.0.1:{port}/~{account.pw_name}"
    jar = tmp_path / "jar"
    assert [curl("-c", str(jar), "-b", str(jar), f"{base}/visit").stdout for _ in range(2)] == [
        b"visits: 1", b"visits: 2"]
    data = os.urandom(300_000)
    upload = tmp_path / "photo.jpg"
    upload.write_bytes(data)
    result = curl("-F", f"file=@{upload}", f"{base}/upload", timeout=30)
    assert result.stdout == f"photo.jpg {len(data)} {hashlib.sha256(data).hexdigest()}".encode()
    result = curl(f"{base}/stream?n=2000")
    assert result.stdout == b"".join(b"line %d\n" % i for i in range(2000))
