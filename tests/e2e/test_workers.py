"""``--workers N`` as an administrator runs it: a supervisor and N worker
processes on one port; SIGHUP and SIGTERM under wrk load fail no request, a
killed worker comes back, and combinations that cannot work are refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import curl, free_port, trioweb, trioweb_command
from tests.support.reloadable import reload_three_times_under_load, write_root_module

needs_wrk = pytest.mark.skipif(subprocess.run(["which", "wrk"], capture_output=True).returncode != 0,
                               reason="wrk is not installed (Debian package wrk, listed in .ci/run)")



def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {int(child) for child in found}


def _served_by(port: int) -> int:
    done = curl("-si", f"http://127.0.0.1:{port}/")
    return int(re.search(rb"x-pid: (\d+)", done.stdout, re.IGNORECASE).group(1))


def _site(tmp_path, text: str = "first tree\n") -> tuple[dict, object]:
    content = tmp_path / "content.txt"
    content.write_text(text)
    write_root_module(tmp_path / "workroot.py", content)
    return {"PYTHONPATH": str(tmp_path)}, content


def _started(server) -> set[int]:
    wait_until_sync(lambda: "supervising 2 workers" in server.output(), timeout=30)
    workers = _children(server.pid)
    assert len(workers) == 2
    return workers


@needs_wrk
def test_sighup_under_load_with_two_workers_fails_nothing_and_both_reload(tmp_path):
    port = free_port()
    env, content = _site(tmp_path)
    log = tmp_path / "access.log"
    with trioweb("--workers", "2", "--class", "workroot.Root", "--logfile", str(log),
                 "--listen", f"tcp:{port}:interface=127.0.0.1", port=port, env=env) as server:
        workers = _started(server)
        requests = reload_three_times_under_load(server.process, f"http://127.0.0.1:{port}/",
                                                 lambda: content.write_text("second tree\n"))
        assert requests > 100
        assert _children(server.pid) == workers  # reloaded in place, none restarted
        answers = {curl(f"http://127.0.0.1:{port}/").stdout for _ in range(20)}
        assert answers == {b"second tree\n"}
        assert server.stop() == 0
    assert server.output().count("reloaded") == 6  # three SIGHUPs, two workers
    lines = log.read_text().splitlines()
    assert len(lines) >= requests
    # Two processes append to one file: every line is whole.
    assert all(re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET / HTTP/1\.1" 200 \d+ "-" "[^"]*"', line)
               for line in lines), [line for line in lines if '"GET / HTTP/1.1" 200' not in line][:3]


class _OneRequestClients:
    """Threads that each make request after request, one per connection, and
    sort them: answered (200), failed (connected, sent, not answered: a
    dropped request) and refused (no connection: the server was gone)."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.counts = {"answered": 0, "failed": 0, "refused": 0}
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _count(self, what: str, detail: str = "") -> None:
        with self._lock:
            self.counts[what] += 1
            if detail:
                self.failures.append(detail)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                self._count("refused")
                time.sleep(0.01)
                continue
            with sock:
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                except OSError as exc:
                    self._count("failed", repr(exc))
                    continue
            if answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"first tree\n"):
                self._count("answered")
            else:
                self._count("failed", repr(answer[:100]))

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.counts


def test_sigterm_under_load_with_two_workers_answers_every_request_sent(tmp_path):
    port = free_port()
    env, _content = _site(tmp_path)
    pidfile = tmp_path / "web.pid"
    with trioweb("--workers", "2", "--class", "workroot.Root", "--logfile", os.devnull, "--pidfile", str(pidfile),
                 "--listen", f"tcp:{port}:interface=127.0.0.1", port=port, env=env) as server:
        workers = _started(server)
        assert pidfile.read_text().strip() == str(server.pid)  # the supervisor's
        clients = _OneRequestClients(port)
        wait_until_sync(lambda: clients.counts["answered"] > 100, timeout=30)
        time.sleep(1)  # under load for a while
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        time.sleep(0.5)  # clients now find the port closed
        counts = clients.stop()
        assert counts["failed"] == 0, (counts, clients.failures[:5])
        assert counts["answered"] > 100 and counts["refused"] > 0, counts
    assert not pidfile.exists()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert len(re.findall(r"worker \d: got SIGTERM: stopping", server.output())) == 2  # each worker drained


