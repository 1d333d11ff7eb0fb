"""--health-path for load balancers, and every option from TRIOWEB_<OPTION>."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.polling import wait_until_sync
from tests.support.procs import Process, curl, free_port, trioweb, trioweb_command
from trioweb.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _status(url: str) -> tuple[str, bytes]:
    done = curl("-o", "-", "-w", "%{http_code}", url)
    return done.stdout[-3:].decode(), done.stdout[:-3]


def test_health_answers_ok_outside_the_log_and_the_tree(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    (tmp_path / "site").mkdir()
    with trioweb("--path", str(tmp_path / "site"), "--health-path", "/healthz", "--logfile", str(log),
                 "--add-header", "X-Served-By: test", port=port) as server:
        assert _status(f"http://127.0.0.1:{port}/healthz") == ("200", b"ok\n")
        assert _status(f"http://127.0.0.1:{port}/healthz?probe=1") == ("200", b"ok\n")
        head = curl("-I", f"http://127.0.0.1:{port}/healthz").stdout.decode().lower()
        assert "x-served-by: test" in head and "cache-control: no-store" in head
        assert _status(f"http://127.0.0.1:{port}/healthzz")[0] == "404"  # only the path itself
        assert _status(f"http://127.0.0.1:{port}/missing")[0] == "404"
        assert server.stop() == 0
    logged = log.read_text()
    assert "/missing" in logged and "/healthzz" in logged and "/healthz " not in logged and "probe" not in logged


def test_health_checks_are_logged_when_asked(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    with trioweb("--health-path", "/healthz", "--health-log", "--logfile", str(log), port=port) as server:
        assert _status(f"http://127.0.0.1:{port}/healthz")[0] == "200"
        assert server.stop() == 0
    assert '"GET /healthz HTTP/1.1" 200 3' in log.read_text()


def test_after_a_stop_signal_health_fails_during_the_grace_while_requests_are_served():
    port = free_port()
    with trioweb("--health-path", "/healthz", "--health-grace", "30", port=port) as server:
        assert _status(f"http://127.0.0.1:{port}/healthz")[0] == "200"
        server.process.send_signal(signal.SIGTERM)
        wait_until_sync(lambda: _status(f"http://127.0.0.1:{port}/healthz") == ("503", b"draining\n"), timeout=10)
        assert _status(f"http://127.0.0.1:{port}/")[0] == "200"  # still serving
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # a second signal cuts the grace short
        assert server.process.wait(20) == 0
        assert time.monotonic() - started < 20
    assert "health checks fail, stopping in 30 s" in server.output()


def test_a_health_path_must_be_a_path():
    done = subprocess.run([trioweb_command(), "--health-path", "healthz"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "must start with /" in done.stderr


def test_options_come_from_the_environment_and_the_command_line_wins(tmp_path):
    port, other = free_port(), free_port()
    log = tmp_path / "access.log"
    env = {
        "TRIOWEB_LISTEN": f"tcp:{port}:interface=127.0.0.1 tcp:{other}:interface=127.0.0.1",
        "TRIOWEB_LOGFILE": str(log),
        "TRIOWEB_ACCESS_LOG_FORMAT": "json",
        "TRIOWEB_HEALTH_PATH": "/up",
        "TRIOWEB_PROXY_HEADERS": "1",
        "TRIOWEB_MAX_BODY_SIZE": "10",
    }
    with Process([trioweb_command()], port=port, env=env) as server:  # no --listen: the environment's
        assert _status(f"http://127.0.0.1:{other}/up") == ("200", b"ok\n")
        assert _status(f"http://127.0.0.1:{port}/")[0] == "200"
        too_big = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "GET", "-d", "x" * 100,  # a method it takes
                       f"http://127.0.0.1:{port}/")
        assert too_big.stdout == b"413"
        forwarded = curl("-H", "X-Forwarded-For: 192.0.2.44", f"http://127.0.0.1:{port}/")
        assert forwarded.returncode == 0
        assert server.stop() == 0
    assert '"client":"192.0.2.44"' in log.read_text()
    override = free_port()
    with trioweb("--listen", f"tcp:{override}:interface=127.0.0.1", "--access-log-format", "common",
                 port=override, env=env) as server:
        assert curl(f"http://127.0.0.1:{override}/").returncode == 0
        assert server.stop() == 0
    assert log.read_text().splitlines()[-1].startswith("127.0.0.1 - - [")


def test_a_bad_environment_value_is_a_usage_error_naming_it():
    done = subprocess.run([trioweb_command()], env={"TRIOWEB_MAX_CONNECTIONS": "many", "PATH": "/usr/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "'many' is not a valid integer" in done.stderr


@pytest.mark.parametrize("param", [p for p in main.params if p.name not in ("help", "version")],
                         ids=lambda p: p.name)
def test_every_option_s_variable_is_in_the_operations_guide(param):
    assert f"`TRIOWEB_{param.name.upper()}`" in DOCS.read_text(), f"docs/operations.md lacks TRIOWEB_{param.name.upper()}"


def test_the_guide_names_no_variable_the_command_lacks():
    names = {f"TRIOWEB_{p.name.upper()}" for p in main.params}
    documented = set(re.findall(r"`(TRIOWEB_[A-Z_]+)`", DOCS.read_text()))
    assert documented - names <= {"TRIOWEB_PYTHON"}, documented - names
