"""Per-user CGI on a community host with real accounts: a user's scripts run
in her personal server, as her, behind the `--user` front (suEXEC's job,
with no setuid helper). Skipped without root: distinct uids are the point."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil

import pytest

from tests.support.hosting import get, hosted

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

WHOAMI = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
echo "uid=$(id -u) user=$(id -un)"
echo "SCRIPT_NAME=$SCRIPT_NAME"
echo "PATH_INFO=$PATH_INFO"
if cat {secret} >/dev/null 2>&1; then echo "read bob's secret"; else echo "cannot read bob's secret"; fi
"""

WHOAMI_PHP = """<?php
header('Content-Type: text/plain');
echo 'php uid=', getmyuid(), ' euid=', posix_geteuid(), "\\n";
echo 'SCRIPT_NAME=', $_SERVER['SCRIPT_NAME'], "\\n";
echo is_readable('{secret}') ? "read bob's secret" : "cannot read bob's secret", "\\n";
"""


@pytest.fixture(scope="module")
def hosting(install):
    users = {"alice": ("Alice,,,", "nothing"), "bob": ("Bob,,,", "nothing")}
    with hosted(install, users, (), tag="c") as hosting:
        secret = hosting.home("bob") / "secret.txt"
        secret.write_text("bob's secret")
        hosting.give_home("bob")
        secret.chmod(0o600)
        cgi_bin = hosting.home("alice") / "site" / "cgi-bin"
        cgi_bin.mkdir(parents=True)
        (cgi_bin / "whoami.cgi").write_text(WHOAMI.format(secret=secret))
        (cgi_bin / "whoami.cgi").chmod(0o755)
        (cgi_bin / "sum.cgi").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n"
                                         "echo \"$CONTENT_LENGTH $(sha256sum | cut -d' ' -f1)\"\n")
        (cgi_bin / "sum.cgi").chmod(0o755)
        (cgi_bin / "source.cgi").write_text("#!/bin/sh\necho NOT-EXECUTABLE-SOURCE\n")
        (cgi_bin / "whoami.php").write_text(WHOAMI_PHP.format(secret=secret))
        hosting.give_home("alice")
        hosting.start_personal("alice", "--path", str(hosting.home("alice") / "site"),
                               "--processor", ".php=trioweb.twcgi.PHPScript")
        yield hosting


def test_a_users_cgi_runs_as_her_behind_the_front(hosting):
    alice = hosting.names["alice"]
    account = hosting.account("alice")
    status, headers, body = get(hosting, f"/~{alice}/cgi-bin/whoami.cgi/extra?x=1")
    assert status == 200, body
    assert headers["Content-Type"] == "text/plain"
    lines = body.decode().splitlines()
    assert lines[0] == f"uid={account.pw_uid} user={alice}"
    assert lines[1] == f"SCRIPT_NAME=/~{alice}/cgi-bin/whoami.cgi"  # the public URL, as the front published it
    assert lines[2] == "PATH_INFO=/extra"
    assert lines[3] == "cannot read bob's secret"
    same = get(hosting, f"/users/{alice}/cgi-bin/whoami.cgi")[2].decode().splitlines()
    assert same[0] == lines[0] and same[1] == f"SCRIPT_NAME=/users/{alice}/cgi-bin/whoami.cgi"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_streams_through_the_front_to_a_users_cgi(hosting, chunked):
    body = os.urandom(900 * 1024)
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=30)
    try:
        conn.request("POST", f"/~{hosting.names['alice']}/cgi-bin/sum.cgi",
                     body=iter([body[:300000], body[300000:]]) if chunked else body, headers=headers,
                     encode_chunked=chunked)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert answer == f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode()


def test_a_users_non_executable_cgi_is_403_not_its_source(hosting):
    status, _, body = get(hosting, f"/~{hosting.names['alice']}/cgi-bin/source.cgi")
    assert status == 403 and b"NOT-EXECUTABLE-SOURCE" not in body


@pytest.mark.skipif(shutil.which("php-cgi") is None, reason="php-cgi is not installed (.ci/run installs it)")
def test_a_users_php_runs_as_her_behind_the_front(hosting):
    alice = hosting.names["alice"]
    uid = hosting.account("alice").pw_uid
    status, _, body = get(hosting, f"/~{alice}/cgi-bin/whoami.php")
    assert status == 200, body
    lines = body.decode().splitlines()
    assert lines[0] == f"php uid={uid} euid={uid}"
    assert lines[1] == f"SCRIPT_NAME=/~{alice}/cgi-bin/whoami.php"
    assert lines[2] == "cannot read bob's secret"
