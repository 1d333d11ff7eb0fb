"""Real accounts for the community-hosting tests (run as root): an install of
trioweb they can run, and their homes, personal servers and front.

The accounts must be able to run trioweb: when the checkout is somewhere they
cannot read (a clone in a 0700 home or `mktemp -d`), trioweb is installed
for them in a world-readable temporary directory first (the ``install``
fixture, once per module that uses it).
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import ROOT, Process, trioweb_command

HERE = Path(__file__).parent / "hosting"


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
    def __init__(self, base: Path, suffix: str, install: Install, users: Iterable[str]) -> None:
        self.install = install
        self.base = base
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
        return status_kib(self.front.pid, "VmRSS")


def front_command(hosting: Hosting, port: int, *options: str) -> list[str]:
    """A front as the administrator runs it (as www-data), with short timeouts."""
    min_uid = min(hosting.account(u).pw_uid for u in hosting.names)
    return [hosting.install.trioweb, "--user", "--listen", f"tcp:{port}:interface=127.0.0.1", "--uid", "www-data",
            "--gid", "www-data", "--backend-timeout", "2", "--min-uid", str(min_uid), *options]


def get(hosting: Hosting, path: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@contextmanager
def hosting_for(install: Install, users: Iterable[str], label: str) -> Iterator[Hosting]:
    """A Hosting for ``users`` (accounts named tw<user><label><pid>, homes in a fresh
    world-traversable directory); on the way out its processes are killed and
    its accounts and homes removed. The caller creates the accounts."""
    base = Path(tempfile.mkdtemp(prefix="trioweb-homes-", dir="/tmp"))
    os.chmod(base, 0o755)
    hosting = Hosting(base, f"{label}{os.getpid() % 100000}", install, users)
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


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


