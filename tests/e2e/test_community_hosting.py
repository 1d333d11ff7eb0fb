"""Community hosting with real accounts, following docs/community-hosting.md.

As root, the test creates accounts (alice, bob, ...) with homes in a fresh
world-traversable directory, starts each personal server *as its user*, and
the front (`trioweb --user`) as www-data, then talks to the front with curl
and raw sockets. Without root, it is skipped: distinct uids are the point.

The accounts must be able to run trioweb: when the checkout is somewhere they
cannot read (a clone in a 0700 home or `mktemp -d`), trioweb is installed
for them in a world-readable temporary directory first (tests/support/hosting.py).
"""

from __future__ import annotations

import os
import pwd
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.hosting import Hosting, get, hosted, status_kib
from tests.support.procs import Process, curl, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

USERS = {
    # name: (GECOS, what the user publishes)
    "alice": ("Alice Liddell,,,", "personal"),
    "bob": ("Bob <b>Builder</b>,,,", "public_html"),
    "carol": ("Carol,,,", "nothing"),
    "dave": ("Dave,,,", "personal"),  # killed mid-response
    "erin": ("Erin,,,", "personal"),  # hangs
    "mallory": ("Mallory,,,", "hostile"),
}


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, ("alice", "dave", "erin")) as hosting:
        yield hosting


def test_the_front_runs_as_www_data(hosting):
    uid_line = next(line for line in Path(f"/proc/{hosting.front.pid}/status").read_text().splitlines()
                    if line.startswith("Uid:"))
    assert uid_line.split()[1] == str(pwd.getpwnam("www-data").pw_uid)


def test_alice_is_served_by_her_own_process_running_as_her(hosting):
    status, _, body = get(hosting, f"/~{hosting.names['alice']}/whoami.rpy")
    account = hosting.account("alice")
    assert status == 200 and body == f"{account.pw_uid} {account.pw_name}".encode()
    status, _, body = get(hosting, f"/~{hosting.names['alice']}/")
    assert status == 200 and b"alice's personal site" in body
    status, _, same = get(hosting, f"/users/{hosting.names['alice']}/")
    assert status == 200 and same == body


def test_bob_is_served_from_public_html_without_scripts_or_dotfiles(hosting):
    bob = hosting.names["bob"]
    status, _, body = get(hosting, f"/~{bob}/")
    assert status == 200 and b"bob's public_html" in body
    assert get(hosting, f"/~{bob}/notes.txt")[2] == b"plain notes"
    for hidden in ("app.rpy", ".secret", "cgi-bin/hello.cgi"):
        status, _, body = get(hosting, f"/~{bob}/{hidden}")
        assert status == 404 and b"resource = None" not in body and b"dotfile" not in body
        assert b"CGI-RAN" not in body and b"echo" not in body  # the front never runs a CGI, nor shows it


def test_tilde_without_slash_redirects(hosting):
    status, headers, _ = get(hosting, f"/~{hosting.names['alice']}?x=1")
    assert status == 302
    assert headers["Location"] == f"http://127.0.0.1:{hosting.port}/~{hosting.names['alice']}/?x=1"


def test_index_lists_who_publishes_with_escaped_real_names(hosting):
    status, _, body = get(hosting, "/")
    assert status == 200
    assert b"Alice Liddell" in body and f'href="~{hosting.names["bob"]}/"'.encode() in body
    assert b"Bob &lt;b&gt;Builder&lt;/b&gt;" in body and b"<b>Builder" not in body
    assert hosting.names["carol"].encode() not in body  # publishes nothing
    assert b"root" not in body and b"nobody" not in body


@pytest.mark.parametrize("path", ["/~root/", "/~nobody/", "/~no-such-user/", "/~{carol}/", "/users/root/",
                                  "/~{alice}%00/", "/~../", "/~%2e%2e/", "/~www-data/", "/~{alice}%2f/"])
def test_negative_cases_are_all_the_same_404(hosting, path):
    path = path.format(alice=hosting.names["alice"], carol=hosting.names["carol"])
    status, _, body = get(hosting, path)
    assert status == 404
    reference = get(hosting, "/~no-such-user/")[2]
    assert body == reference  # nothing tells an existing account from a missing one


def test_stale_socket_of_a_dead_personal_server_is_a_fast_502(hosting):
    user = hosting.names["carol"]
    path = hosting.home("carol") / ".trioweb-pb"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    os.lchown(path, hosting.account("carol").pw_uid, hosting.account("carol").pw_gid)
    try:
        started = time.monotonic()
        status, _, body = get(hosting, f"/~{user}/")
        assert status == 502 and time.monotonic() - started < 1.5
        assert str(path).encode() not in body
    finally:
        path.unlink()


