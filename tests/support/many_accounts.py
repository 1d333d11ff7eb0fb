"""Hundreds or thousands of real accounts at once, for the hosting benchmark
(``scripts/bench hosting``) and its tests (root only).

``tests/support/hosting.py`` makes a few accounts with one ``useradd`` each;
here ``newusers`` makes them in batches of ``BATCH`` (each batch holds the
password-file lock for a second or two, so that another process's
``useradd``, which waits up to 15 s for that lock, is never starved), and
``chpasswd -e`` locks their passwords in one call per batch. Homes are in a
fresh world-traversable directory.

``many_accounts()`` removes everything it made on the way out, however the
block ends (an exception, Ctrl-C, SIGTERM turned into an exception by the
caller): every process running as one of its accounts is killed, each
account and its group is deleted with ``userdel``, the homes directory is
removed. Ctrl-C is ignored while that runs, so that a second Ctrl-C cannot
leave half of it undone; what could not be removed is printed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BATCH = 100
SHELL = "/usr/sbin/nologin"


@dataclass
class Accounts:
    """Accounts named ``names`` with their homes in ``base`` (``base / name``)."""

    base: Path
    names: list[str]
    uids: dict[str, int] = field(default_factory=dict)  # filled in once they exist

    def home(self, name: str) -> Path:
        return self.base / name

    def run_as(self, name: str, command: list[str], log: Path | None = None) -> subprocess.Popen:
        """``command`` as user ``name`` (her groups, HOME and USER, in her home), its
        output appended to ``log`` (a file root writes, so the user cannot move it)."""
        account = pwd.getpwnam(name)
        with open(log or os.devnull, "ab") as output:  # the child has its own copy of the descriptor
            return subprocess.Popen(command, user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": account.pw_dir,
                                         "USER": name, "PYTHONUNBUFFERED": "1"},
                                    cwd=account.pw_dir, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT)

    def give_home(self, name: str) -> None:
        """Make everything in ``name``'s home hers (after root wrote into it)."""
        uid = self.uids[name]
        for path in [self.home(name), *self.home(name).rglob("*")]:
            os.lchown(path, uid, uid)  # newusers gives each account a group of its own, same number


def create_accounts(accounts: Accounts, gecos: str = "") -> None:
    """Create ``accounts.names`` (shell nologin, password locked, a group each,
    home ``base/name`` mode 0711), ``BATCH`` at a time."""
    for start in range(0, len(accounts.names), BATCH):
        batch = accounts.names[start:start + BATCH]
        # name:password:uid:gid:gecos:home:shell; no uid or gid: the next free ones, a group per account.
        run(["newusers"], "".join(f"{name}:*:::{gecos}:{accounts.home(name)}:{SHELL}\n" for name in batch))
        # newusers hashes the password it is given; "!" (no hash can match it) locks the account.
        run(["chpasswd", "-e"], "".join(f"{name}:!\n" for name in batch))
        for name in batch:
            accounts.uids[name] = pwd.getpwnam(name).pw_uid
            home = accounts.home(name)
            home.mkdir(exist_ok=True)  # newusers makes it; not every version does
            os.chown(home, accounts.uids[name], accounts.uids[name])
            os.chmod(home, 0o711)


def run(command: list[str], given: str) -> None:
    """``command`` with ``given`` as its input; raises with its message if it fails."""
    result = subprocess.run(command, input=given, text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")


def processes_of(uids: set[int]) -> list[int]:
    """The pids of the live processes whose real or effective uid is one of ``uids`` (a zombie
    is dead: it holds nothing, and it is its parent's to reap, maybe an init that never does)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["State"].split()[0] != "Z" and uids.intersection(int(uid) for uid in fields["Uid"].split()[:2]):
            found.append(int(entry))
    return found


def kill_and_reap(pid: int) -> None:
    """SIGKILL ``pid``, and reap it if it is a child of ours (userdel counts a zombie as
    the account's process; a Popen waiting for it later sees it gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # gone, or someone else's child
        pass


def existing(names: list[str]) -> list[str]:
    """Those of ``names`` that are accounts (read from the password file, not cached)."""
    known = {line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines()}
    return [name for name in names if name in known]


def remove_accounts(accounts: Accounts) -> list[str]:
    """Kill every process of the accounts, delete the accounts and their homes;
    returns what is left (accounts, processes, the homes directory), [] if nothing."""
    uids = set(accounts.uids.values())
    uids.update(pwd.getpwnam(name).pw_uid for name in existing(accounts.names) if name not in accounts.uids)
    for _ in range(50):  # a process may fork while being killed (an activation loop)
        pids = processes_of(uids)
        if not pids:
            break
        for pid in pids:
            kill_and_reap(pid)
        time.sleep(0.05)
    for name in existing(accounts.names):
        for _ in range(3):  # the password files' lock may be busy with another process's useradd
            if subprocess.run(["userdel", name], capture_output=True).returncode == 0:
                break
            time.sleep(1)
    shutil.rmtree(accounts.base, ignore_errors=True)
    left = [f"account {name}" for name in existing(accounts.names)]
    left += [f"process {pid}" for pid in processes_of(uids)]
    if accounts.base.exists():
        left.append(f"directory {accounts.base}")
    return left


@contextmanager
def many_accounts(names: list[str], gecos: str = "") -> Iterator[Accounts]:
    """Accounts named ``names`` (see ``create_accounts``) with homes in a fresh
    directory; all removed on the way out (see the module's docstring)."""
    accounts = Accounts(Path(tempfile.mkdtemp(prefix="trioweb-many-homes-", dir="/tmp")), names)
    try:
        os.chmod(accounts.base, 0o755)
        create_accounts(accounts, gecos)
        yield accounts
    finally:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            left = remove_accounts(accounts)
        finally:
            signal.signal(signal.SIGINT, interrupt)
        if left:
            print(f"could not remove: {', '.join(left)}", file=sys.stderr)
