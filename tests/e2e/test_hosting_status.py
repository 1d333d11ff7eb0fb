"""`trioweb --user --status-path /.status`: the backends' status, with real accounts.

alice's personal server answers, carol's socket is stale (502): the page and
the Prometheus text say so; a client the allow-list does not name gets the
ordinary 404. frank's server answers every request with a forbidden header
until his circuit breaker opens; the real one that replaces it is probed and
closes it. Runs as root (accounts, uids).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.hosting import get, hosted
from tests.support.procs import Process, free_port, trioweb_command

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

USERS = {"alice": ("Alice,,,", "personal"), "carol": ("Carol,,,", "nothing"),
         "frank": ("Frank,,,", "personal")}  # frank's server breaks the protocol, then is replaced


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, ("alice",), "--status-path", "/.status", "--user-status", tag="st") as hosting:
        yield hosting


def metrics(hosting) -> dict[tuple[str, tuple], float]:
    status, headers, body = get(hosting, "/.status?format=prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_the_status_page_shows_a_backend_that_answers(hosting):
    alice = hosting.names["alice"]
    for _ in range(3):
        assert get(hosting, f"/~{alice}/whoami.rpy")[0] == 200
    status, headers, body = get(hosting, "/.status")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"<td>{alice}</td><td>up</td><td>closed</td>".encode() in body
    found = metrics(hosting)
    assert found[("trioweb_backend_up", (("backend", alice),))] == 1
    assert found[("trioweb_backend_requests_total", (("backend", alice),))] >= 3
    assert found[("trioweb_backend_response_head_seconds_count", (("backend", alice),))] >= 3
    assert 0 < found[("trioweb_backend_response_head_seconds", (("backend", alice), ("quantile", "0.99")))] < 2


def carol_fails(hosting) -> None:
    """A request to carol's stale socket (root's, bound then closed): a 502, and a row for her."""
    carol = hosting.account("carol")
    path = hosting.home("carol") / ".trioweb-pb"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    os.lchown(path, carol.pw_uid, carol.pw_gid)
    try:
        assert get(hosting, f"/~{carol.pw_name}/")[0] == 502
    finally:
        path.unlink()


def test_a_dead_backend_is_down_with_its_502s_and_last_error(hosting):
    carol = hosting.account("carol")
    carol_fails(hosting)
    body = get(hosting, "/.status")[2]
    # Its last error (root's stale socket: the front may not even connect) and when.
    assert re.search(rf"<td>{carol.pw_name}</td><td>down</td><td>closed</td><td>\w+Error: [^<]+</td><td>[-0-9: ]+ UTC</td>".encode(),
                     body)
    found = metrics(hosting)
    assert found[("trioweb_backend_up", (("backend", carol.pw_name),))] == 0
    assert found[("trioweb_backend_errors_total", (("backend", carol.pw_name), ("code", "502")))] >= 1
    assert ("trioweb_backend_last_error_timestamp_seconds", (("backend", carol.pw_name),)) in found


def test_a_user_sees_her_own_row_only(hosting):
    alice, carol = hosting.names["alice"], hosting.names["carol"]
    assert get(hosting, f"/~{alice}/whoami.rpy")[0] == 200
    carol_fails(hosting)
    status, _, body = get(hosting, f"/~{alice}/.status")
    assert status == 200 and f"<td>{alice}</td><td>up</td>".encode() in body and carol.encode() not in body
    status, _, text = get(hosting, f"/~{alice}/.status?format=prometheus")
    names = {sample.labels["backend"] for family in text_string_to_metric_families(text.decode())
             for sample in family.samples}
    assert status == 200 and names == {alice}
    for nobody in ("/~nobody/.status", "/~no-such-user/.status"):
        status, _, body = get(hosting, nobody)
        assert status == 404 and body == get(hosting, "/~nobody/")[2]


def test_a_client_not_allowed_gets_the_ordinary_404(hosting):
    port = free_port()
    with Process(hosting.front_command(port, "--status-path", "/.status", "--status-allow", "192.0.2.0/24"),
                 port=port):
        hosting_port, hosting.port = hosting.port, port
        try:
            status, _, body = get(hosting, "/.status?format=prometheus")
            assert status == 404 and body == get(hosting, "/~nobody/")[2]
        finally:
            hosting.port = hosting_port


@pytest.mark.parametrize("options, message", [
    (["--status-path", "/s"], "--status-path can only be used with --user"),
    (["--user", "--status-path", "s"], "must start with /"),
    (["--user", "--status-path", "/s", "--status-allow", "nonsense"], "'nonsense' is neither"),
    (["--user-domain", "example.com"], "--user-domain can only be used with --user"),
    (["--user", "--user-domain", "exa mple.com"], "is not a domain name"),
    (["--idle-exit", "5"], "--idle-exit can only be used with --personal"),
    (["--max-user-rate", "2"], "--max-user-rate can only be used with --user"),
    (["--install-units"], "--install-units can only be used with --personal"),
    (["--user-status"], "--user-status can only be used with --user"),
    (["--personal", "--idle-exit", "0"], "--idle-exit"),
])
def test_bad_options_are_one_line_errors(options, message, tmp_path):
    done = subprocess.run([trioweb_command(), "--listen", f"tcp:{free_port()}:interface=127.0.0.1", *options],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_backend_failing_repeatedly_is_cut_off_then_probed(hosting):
    frank = hosting.names["frank"]
    path = hosting.home("frank") / ".trioweb-pb"
    fake = hosting.as_user("frank", [hosting.install.python, str(hosting.install.scripts / "fake_backend.py"),
                                     str(path), "crlf"])
    try:
        deadline = time.monotonic() + 15
        while "ready" not in fake.output():
            assert fake.process.poll() is None and time.monotonic() < deadline, fake.output()
            time.sleep(0.05)
        for _ in range(5):  # each reaches it and gets a bad response
            status, headers, _ = get(hosting, f"/~{frank}/")
            assert status == 502 and "Retry-After" not in headers
        status, headers, _ = get(hosting, f"/~{frank}/")
        assert status == 502 and headers["Retry-After"] == "1"  # at once, not sent
        assert metrics(hosting)[("trioweb_backend_circuit_open", (("backend", frank),))] == 1
        assert f"<td>{frank}</td><td>down</td><td>open</td>".encode() in get(hosting, "/.status")[2]
    finally:
        fake.kill()
    path.unlink()
    hosting.start_personal("frank")
    time.sleep(1.2)  # the breaker's first delay
    status, _, body = get(hosting, f"/~{frank}/whoami.rpy")
    assert status == 200 and body.endswith(frank.encode())
    assert metrics(hosting)[("trioweb_backend_circuit_open", (("backend", frank),))] == 0