def test_socket_that_is_a_regular_file_is_not_a_personal_server(hosting):
    path = hosting.home("carol") / ".trioweb-pb"
    path.write_text("not a socket")
    os.lchown(path, hosting.account("carol").pw_uid, hosting.account("carol").pw_gid)
    try:
        assert get(hosting, f"/~{hosting.names['carol']}/")[0] == 404
    finally:
        path.unlink()


def test_killed_mid_response_aborts_the_client_connection_and_others_are_fine(hosting):
    dave = hosting.names["dave"]
    with socket.create_connection(("127.0.0.1", hosting.port), timeout=10) as client:
        client.sendall(f"GET /~{dave}/sleep.rpy?lines=20 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = client.recv(65536)
        assert b"200 OK" in received and b"line 0" in received
        hosting.personal["dave"].process.kill()
        rest = b""
        while chunk := client.recv(65536):
            rest += chunk
        assert not (received + rest).endswith(b"0\r\n\r\n"), "a truncated body was passed off as complete"
    assert get(hosting, f"/~{hosting.names['alice']}/whoami.rpy")[0] == 200
    # The dead server left its socket behind: a fast 502 now.
    assert get(hosting, f"/~{dave}/")[0] == 502


def test_hung_personal_server_gives_504_and_others_stay_served(hosting):
    erin = hosting.names["erin"]
    results = {}

    def hung():
        results["erin"] = get(hosting, f"/~{erin}/sleep.rpy?s=30", timeout=20)[0]

    thread = threading.Thread(target=hung)
    thread.start()
    time.sleep(0.3)
    assert get(hosting, f"/~{hosting.names['bob']}/")[0] == 200  # while erin's request hangs
    thread.join(20)
    assert results["erin"] == 504


def test_a_flooded_personal_server_gets_503s_and_others_stay_served(hosting):
    """--max-user-requests 2: 2 of erin's requests go to her (hung) server, 4 x 2 wait
    in line, the rest are refused at once; alice is served meanwhile (A8, A12)."""
    erin = hosting.names["erin"]
    port = free_port()
    with Process(hosting.front_command(port, "--max-user-requests", "2"), port=port) as front:
        flood = []
        try:
            for i in range(2 + 8 + 10):
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                client.sendall(f"GET /~{erin}/sleep.rpy?s=30&n={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                flood.append(client)
            answered = {}
            deadline = time.monotonic() + 1.5  # well before the ones in flight time out (2 s)
            while len(answered) < 10 and time.monotonic() < deadline:
                ready, _, _ = select.select([c for c in flood if c not in answered], [], [], 0.1)
                for client in ready:
                    answered[client] = client.recv(65536)
            refused = list(answered.values())
            assert len(refused) == 10
            for response in refused:
                assert response.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 5\r\n" in response
                assert b".trioweb-pb" not in response and erin.encode() not in response
            status, _, body = get(hosting, f"/~{hosting.names['alice']}/whoami.rpy")
            assert status == 200 and hosting.names["alice"].encode() in body
            waiting = [c for c in flood if c not in answered]
            assert not select.select(waiting, [], [], 0)[0], "erin's requests in line were answered early"
        finally:
            for client in flood:
                client.close()
        output = front.output()
    assert "queue full" in output and f"{erin}/.trioweb-pb" in output  # the log says whose and why


def run_fake(hosting: Hosting, behaviour: str) -> Process:
    path = hosting.home("mallory") / ".trioweb-pb"
    process = hosting.as_user("mallory", [hosting.install.python, str(hosting.install.scripts / "fake_backend.py"),
                                          str(path), behaviour])
    deadline = time.monotonic() + 15
    while "ready" not in process.output():
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(process.output())
        time.sleep(0.05)
    return process


@pytest.mark.parametrize(
    "behaviour, status, logged",
    [
        ("garbage", 502, "HandshakeError"),
        ("oversized", 502, "HandshakeError"),
        ("crlf", 502, "has CR, LF or NUL"),
        ("hang", 504, "TooSlowError"),
    ],
)
def test_hostile_personal_servers_get_502_or_504(hosting, behaviour, status, logged):
    with run_fake(hosting, behaviour):
        got, headers, _ = get(hosting, f"/~{hosting.names['mallory']}/")
        assert got == status
        assert "Set-Cookie" not in headers and "X-A" not in headers
    (hosting.home("mallory") / ".trioweb-pb").unlink(missing_ok=True)
    assert logged in hosting.front.output()  # refused for this reason, not another
    assert get(hosting, f"/~{hosting.names['alice']}/whoami.rpy")[0] == 200


def test_symlink_to_alices_socket_does_not_serve_alice_under_mallory(hosting):
    link = hosting.home("mallory") / ".trioweb-pb"
    os.symlink(hosting.home("alice") / ".trioweb-pb", link)
    os.lchown(link, hosting.account("mallory").pw_uid, hosting.account("mallory").pw_gid)
    try:
        status, _, body = get(hosting, f"/~{hosting.names['mallory']}/whoami.rpy")
        assert status == 404 and hosting.names["alice"].encode() not in body
    finally:
        link.unlink()


def test_socket_owned_by_mallory_but_served_by_root_is_refused(hosting, tmp_path):
    # Passes the lstat checks; only SO_PEERCRED can tell: the peer runs as root.
    path = hosting.home("mallory") / ".trioweb-pb"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    os.lchown(path, hosting.account("mallory").pw_uid, hosting.account("mallory").pw_gid)
    os.chmod(path, 0o666)
    try:
        status, _, _ = get(hosting, f"/~{hosting.names['mallory']}/")
        assert status == 502
        server.settimeout(0.5)
        try:
            peer, _ = server.accept()
            peer.settimeout(0.5)
            assert peer.recv(100) == b""  # nothing was sent to the impostor
        except TimeoutError:
            pass
    finally:
        server.close()
        path.unlink()


def test_a_disallowed_uid_is_refused_by_the_personal_server(hosting):
    bob = hosting.account("bob")
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
        "print(repr(s.recv(100)))\n"
    )
    result = subprocess.run([hosting.install.python, "-c", probe, str(hosting.home("alice") / ".trioweb-pb")],
                            user=bob.pw_uid, group=bob.pw_gid, extra_groups=[], capture_output=True,
                            text=True, timeout=20)
    assert result.stdout.strip() == "b''"  # dropped before a byte was exchanged
    assert f"refused a connection from uid {bob.pw_uid}" in hosting.personal["alice"].output() + \
        (hosting.home("alice") / ".trioweb.log").read_text()


def test_big_bodies_stream_through_the_front_in_bounded_memory(hosting):
    alice = hosting.names["alice"]
    before = hosting.front_rss_kib()
    download = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                    hosting.url(f"/~{alice}/big.rpy?mib=200"), timeout=120)
    assert download.stdout == b"200 %d" % (200 * 1024 * 1024)
    upload_file = hosting.base / "upload.bin"
    with open(upload_file, "wb") as f:
        f.truncate(50 * 1024 * 1024)
    upload = curl("--data-binary", f"@{upload_file}", "-H", "Content-Type: application/octet-stream",
                  hosting.url(f"/~{alice}/upload.rpy"), timeout=120)
    assert upload.stdout == b"%d" % (50 * 1024 * 1024), upload.stdout[:200]
    growth = status_kib(hosting.front.pid, "VmHWM") - before
    assert growth < 30 * 1024, f"front peak memory grew by {growth} KiB"


