"""``trioweb`` as a user runs it: the installed command, real ports, curl."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import Process, curl, free_port, trioweb, trioweb_command

APPS = {"PYTHONPATH": str(Path(__file__).parent)}


def test_version_and_help():
    version = subprocess.run([trioweb_command(), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "trioweb" in version.stdout
    helptext = subprocess.run([trioweb_command(), "--help"], capture_output=True, text=True).stdout
    assert "--listen" in helptext and "Examples:" in helptext and "--max-body-size" in helptext


def test_bad_listen_string_is_a_usage_error():
    result = subprocess.run([trioweb_command(), "--listen", "tcp:nope"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "tcp:nope" in result.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([trioweb_command(), "--listen", f"tcp:{port}:interface=127.0.0.1"],
                                capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_builtin_page_keepalive_and_sigterm_exit_0():
    port = free_port()
    with trioweb(port=port) as server:
        result = curl("-v", f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/missing")
        assert b"trioweb" in result.stdout and b"is running" in result.stdout
        assert b"Re-using existing connection" in result.stderr  # keep-alive across both
        assert b"HTTP/1.1 404" in result.stderr
        assert server.stop() == 0
        assert '"GET / HTTP/1.1" 200' in server.output()  # access log on stdout by default


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_sigint_and_sigquit_also_stop_cleanly(sig):
    port = free_port()
    with trioweb(port=port) as server:
        assert server.stop(sig) == 0
        assert f"got {sig.name}: stopping" in server.output()


def _signalled_as_soon_as_it_accepts(sig: signal.Signals, connect: Callable[[], None], *args: str) -> tuple[int, str]:
    """Start ``trioweb ARGS``, send ``sig`` the moment ``connect()`` first
    succeeds (no pause between the tries), and return (exit status, output)."""
    server = Process([trioweb_command(), *args])
    with server:
        deadline = time.monotonic() + 30
        while server.process.poll() is None and time.monotonic() < deadline:
            try:
                connect()
            except OSError:
                continue
            server.process.send_signal(sig)
            break
        return server.process.wait(30), server.output()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT, signal.SIGTERM])
def test_a_stop_signal_the_moment_the_port_opens_still_stops_cleanly(sig):
    """The signal receiver is installed before the listeners open: a stop
    signal that arrives as soon as a client can connect is a clean stop,
    never the default action (a KeyboardInterrupt traceback, a core dump)."""
    for _ in range(12):
        port = free_port()

        def connect(port: int = port) -> None:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        status, output = _signalled_as_soon_as_it_accepts(sig, connect, "--listen", f"tcp:{port}:interface=127.0.0.1")
        assert (status, f"got {sig.name}: stopping" in output) == (0, True), output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_a_personal_server_signalled_the_moment_its_socket_opens_stops_cleanly(sig, tmp_path):
    for attempt in range(12):
        path = tmp_path / f"pb{attempt}"

        def connect(path: Path = path) -> None:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))

        status, output = _signalled_as_soon_as_it_accepts(sig, connect, "--personal", "--path", str(tmp_path),
                                                          "--listen", f"unix:{path}")
        assert (status, f"got {sig.name}: stopping" in output) == (0, True), output
        assert not path.exists()


def test_add_header_on_every_response_including_errors_and_leaf_roots():
    port = free_port()
    with trioweb("--class", "apps.Leaf", "--add-header", "X-Frame-Options: DENY",
                 "--add-header", "X-Test:  spaced  ", port=port, env=APPS):
        for path in ("/", "/deep/path"):
            result = curl("-si", f"http://127.0.0.1:{port}{path}")
            assert b"X-Frame-Options: DENY" in result.stdout
            assert b"X-Test: spaced" in result.stdout
            assert b"leaf " + path.encode() in result.stdout
    port = free_port()
    with trioweb("--add-header", "X-Frame-Options: DENY", port=port):
        missing = curl("-si", f"http://127.0.0.1:{port}/nope").stdout
        assert missing.startswith(b"HTTP/1.1 404") and b"X-Frame-Options: DENY" in missing


def test_tracebacks_only_when_asked():
    port = free_port()
    with trioweb("--class", "apps.Fails", port=port, env=APPS) as server:
        body = curl("-s", f"http://127.0.0.1:{port}/").stdout
        assert b"Processing Failed" in body and b"failure detail" not in body
        assert "failure detail" in server.output()  # but it is logged
    port = free_port()
    with trioweb("--class", "apps.Fails", "--display-tracebacks", port=port, env=APPS):
        body = curl("-s", f"http://127.0.0.1:{port}/").stdout
        assert b"&lt;b&gt;failure detail&lt;/b&gt;" in body


def test_logfile_and_pidfile(tmp_path):
    port = free_port()
    log, pidfile = tmp_path / "access.log", tmp_path / "web.pid"
    with trioweb("--logfile", str(log), "--pidfile", str(pidfile), port=port) as server:
        assert int(pidfile.read_text()) == server.pid
        curl("-s", "-A", 'agent "quoted" caf\xe9', "-e", "http://ref/", f"http://127.0.0.1:{port}/")
        assert server.stop() == 0
    assert not pidfile.exists()
    line = log.read_text()
    assert line.startswith("127.0.0.1 - - [")  # combined, the default
    assert '"GET / HTTP/1.1" 200 ' in line
    assert '"http://ref/" "agent \\"quoted\\" caf\\xc3\\xa9"' in line


def test_unix_listener_with_curl(tmp_path):
    path = tmp_path / "web.sock"
    with trioweb("--listen", f"unix:{path}:mode=600") as server:
        # Listening starts after the mode is set: a socket that accepts has its mode.
        wait_until_sync(lambda: _accepts(path))
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        result = curl("--unix-socket", str(path), "http://localhost/")
        assert b"is running" in result.stdout
        assert server.stop() == 0
    assert not path.exists() and not Path(str(path) + ".lock").exists()


def test_graceful_stop_finishes_requests_in_flight():
    port = free_port()
    with trioweb("--class", "apps.Slow", port=port, env=APPS) as server:
        results = {}

        def fetch():
            results["slow"] = curl("-s", f"http://127.0.0.1:{port}/?seconds=2")

        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        time.sleep(0.6)
        idle = socket.create_connection(("127.0.0.1", port))  # an idle keep-alive client
        server.process.send_signal(signal.SIGTERM)
        idle.settimeout(5)
        assert idle.recv(100) == b""  # closed at once, not after the keep-alive timeout
        time.sleep(0.3)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()  # listener is closed
        fetcher.join(20)
        assert results["slow"].returncode == 0
        assert results["slow"].stdout.count(b"line") == 8  # the in-flight response completed
        assert server.process.wait(20) == 0


def test_drain_timeout_cancels_what_is_too_slow():
    port = free_port()
    with trioweb("--class", "apps.Slow", "--drain-timeout", "1", port=port, env=APPS) as server:
        slow = subprocess.Popen(["curl", "-s", f"http://127.0.0.1:{port}/?seconds=30"], stdout=subprocess.PIPE)
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        out, _errors = slow.communicate(timeout=10)
        assert slow.returncode != 0  # curl saw the chunked body cut short, not a complete response


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_uid_gid_drop_privileges_after_binding():
    port = free_port()
    with trioweb("--uid", "nobody", "--gid", "nogroup", port=port) as server:
        status = Path(f"/proc/{server.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["65534"] * 4
        assert b"is running" in curl("-s", f"http://127.0.0.1:{port}/").stdout
        assert server.stop() == 0


def _open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files line in /proc/PID/limits")


@pytest.mark.parametrize("hard, expected_soft", [(8192, 3 * 1024 + 64), (1000, 1000)])
def test_the_open_files_limit_is_raised_for_max_connections(hard, expected_soft):
    import resource

    def start_low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    port = free_port()
    with trioweb(port=port, preexec_fn=start_low) as server:
        assert _open_files_limits(server.pid) == (expected_soft, hard)
        assert server.stop() == 0
    if hard < 3 * 1024 + 64:
        assert "open files are limited to 1000 (hard limit)" in server.output()


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
