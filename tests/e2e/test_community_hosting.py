"""Community hosting with real accounts, following docs/community-hosting.md.

As root, the test creates accounts (alice, bob, ...) with homes in a fresh
world-traversable directory, starts each personal server *as its user*, and
the front (`trioweb --user`) as www-data, then talks to the front with curl
and raw sockets. Without root, it is skipped: distinct uids are the point.

The accounts must be able to run trioweb: when the checkout is somewhere they
cannot read (a clone in a 0700 home or `mktemp -d`), trioweb is installed
for them in a world-readable temporary directory first.
"""

from __future__ import annotations

import http.client
import os
import pwd
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ROOT, Process, curl, free_port, trioweb_command

HERE = Path(__file__).parent / "hosting"
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


@dataclass(frozen=True)
class Install:
    """What the accounts run: a Python with trioweb, the trioweb command, the hosting scripts."""

    python: str
    trioweb: str
    scripts: Path


def _why_others_cannot_use(install: Install) -> str | None:
    """None if ``nobody`` can run the install and read its scripts; else what failed."""
    nobody = pwd.getpwnam("nobody")
    check = "import sys, trioweb.cli, rpc; open(sys.argv[1]).close()"
    try:
        result = subprocess.run([install.python, "-c", check, str(install.scripts / "fake_backend.py")],
                                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True,
                                text=True, timeout=60, cwd="/")
    except OSError as exc:  # the interpreter itself cannot be reached
        return str(exc)
    return None if result.returncode == 0 else result.stderr.strip()[-500:]


@pytest.fixture(scope="module")
def install():
    """This checkout's install if other accounts can use it, else a copy of
    trioweb installed where they can (a venv in a world-readable temporary
    directory, made from the interpreter the checkout's venv was made from)."""
    here = Install(sys.executable, trioweb_command(), HERE)
    if _why_others_cannot_use(here) is None:
        yield here
        return
    base = Path(tempfile.mkdtemp(prefix="trioweb-install-"))
    try:
        os.chmod(base, 0o755)
        python = Path(sys.base_prefix) / "bin" / "python3"
        built = subprocess.run(
            [str(python), "-m", "venv", str(base / "venv")], capture_output=True, text=True, timeout=120)
        if built.returncode == 0:
            built = subprocess.run(
                [str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", str(ROOT)], capture_output=True, text=True, timeout=600)
        if built.returncode != 0:
            pytest.skip(f"the checkout is not readable by other accounts, and installing trioweb for them in "
                        f"{base} failed: {built.stderr.strip()[-500:]}")
        shutil.copytree(HERE, base / "hosting")
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        copy = Install(str(base / "venv" / "bin" / "python"), str(base / "venv" / "bin" / "trioweb"),
                       base / "hosting")
        why = _why_others_cannot_use(copy)
        if why is not None:
            pytest.skip(f"other accounts cannot run trioweb from {base} either ({python} may be unreadable "
                        f"to them): {why}")
        yield copy
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Hosting:
    def __init__(self, base: Path, suffix: str, install: Install) -> None:
        self.install = install
        self.base = base
        self.names = {user: f"tw{user}{suffix}" for user in USERS}
        self.personal: dict[str, Process] = {}
        self.front: Process | None = None
        self.port = 0

    def account(self, user: str) -> pwd.struct_passwd:
        return pwd.getpwnam(self.names[user])

    def home(self, user: str) -> Path:
        return Path(self.account(user).pw_dir)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def as_user(self, user: str, args: list[str], **kwargs) -> Process:
        account = self.account(user)
        return Process(args, user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                       env={"HOME": account.pw_dir, "USER": account.pw_name}, cwd=account.pw_dir, **kwargs)

    def start_personal(self, user: str) -> Process:
        home = self.home(user)
        process = self.as_user(user, [self.install.trioweb, "--personal", "--path", str(home / "site")])
        deadline = time.monotonic() + 20
        while not (home / ".trioweb-pb").exists():
            if process.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{user}'s personal server did not start: {process.output()}")
            time.sleep(0.05)
        self.personal[user] = process
        return process

    def front_rss_kib(self) -> int:
        return _status_kib(self.front.pid, "VmRSS")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _create_accounts(hosting: Hosting) -> None:
    for user, (gecos, publishes) in USERS.items():
        name = hosting.names[user]
        home = hosting.base / name
        subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                        "--comment", gecos, "--user-group", name], check=True, capture_output=True)
        account = pwd.getpwnam(name)
        os.chmod(home, 0o711)
        if publishes == "personal":
            site = home / "site"
            site.mkdir()
            (site / "index.html").write_text(f"<h1>{user}'s personal site</h1>")
            for script in ("whoami.rpy", "big.rpy", "upload.rpy", "sleep.rpy"):
                shutil.copy(hosting.install.scripts / script, site / script)
        if publishes == "public_html":
            public = home / "public_html"
            public.mkdir()
            (public / "index.html").write_text(f"<h1>{user}'s public_html</h1>")
            (public / "app.rpy").write_text("resource = None  # must never run on the front, nor be shown\n")
            (public / ".secret").write_text("dotfile")
            (public / "notes.txt").write_text("plain notes")
        for path in [home, *home.rglob("*")]:
            os.lchown(path, account.pw_uid, account.pw_gid)


@pytest.fixture(scope="module")
def hosting(install):
    base = Path(tempfile.mkdtemp(prefix="trioweb-homes-", dir="/tmp"))
    os.chmod(base, 0o755)
    hosting = Hosting(base, str(os.getpid() % 100000), install)
    try:
        _create_accounts(hosting)
        for user in ("alice", "dave", "erin"):
            hosting.start_personal(user)
        hosting.port = free_port()
        hosting.front = Process(front_command(hosting, hosting.port, "--logfile", str(base / "front-access.log")),
                                port=hosting.port).__enter__()
        yield hosting
    finally:
        if hosting.front is not None:
            hosting.front.kill()
        for process in hosting.personal.values():
            process.kill()
        for name in hosting.names.values():
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def front_command(hosting: Hosting, port: int, *options: str) -> list[str]:
    """A front as the administrator runs it (as www-data), with short timeouts."""
    min_uid = min(hosting.account(u).pw_uid for u in USERS)
    return [hosting.install.trioweb, "--user", "--listen", f"tcp:{port}:interface=127.0.0.1", "--uid", "www-data",
            "--gid", "www-data", "--backend-timeout", "2", "--min-uid", str(min_uid),
            "--max-connections-per-address", "0", *options]  # every client here is 127.0.0.1


def get(hosting: Hosting, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


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
    for hidden in ("app.rpy", ".secret"):
        status, _, body = get(hosting, f"/~{bob}/{hidden}")
        assert status == 404 and b"resource = None" not in body and b"dotfile" not in body


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
    with Process(front_command(hosting, port, "--max-user-requests", "2"), port=port) as front:
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
    growth = _status_kib(hosting.front.pid, "VmHWM") - before
    assert growth < 30 * 1024, f"front peak memory grew by {growth} KiB"


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
