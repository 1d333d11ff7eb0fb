"""systemd: socket activation through the real systemd-socket-activate, and
sd_notify to a fake NOTIFY_SOCKET (READY, RELOADING, STOPPING, WATCHDOG)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import Process, curl, free_port, trioweb, trioweb_command

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed "
                                                             "(Debian package systemd, listed in .ci/run)")


def _activated(listen: list[str], *args: str, names: str | None = None, port: int | None = None) -> Process:
    command = [ACTIVATE, *(f"--listen={where}" for where in listen)]
    if names:
        command.append(f"--fdname={names}")
    return Process([*command, trioweb_command(), *args], port=port)


@needs_activate
def test_the_sockets_systemd_passes_are_served_without_listen(tmp_path):
    port, other = free_port(), free_port()
    unix = tmp_path / "web.sock"
    with _activated([f"127.0.0.1:{port}", f"127.0.0.1:{other}", str(unix)], port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/").stdout.startswith(b"<!DOCTYPE html>")
        assert curl(f"http://127.0.0.1:{other}/").returncode == 0
        assert curl("--unix-socket", str(unix), "http://x/").returncode == 0
        assert "serving on systemd:0, systemd:1, systemd:2" in server.output()
        assert server.stop() == 0


@needs_activate
def test_twisted_systemd_endpoint_by_index_domain_and_name(tmp_path):
    port, other = free_port(), free_port()
    listen = ["--listen", "systemd:domain=INET:index=1", "--listen", "systemd:name=first"]
    with _activated([f"127.0.0.1:{port}", f"127.0.0.1:{other}"], *listen, names="first:second",
                    port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/").returncode == 0
        assert curl(f"http://127.0.0.1:{other}/").returncode == 0
        assert "serving on systemd:1, systemd:first" in server.output()
        assert server.stop() == 0


@needs_activate
def test_a_personal_server_is_socket_activated_too(tmp_path):
    unix = tmp_path / "pb.sock"
    (tmp_path / "site").mkdir()
    with _activated([str(unix)], "--personal", "--path", str(tmp_path / "site"), "--logfile", "-") as server:
        wait_until_sync(unix.exists, timeout=10)
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(unix))  # starts it
        wait_until_sync(lambda: "publishing to front servers on systemd:0" in server.output(), timeout=15)
        assert server.stop() == 0


@pytest.mark.parametrize("listen, message", [
    ("systemd:index=0", "systemd passed no sockets"),
    ("systemd:domain=IPX:index=0", "domain must be INET, INET6 or UNIX"),
])
def test_systemd_endpoints_without_systemd_are_clear_errors(listen, message):
    done = subprocess.run([trioweb_command(), "--listen", listen], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and message in done.stderr, done.stderr


@needs_activate
def test_a_systemd_index_out_of_range_or_of_the_wrong_family_is_refused(tmp_path):
    port = free_port()
    for listen, message in ((["systemd:index=3"], "index 3 is out of range"),
                            (["systemd:domain=UNIX:index=0"], "not AF_UNIX"),
                            (["systemd:name=api"], "no socket named 'api'"),
                            (["systemd:index=0", "systemd:name=web"], "socket 0 is named twice")):
        arguments = [part for one in listen for part in ("--listen", one)]
        with _activated([f"127.0.0.1:{port}"], *arguments, names="web") as server:
            wait_until_sync(lambda: _connects(port), timeout=10)  # the first connection starts trioweb
            assert server.process.wait(20) != 0
            assert message in server.output()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def _notifications(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_sd_notify_ready_reloading_stopping_and_the_watchdog(tmp_path):
    port = free_port()
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        messages: list[str] = []
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        with trioweb(port=port, env=env) as server:
            wait_until_sync(lambda: messages.extend(_notifications(sock)) or any("READY=1" in m for m in messages))
            ready = next(m for m in messages if "READY=1" in m)
            assert f"MAINPID={server.pid}" in ready and "STATUS=serving on" in ready
            wait_until_sync(lambda: messages.extend(_notifications(sock)) or
                            sum(m == "WATCHDOG=1" for m in messages) >= 3, timeout=10)
            server.process.send_signal(signal.SIGHUP)
            wait_until_sync(lambda: messages.extend(_notifications(sock)) or
                            any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in messages))
            wait_until_sync(lambda: messages.extend(_notifications(sock)) or
                            [m for m in messages if m != "WATCHDOG=1"][-1] == "READY=1")
            assert server.stop() == 0
        messages.extend(_notifications(sock))
    assert "STOPPING=1" in messages


def test_an_abstract_or_dead_notify_socket_does_not_stop_the_server(tmp_path):
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = f"trioweb-test-{os.getpid()}"
        sock.bind("\0" + name)
        sock.settimeout(10)
        with trioweb(port=port, env={"NOTIFY_SOCKET": "@" + name}) as server:
            assert "READY=1" in sock.recv(4096).decode()
            assert server.stop() == 0
    with trioweb(port=port, env={"NOTIFY_SOCKET": str(tmp_path / "nobody")}) as server:
        assert curl(f"http://127.0.0.1:{port}/").returncode == 0
        assert server.stop() == 0
    assert "cannot notify systemd" in server.output()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (systemd)")
def test_the_example_units_verify(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "examples" / "systemd"
    for unit in examples.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/local/bin/trioweb", trioweb_command()))
    # The personal units are user units; verified as system ones (there is no user manager here), %h is root's home.
    for pair in (("trioweb.socket", "trioweb.service"), ("trioweb-personal.socket", "trioweb-personal.service")):
        done = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(tmp_path / name) for name in pair)],
                              capture_output=True, text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"),
                              timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
