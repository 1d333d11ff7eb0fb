"""A personal server started by socket activation, exiting when idle (`--idle-exit`).

systemd-socket-activate (systemd's own tool) listens on gina's
~/.trioweb-pb as gina (made 0666 as a socket unit's SocketMode would) and starts `trioweb --personal --idle-exit 2` on the
first connection, handing it the listening socket; the server exits after 2 s
without a request, and the loop around the tool listens again (as a systemd
socket unit would, without the loop). Requests through the front before and
after the idle exit are served by two different processes, and the front
logs no error. Runs as root (accounts, uids).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.support.hosting import get, hosted

ACTIVATE = shutil.which("systemd-socket-activate")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids"),
    pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate (Debian package systemd) is not installed"),
]

USERS = {"gina": ("Gina,,,", "personal")}
IDLE_EXIT = 2


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, (), tag="sa") as hosting:
        yield hosting


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_ctime_ns  # an inode number alone may be reused at once


def timed_get(hosting, path: str) -> tuple[int, bytes, float]:
    started = time.monotonic()
    status, _, body = get(hosting, path)
    return status, body, time.monotonic() - started


def test_an_idle_personal_server_exits_and_the_next_request_starts_it_again(hosting):
    home = hosting.home("gina")
    socket_path = home / ".trioweb-pb"
    # What a systemd socket unit does (SocketMode=0666, listening again when the service exits), in sh:
    # systemd-socket-activate makes its socket 0644, which the front (www-data) could not connect to.
    loop = (f"S={socket_path}; while :; do rm -f $S; {ACTIVATE} -l $S {hosting.install.trioweb} --personal "
            f"--path {home / 'site'} --idle-exit {IDLE_EXIT} & child=$!; "
            "until [ -S $S ]; do sleep 0.01; done; chmod 666 $S; wait $child; done")
    activator = hosting.as_user("gina", ["sh", "-c", loop], start_new_session=True)
    try:
        wait_for(lambda: socket_path.exists() and socket_path.stat().st_mode & 0o777 == 0o666,
                 "the socket is listened on")
        first_socket = identity(socket_path)
        status, first_pid, first_latency = timed_get(hosting, f"/~{hosting.names['gina']}/pid.rpy")
        assert status == 200, (activator.output(), hosting.front.output()[-2000:])
        status, again, _ = timed_get(hosting, f"/~{hosting.names['gina']}/pid.rpy")
        assert (status, again) == (200, first_pid)  # still running: the same process
        wait_for(lambda: not Path(f"/proc/{int(first_pid)}").exists(), "the idle server exits",
                 timeout=IDLE_EXIT + 20)
        assert f"no request for {IDLE_EXIT:g} s" in (home / ".trioweb.log").read_text()
        wait_for(lambda: socket_path.exists() and identity(socket_path) != first_socket
                 and socket_path.stat().st_mode & 0o777 == 0o666, "the socket is listened on again")
        status, second_pid, latency = timed_get(hosting, f"/~{hosting.names['gina']}/pid.rpy")
        assert status == 200 and second_pid != first_pid
        print(f"\nactivation latency: first {first_latency * 1000:.0f} ms, after the idle exit "
              f"{latency * 1000:.0f} ms (load {Path('/proc/loadavg').read_text().split()[0]})")
        assert get(hosting, f"/~{hosting.names['gina']}/")[0] == 200
    finally:
        os.killpg(activator.pid, signal.SIGKILL)
        activator.kill()

    def gina_lines() -> list[str]:
        access = (hosting.base / "front-access.log").read_text().splitlines()
        return [line for line in access if f"/~{hosting.names['gina']}/" in line]

    wait_for(lambda: len(gina_lines()) == 4, "the front's access log is flushed (every second)")
    assert all('" 200 ' in line for line in gina_lines()), gina_lines()  # the front saw no error
