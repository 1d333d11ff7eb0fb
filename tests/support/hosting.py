"""Community hosting with real accounts: what the tests of the distributed
mode and of per-user CGI share.

As root, a test creates accounts (names suffixed with the pid, so parallel
runs don't clash) with homes in a fresh world-traversable directory, starts
personal servers *as their users* and a front (`trioweb --user`) as
www-data. The accounts must be able to run trioweb: when the checkout is
somewhere they cannot read (a clone in a 0700 home or `mktemp -d`), trioweb
is installed for them in a world-readable temporary directory first
(``install_for_accounts``).
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ROOT, Process, trioweb_command


@dataclass(frozen=True)
class Install:
    """What the accounts run: a Python with trioweb, the trioweb command, the test's scripts."""

    python: str
    trioweb: str
    scripts: Path


def _why_others_cannot_use(install: Install) -> str | None:
    """None if ``nobody`` can run the install and read its scripts; else what failed."""
    nobody = pwd.getpwnam("nobody")
    check = "import sys, os, trioweb.cli, rpc; os.listdir(sys.argv[1])"
    try:
        result = subprocess.run([install.python, "-c", check, str(install.scripts)],
                                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True,
                                text=True, timeout=60, cwd="/")
    except OSError as exc:  # the interpreter itself cannot be reached
        return str(exc)
    return None if result.returncode == 0 else result.stderr.strip()[-500:]


@contextmanager
def install_for_accounts(scripts: Path) -> Iterator[Install]:
    """This checkout's install if other accounts can use it, else a copy of
    trioweb installed where they can (a venv in a world-readable temporary
    directory, made from the interpreter the checkout's venv was made from),
    with a copy of ``scripts``. Skips the test if neither can be had."""
    here = Install(sys.executable, trioweb_command(), scripts)
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
        shutil.copytree(scripts, base / "scripts")
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        copy = Install(str(base / "venv" / "bin" / "python"), str(base / "venv" / "bin" / "trioweb"),
                       base / "scripts")
        why = _why_others_cannot_use(copy)
        if why is not None:
            pytest.skip(f"other accounts cannot run trioweb from {base} either ({python} may be unreadable "
                        f"to them): {why}")
        yield copy
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Hosting:
    """Accounts ``tw<user><suffix>`` with homes below ``base``, their personal
    servers and a front. ``users`` maps each user to their GECOS field."""

    def __init__(self, base: Path, suffix: str, install: Install, users: dict[str, str]) -> None:
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

    def create_accounts(self) -> None:
        for user, gecos in self.users.items():
            name = self.names[user]
            subprocess.run(["useradd", "--create-home", "--home-dir", str(self.base / name), "--shell",
                            "/usr/sbin/nologin", "--comment", gecos, "--user-group", name],
                           check=True, capture_output=True)
            os.chmod(self.base / name, 0o711)

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
                "www-data", "--gid", "www-data", "--backend-timeout", "2", "--min-uid", str(min_uid), *options]

    def stop(self) -> None:
        """Stop every process and remove the accounts and their homes."""
        if self.front is not None:
            self.front.kill()
        for process in self.personal.values():
            process.kill()
        for name in self.names.values():
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def front_rss_kib(self) -> int:
        return status_kib(self.front.pid, "VmRSS")

    def get(self, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def new_hosting_base() -> Path:
    base = Path(tempfile.mkdtemp(prefix="trioweb-homes-", dir="/tmp"))
    os.chmod(base, 0o755)
    return base


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)