def open_files(pid: int) -> set[str]:
    """What the process's descriptors point to (those closed meanwhile left out)."""
    paths = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            paths.add(os.readlink(fd))
        except FileNotFoundError:
            pass
    return paths


def test_a_file_only_alice_can_read_is_sent_by_the_front_from_the_descriptor_she_passed(hosting):
    """Her personal server passes the open file; the front, running as www-data,
    sends it without ever being able to open it by its path (mode 0600)."""
    alice, account = hosting.names["alice"], hosting.account("alice")
    path = hosting.home("alice") / "site" / "private.bin"
    content = os.urandom(1 << 20) * 24
    path.write_bytes(content)
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o600)
    with socket.create_connection(("127.0.0.1", hosting.port), timeout=20) as client:
        client.sendall(f"GET /~{alice}/private.bin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += client.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % len(content) in head
        # The client reads no further: the front is sending from its copy of the descriptor.
        deadline = time.monotonic() + 10
        while str(path) not in open_files(hosting.front.pid):
            assert time.monotonic() < deadline, "the front never held the file open"
            time.sleep(0.05)
        while len(body) < len(content) and (chunk := client.recv(1 << 20)):
            body += chunk
    assert body == content
    path.unlink()


def test_a_hundred_requests_to_one_user_leave_another_users_pages_fast(hosting):
    alice = hosting.names["alice"]
    done = []

    def slow():
        done.append(get(hosting, f"/~{alice}/sleep.rpy?s=0.5", timeout=30)[0])

    threads = [threading.Thread(target=slow) for _ in range(100)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    status, _, _ = get(hosting, f"/~{hosting.names['bob']}/")
    finished_before_bob = len(done)
    assert status == 200
    assert finished_before_bob < 50, "bob's page waited for alice's requests"
    for thread in threads:
        thread.join(30)
    assert done.count(200) == 100