def test_sigterm_under_load_with_one_process_answers_every_request_sent(tmp_path):
    """The lone server holds new connections out too (the same socket filter) and
    answers what is queued before its listener closes."""
    port = free_port()
    env, _content = _site(tmp_path)
    with trioweb("--class", "workroot.Root", "--logfile", os.devnull,
                 "--listen", f"tcp:{port}:interface=127.0.0.1", port=port, env=env) as server:
        clients = _OneRequestClients(port)
        wait_until_sync(lambda: clients.counts["answered"] > 100, timeout=30)
        time.sleep(1)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        time.sleep(0.5)
        counts = clients.stop()
        assert counts["failed"] == 0, (counts, clients.failures[:5])
        assert counts["answered"] > 100 and counts["refused"] > 0, counts


def test_a_killed_worker_is_started_again_and_serving_goes_on(tmp_path):
    port = free_port()
    env, _content = _site(tmp_path)
    with trioweb("--workers", "2", "--class", "workroot.Root", "--listen", f"tcp:{port}:interface=127.0.0.1",
                 port=port, env=env) as server:
        workers = _started(server)
        victim = workers.pop()
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):  # the other worker serves meanwhile
            assert curl(f"http://127.0.0.1:{port}/").stdout == b"first tree\n"
        wait_until_sync(lambda: "serving on" in server.output().split("killed by SIGKILL")[-1], timeout=30)
        replacement = _children(server.pid) - workers
        assert len(replacement) == 1 and victim not in replacement
        assert f"(pid {victim}) was killed by SIGKILL" in server.output()
        served = {_served_by(port) for _ in range(40)}
        assert served <= workers | replacement
        assert server.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_drop_privileges_after_the_supervisor_binds():
    port = free_port()
    with trioweb("--workers", "2", "--uid", "nobody", "--gid", "nogroup", port=port) as server:
        workers = _started(server)
        for pid in workers:
            status = Path(f"/proc/{pid}/status").read_text()
            ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line[:4] in ("Uid:", "Gid:")}
            assert ids == {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4}, (pid, ids)
        for _ in range(4):  # whichever worker answers
            assert b"is running" in curl("-s", f"http://127.0.0.1:{port}/").stdout
        assert server.stop() == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_the_status_page_shows_the_worker_that_answers(tmp_path):
    port = free_port()
    with trioweb("--workers", "2", "--user", "--status-path", "/status",
                 "--listen", f"tcp:{port}:interface=127.0.0.1", port=port) as server:
        workers = _started(server)
        page = curl(f"http://127.0.0.1:{port}/status").stdout.decode()
        row = re.search(r"<td>(\d) of 2</td><td>(\d+)</td>", page)
        assert row and int(row.group(2)) in workers, page
        text = curl(f"http://127.0.0.1:{port}/status?format=prometheus").stdout.decode()
        requests = re.search(r'trioweb_worker_requests_total\{worker="\d",pid="(\d+)"\} (\d+)', text)
        assert requests and int(requests.group(1)) in workers and int(requests.group(2)) >= 1, text
        assert re.search(r'trioweb_worker_connections\{worker="\d",pid="\d+"\} 1\b', text), text  # this one
        assert server.stop() == 0


def test_one_process_shows_itself_as_worker_0_of_1(tmp_path):
    port = free_port()
    with trioweb("--user", "--status-path", "/status", "--listen", f"tcp:{port}:interface=127.0.0.1",
                 port=port) as server:
        for _ in range(3):
            curl(f"http://127.0.0.1:{port}/")
        text = curl(f"http://127.0.0.1:{port}/status?format=prometheus").stdout.decode()
        assert f'trioweb_worker_requests_total{{worker="0",pid="{server.pid}"}} 4' in text, text
        # 5: the test's first connection (waiting for the port), three curls, this one
        assert f'trioweb_worker_connections_total{{worker="0",pid="{server.pid}"}} 5' in text, text
        assert server.stop() == 0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--personal", "--workers", "2"], "a personal server (--personal) serves one user from one process"),
    (["--workers", "0"], "0 is not in the range 1<=x<=256"),
])
def test_combinations_that_cannot_work_are_usage_errors(tmp_path, arguments, message):
    (tmp_path / "public_html").mkdir()
    done = subprocess.run([trioweb_command(), *arguments], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, HOME=str(tmp_path)))
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_message(tmp_path):
    port = free_port()
    done = subprocess.run([trioweb_command(), "--workers", "2", "--class", "nosuchmodule.Root",
                           "--listen", f"tcp:{port}:interface=127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot load 'nosuchmodule.Root'" in done.stderr
    assert "before it was ready: stopping" in done.stderr
