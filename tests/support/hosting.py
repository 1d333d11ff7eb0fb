"""Community hosting with real accounts, for the tests that need it (root only).

``installed_for_accounts()`` gives what the accounts run (this checkout, or a
copy of trioweb installed where they can read it); ``accounts(install, users)``
creates accounts and starts nothing; ``hosted(install, users,
personal=...)`` creates accounts (names suffixed with the pid, so parallel
runs don't clash) with homes in a fresh world-traversable directory, starts
the personal servers as their users and the front (``trioweb --user``) as
www-data, and removes it all afterwards. ``tests/e2e/conftest.py`` makes the
install a fixture; each test module says which users it needs.
"""

from __future__ import annotations

import http.client
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ROOT, Process, free_port, trioweb_command

# The scripts a personal site gets (.rpy), and the fake backends.
SCRIPTS = ROOT / "tests" / "e2e" / "hosting"


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


# What the users' own sites are written with in the tests (a Flask app behind
# --personal --wsgi): installed beside trioweb in a copy made for the accounts.
PUBLISHED_WITH = ("flask",)


def _pinned(name: str) -> str:
    """``name`` as the project's test extra pins it."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    return next(spec for spec in extra if re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] == name)


@contextmanager
def installed_for_accounts() -> Iterator[Install]:
    """This checkout's install if other accounts can use it, else a copy of
    trioweb installed where they can (a venv in a world-readable temporary
    directory, made from the interpreter the checkout's venv was made from);
    skips the test with the reason if neither can be had."""
    here = Install(sys.executable, trioweb_command(), SCRIPTS)
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
                 "--disable-pip-version-check", str(ROOT), *map(_pinned, PUBLISHED_WITH)],
                capture_output=True, text=True, timeout=600)
        if built.returncode != 0:
            pytest.skip(f"the checkout is not readable by other accounts, and installing trioweb for them in "
                        f"{base} failed: {built.stderr.strip()[-500:]}")
        shutil.copytree(SCRIPTS, base / "hosting")
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
    """Accounts, their personal servers and a front; ``users`` maps a short
    name to ``(GECOS, what the user publishes)``: "personal" (a personal
    server's site with the hosting scripts), "public_html", "nothing", or
    "hostile" (a home for fake backends)."""

    def __init__(self, base: Path, suffix: str, install: Install,
                 users: dict[str, tuple[str, str]] | Iterable[str]) -> None:
        self.install = install
        self.base = base
        self.users = users
        self.names = {user: f"tw{user}{suffix}" for user in users}
        self.personal: dict[str, Process] = {}
        self.front: Process | None = None
        self.port = 0

    def account(self, user: str) -> pwd.struct_passwd:
        return pwd.getpwnam(self.names[user])

    def home(self, user: str) -> Path:
        return Path(self.account(user).pw_dir)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def give_home(self, user: str) -> None:
        """Make everything in ``user``'s home hers (after the test wrote into it as root)."""
        account = self.account(user)
        for path in [self.home(user), *self.home(user).rglob("*")]:
            os.lchown(path, account.pw_uid, account.pw_gid)

    def as_user(self, user: str, args: list[str], **kwargs) -> Process:
        account = self.account(user)
        return Process(args, user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                       env={"HOME": account.pw_dir, "USER": account.pw_name}, cwd=account.pw_dir, **kwargs)

    def start_personal(self, user: str, *options: str) -> Process:
        """``user``'s personal server (``--path ~/site`` unless ``options`` say otherwise)."""
        home = self.home(user)
        process = self.as_user(user, [self.install.trioweb, "--personal",
                                      *(options or ("--path", str(home / "site")))])
        deadline = time.monotonic() + 20
        while not (home / ".trioweb-pb").exists():
            if process.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{user}'s personal server did not start: {process.output()}")
            time.sleep(0.05)
        self.personal[user] = process
        return process

    def front_command(self, port: int, *options: str) -> list[str]:
        """A front as the administrator runs it (as www-data), with short timeouts."""
        min_uid = min(self.account(u).pw_uid for u in self.users)
        return [self.install.trioweb, "--user", "--listen", f"tcp:{port}:interface=127.0.0.1", "--uid",
                "www-data", "--gid", "www-data", "--backend-timeout", "2", "--min-uid", str(min_uid),
                "--max-connections-per-address", "0", *options]  # every client here is 127.0.0.1

    def front_rss_kib(self) -> int:
        assert self.front is not None
        return status_kib(self.front.pid, "VmRSS")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _create_accounts(hosting: Hosting) -> None:
    for user, (gecos, publishes) in hosting.users.items():
        name = hosting.names[user]
        home = hosting.base / name
        subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                        "--comment", gecos, "--user-group", name], check=True, capture_output=True)
        os.chmod(home, 0o711)
        if publishes == "personal":
            site = home / "site"
            site.mkdir()
            (site / "index.html").write_text(f"<h1>{user}'s personal site</h1>")
            for script in hosting.install.scripts.glob("*.rpy"):
                shutil.copy(script, site / script.name)
        if publishes == "public_html":
            public = home / "public_html"
            public.mkdir()
            (public / "index.html").write_text(f"<h1>{user}'s public_html</h1>")
            (public / "app.rpy").write_text("resource = None  # must never run on the front, nor be shown\n")
            (public / ".secret").write_text("dotfile")
            (public / "notes.txt").write_text("plain notes")
            cgi_bin = public / "cgi-bin"
            cgi_bin.mkdir()
            (cgi_bin / "hello.cgi").write_text("#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho CGI-RAN\n")
            (cgi_bin / "hello.cgi").chmod(0o755)
        hosting.give_home(user)


@contextmanager
def hosting_for(install: Install, users: Iterable[str], tag: str = "") -> Iterator[Hosting]:
    """A Hosting for ``users`` (accounts named tw<user><tag><pid>, homes in a fresh
    world-traversable directory), whose accounts the caller creates; on the way
    out its processes are killed and its accounts and homes removed. ``tag``
    keeps two modules' account names apart."""
    base = Path(tempfile.mkdtemp(prefix="trioweb-homes-", dir="/tmp"))
    os.chmod(base, 0o755)
    hosting = Hosting(base, f"{tag}{os.getpid() % 100000}", install, users)
    try:
        yield hosting
    finally:
        if hosting.front is not None:
            hosting.front.kill()
        for process in hosting.personal.values():
            process.kill()
        for name in hosting.names.values():
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def accounts(install: Install, users: dict[str, tuple[str, str]], tag: str = "") -> Iterator[Hosting]:
    """The accounts of ``users`` (see ``Hosting``) created, nothing started; removed afterwards."""
    with hosting_for(install, users, tag) as hosting:
        _create_accounts(hosting)
        yield hosting


@contextmanager
def hosted(install: Install, users: dict[str, tuple[str, str]], personal: tuple[str, ...],
           *front_options: str, tag: str = "") -> Iterator[Hosting]:
    """Accounts for ``users`` (see ``Hosting``), the personal servers of ``personal``
    running, a front logging to front-access.log; everything removed afterwards."""
    with accounts(install, users, tag) as hosting:
        for user in personal:
            hosting.start_personal(user)
        hosting.port = free_port()
        hosting.front = Process(hosting.front_command(hosting.port, "--logfile",
                                                      str(hosting.base / "front-access.log"), *front_options),
                                port=hosting.port).__enter__()
        yield hosting


def get(hosting: Hosting, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()
