"""Real accounts for the community-hosting tests: what the accounts run
(``Install``), creating and removing them, running processes as them, the
front as the administrator runs it.

As root only: the tests that use these skip themselves otherwise. Account
names carry a suffix (the test process's pid) so that parallel runs do not
clash. When the checkout is somewhere the accounts cannot read (a clone in a
0700 home or ``mktemp -d``), trioweb is installed for them in a
world-readable temporary venv, with the applications the tests publish
(Flask, at the pin of the project's ``test`` extra).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import ROOT, Process, trioweb_command

HERE = Path(__file__).parent
# What the accounts' Python must import, besides trioweb and rpc.
PUBLISHED_WITH = ("flask",)


@dataclass(frozen=True)
class Install:
    """What the accounts run: a Python with trioweb, the trioweb command, the hosting scripts."""

    python: str
    trioweb: str
    scripts: Path


class CannotInstall(Exception):
    """No install the accounts can run could be had (the reason is the message)."""


def why_others_cannot_use(install: Install) -> str | None:
    """None if ``nobody`` can run the install and read its scripts; else what failed."""
    nobody = pwd.getpwnam("nobody")
    imports = ", ".join(("trioweb.cli", "rpc", *PUBLISHED_WITH))
    check = f"import sys, {imports}; open(sys.argv[1]).close()"
    try:
        result = subprocess.run([install.python, "-c", check, str(install.scripts / "fake_backend.py")],
                                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True,
                                text=True, timeout=60, cwd="/")
    except OSError as exc:  # the interpreter itself cannot be reached
        return str(exc)
    return None if result.returncode == 0 else result.stderr.strip()[-500:]


def _pinned(name: str) -> str:
    """``name`` as the project's test extra pins it."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    return next(spec for spec in extra if spec.split(">")[0].split("=")[0].split("<")[0].strip() == name)


@contextmanager
def install_for_accounts() -> Iterator[Install]:
    """This checkout's install if other accounts can use it, else a copy of
    trioweb installed where they can (a venv in a world-readable temporary
    directory, made from the interpreter the checkout's venv was made from).
    Raises ``CannotInstall`` when neither works."""
    here = Install(sys.executable, trioweb_command(), HERE)
    if why_others_cannot_use(here) is None:
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
            raise CannotInstall(f"the checkout is not readable by other accounts, and installing trioweb for them "
                                f"in {base} failed: {built.stderr.strip()[-500:]}")
        shutil.copytree(HERE, base / "hosting")
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        copy = Install(str(base / "venv" / "bin" / "python"), str(base / "venv" / "bin" / "trioweb"),
                       base / "hosting")
        why = why_others_cannot_use(copy)
        if why is not None:
            raise CannotInstall(f"other accounts cannot run trioweb from {base} either ({python} may be "
                                f"unreadable to them): {why}")
        yield copy
    finally:
        shutil.rmtree(base, ignore_errors=True)


def create_account(name: str, gecos: str, homes: Path) -> pwd.struct_passwd:
    """A new account ``name`` with its home (mode 0711) in ``homes``."""
    home = homes / name
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                    "--comment", gecos, "--user-group", name], check=True, capture_output=True)
    os.chmod(home, 0o711)
    return pwd.getpwnam(name)


def give_home(account: pwd.struct_passwd) -> None:
    """Make everything in the account's home its own (after a test wrote it as root)."""
    home = Path(account.pw_dir)
    for path in [home, *home.rglob("*")]:
        os.lchown(path, account.pw_uid, account.pw_gid)


def delete_account(name: str) -> None:
    subprocess.run(["userdel", "--remove", name], capture_output=True)


def as_user(account: pwd.struct_passwd, args: list[str], **kwargs) -> Process:
    """``args`` run as the account, in its home, with its HOME and USER."""
    return Process(args, user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                   env={"HOME": account.pw_dir, "USER": account.pw_name}, cwd=account.pw_dir, **kwargs)


def start_personal(install: Install, account: pwd.struct_passwd, *options: str) -> Process:
    """The account's ``trioweb --personal OPTIONS``, once its socket is there."""
    home = Path(account.pw_dir)
    process = as_user(account, [install.trioweb, "--personal", *options])
    deadline = time.monotonic() + 20
    while not (home / ".trioweb-pb").exists():
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{account.pw_name}'s personal server did not start: {process.output()}")
        time.sleep(0.05)
    return process


def front_command(install: Install, port: int, min_uid: int, *options: str) -> list[str]:
    """A front as the administrator runs it (as www-data), with short timeouts."""
    return [install.trioweb, "--user", "--listen", f"tcp:{port}:interface=127.0.0.1", "--uid", "www-data",
            "--gid", "www-data", "--backend-timeout", "2", "--min-uid", str(min_uid), *options]
