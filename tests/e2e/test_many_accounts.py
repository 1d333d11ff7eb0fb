"""The account kit of the hosting benchmark (tests/support/many_accounts.py):
accounts made in batches are real, locked and isolated, and everything is
removed however the block ends, processes running as the accounts included.
Root only (real accounts); about a second.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import many_accounts as kit
from tests.support.procs import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts")


def names(tag: str, count: int) -> list[str]:
    return [f"tm{tag}{os.getpid() % 100000}u{index}" for index in range(count)]


@pytest.mark.parametrize("ending", [RuntimeError, KeyboardInterrupt])
def test_accounts_homes_and_their_processes_are_removed_however_the_block_ends(ending):
    made = names("e" if ending is RuntimeError else "i", 3)
    with pytest.raises(ending), kit.many_accounts(made, gecos="kit test") as accounts:
        assert kit.existing(made) == made
        shadow = dict(line.split(":")[:2] for line in Path("/etc/shadow").read_text().splitlines())
        for name in made:
            account = pwd.getpwnam(name)
            assert account.pw_dir == str(accounts.home(name)) and account.pw_shell == kit.SHELL
            assert account.pw_gecos == "kit test"
            assert shadow[name] == "!"  # locked: no password can match
            home = os.stat(account.pw_dir)
            assert (home.st_uid, home.st_gid, home.st_mode & 0o777) == (account.pw_uid, account.pw_gid, 0o711)
        assert os.stat(accounts.base).st_mode & 0o777 == 0o755
        # A process as the first account, with a child of its own in another session.
        (accounts.home(made[0]) / "site").mkdir()
        accounts.give_home(made[0])
        parent = accounts.run_as(made[0], ["sh", "-c", "setsid sleep 600 & sleep 600"])
        uids = set(accounts.uids.values())
        deadline = time.monotonic() + 10
        while len(kit.processes_of(uids)) < 2:
            assert time.monotonic() < deadline, "the account's processes did not start"
            time.sleep(0.02)
        assert (accounts.home(made[0]) / "site").stat().st_uid == accounts.uids[made[0]]
        raise ending
    parent.wait(10)
    assert kit.existing(made) == []
    assert kit.processes_of(uids) == []
    assert not accounts.base.exists()
    groups = Path("/etc/group").read_text()
    assert not any(f"\n{name}:" in groups for name in made)


def test_a_name_newusers_refuses_is_a_clear_error_and_nothing_is_left():
    made = [*names("b", 2), "Not-Valid:"]
    with pytest.raises(RuntimeError, match="newusers failed"), kit.many_accounts(made):
        pass
    assert kit.existing(made) == []
    assert subprocess.run(["getent", "group", made[0]], capture_output=True).returncode == 2


def test_the_hosting_bench_refuses_to_run_without_root_and_makes_nothing():
    # As nobody, with the one capability that lets it read this checkout even
    # from a 0700 clone (it stays an unprivileged uid: the script sees euid 65534).
    # setpriv execs the interpreter, so the pid is the script's.
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=+dac_read_search",
                 "--ambient-caps=+dac_read_search"]
    bench = subprocess.Popen([*as_nobody, sys.executable, str(ROOT / "scripts" / "bench_hosting.py"), "--accounts",
                              "3", "--live", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    out, err = bench.communicate(timeout=60)
    assert bench.returncode == 1 and out == ""
    assert err.strip() == ("scripts/bench hosting must run as root: it creates 3 real accounts and runs "
                           "servers as them and as www-data (all removed afterwards)")
    prefix = f"hb{bench.pid % 100000}u"  # the names it would have made
    assert kit.existing([f"{prefix}0000", f"{prefix}0001", f"{prefix}0002", f"{prefix}act"]) == []
