"""Issue 11: churn. Twenty users' personal servers are killed (SIGKILL or
SIGTERM) and restarted at random for two minutes while a client loads every
user through the front; only the user being restarted may see errors, and
the front's memory and open files stay flat.

Slow (about 2.5 minutes): ``scripts/test -m slow`` (or
``.venv/bin/python -m pytest -m slow tests/e2e/test_hosting_churn.py``).
``TRIOWEB_CHURN_SECONDS`` shortens or lengthens it. Runs as root with real
accounts (skipped otherwise), like tests/e2e/test_community_hosting.py.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tests.support.hosting import Hosting, hosting_for, status_kib
from tests.support.procs import Process, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids"),
]

USERS = tuple(f"c{index:02d}" for index in range(20))
CHURN_SECONDS = float(os.environ.get("TRIOWEB_CHURN_SECONDS", "120"))
WARM_UP = 10.0  # seconds before the front's RSS and fds are first taken
GRACE = 1.5  # after a restart, how long its user's errors still count as the restart's


@pytest.fixture(scope="module")
def hosting(install):
    with hosting_for(install, USERS, "k") as hosting:
        for user in USERS:
            name = hosting.names[user]
            home = hosting.base / name
            subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                            "--user-group", name], check=True, capture_output=True)
            os.chmod(home, 0o711)
            (home / "site").mkdir()
            shutil.copy(install.scripts / "whoami.rpy", home / "site" / "whoami.rpy")
            account = hosting.account(user)
            for path in [home, *home.rglob("*")]:
                os.lchown(path, account.pw_uid, account.pw_gid)
        for user in USERS:
            hosting.start_personal(user)
        hosting.port = free_port()
        hosting.front = Process(hosting.front_command(hosting.port), port=hosting.port).__enter__()
        yield hosting


def front_usage(hosting: Hosting) -> tuple[int, int]:
    """(RSS in KiB, open fds) of the front."""
    return status_kib(hosting.front.pid, "VmRSS"), len(os.listdir(f"/proc/{hosting.front.pid}/fd"))


def test_restarting_users_disturb_no_one_else_and_the_front_stays_flat(hosting):
    restarts: dict[str, list[tuple[float, float]]] = {user: [] for user in USERS}  # (from, to) per user
    restarting: dict[str, float] = {}  # user → since when
    results: list[tuple[str, float, float, int]] = []  # (user, start, end, status)
    stop = threading.Event()
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = None
        while not stop.is_set():
            user = rng.choice(USERS)
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", hosting.port, timeout=15)
                conn.request("GET", f"/~{hosting.names[user]}/whoami.rpy")
                response = conn.getresponse()
                body = response.read()
                status = response.status
                if status == 200 and hosting.names[user].encode() not in body:
                    status = -2  # someone else's answer
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = -1
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                results.append((user, started, time.monotonic(), status))

    def churn() -> None:
        rng = random.Random(11)
        while not stop.is_set():
            user = rng.choice(USERS)
            with lock:
                restarting[user] = time.monotonic()
            process = hosting.personal.pop(user)
            if rng.random() < 0.5:
                process.process.send_signal(signal.SIGKILL)  # restarted before it is reaped
                hosting.start_personal(user)
                process.process.wait()
            else:
                process.stop(signal.SIGTERM)
                hosting.start_personal(user)
            with lock:
                restarts[user].append((restarting.pop(user), time.monotonic() + GRACE))
            stop.wait(rng.uniform(0.2, 1.0))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    churner = threading.Thread(target=churn)
    for thread in [*threads, churner]:
        thread.start()
    try:
        time.sleep(WARM_UP)
        rss_before, fds_before = front_usage(hosting)
        time.sleep(max(0.0, CHURN_SECONDS - WARM_UP))
    finally:
        stop.set()
        for thread in [*threads, churner]:
            thread.join(60)
    time.sleep(1)
    rss_after, fds_after = front_usage(hosting)

    def during_restart(user: str, started: float, ended: float) -> bool:
        return any(begin <= ended and started <= end for begin, end in restarts[user])

    failed = [(user, status) for user, started, ended, status in results if status != 200]
    wrongly = [(user, status, round(started - t0, 2), [(round(b - t0, 2), round(e - t0, 2)) for b, e in restarts[user]])
               for user, started, ended, status in results
               if status != 200 and not during_restart(user, started, ended)]
    if wrongly:
        names = {hosting.names[user] for user, *_ in wrongly}
        print("\n".join(line for line in hosting.front.output().splitlines() if any(n in line for n in names))[-4000:])
    total_restarts = sum(map(len, restarts.values()))
    print(f"churn: {len(results)} requests, {total_restarts} restarts, {len(failed)} errors during restarts, "
          f"front RSS {rss_before} → {rss_after} KiB, fds {fds_before} → {fds_after}")
    assert len(results) > 1000 and total_restarts >= CHURN_SECONDS / 5
    assert not wrongly, f"users not being restarted saw errors: {wrongly[:20]}"
    # Between a stopped server removing its socket and the next one listening the user
    # publishes nothing (404); never a reset connection or another user's page.
    assert all(status in (404, 502, 503, 504) for _, status in failed), failed[:20]
    assert rss_after - rss_before < 10 * 1024, (rss_before, rss_after)
    assert fds_after - fds_before <= 10, (fds_before, fds_after)
