"""Logs tools can read: goaccess parses the combined log, JSON lines parse,
the server log goes where it is told at the level asked, the journal gets no
timestamps of ours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support.procs import curl, free_port, trioweb, trioweb_command, wait_for_port

ODD_REQUESTS = [
    ["-A", 'agent "with quotes" \\ and caf\xe9', "-e", 'http://ref/"x"'],
    ["-A", "", "-H", "User-Agent:"],
    ["--path-as-is", "-X", "GET"],
    ["-I"],
    ["-X", "POST", "-d", "a=b"],
    ["-H", "Referer: http://x/\xe9\\"],
]


def _traffic(port: int) -> int:
    made = 0
    for extra in ODD_REQUESTS:
        for path in ("/", "/missing%20file", "/a%22b?x=%0a", "/caf%C3%A9"):
            curl(*extra, f"http://127.0.0.1:{port}{path}")
            made += 1
    return made


@pytest.mark.skipif(shutil.which("goaccess") is None,
                    reason="goaccess is not installed (Debian package goaccess, listed in .ci/run)")
@pytest.mark.parametrize("format", ["combined", "combined+duration"])
def test_goaccess_parses_every_combined_line(tmp_path, format):
    port = free_port()
    log = tmp_path / "access.log"
    with trioweb("--logfile", str(log), "--access-log-format", format, port=port) as server:
        made = _traffic(port)
        assert server.stop() == 0
    assert len(log.read_text().splitlines()) == made
    report = subprocess.run(["goaccess", str(log), "--log-format=COMBINED", "--no-global-config", "-o", "json"],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    general = json.loads(report.stdout)["general"]
    assert general["total_requests"] == made
    assert general["failed_requests"] == 0
    assert general["valid_requests"] == made


def test_goaccess_rejects_the_twisted_form_which_stays_available(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    with trioweb("--logfile", str(log), "--access-log-format", "twisted", port=port) as server:
        curl(f"http://127.0.0.1:{port}/")
        assert server.stop() == 0
    assert log.read_text().startswith('"127.0.0.1" - - [')


def test_json_lines_carry_the_duration_and_bad_formats_are_refused(tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    with trioweb("--logfile", str(log), "--access-log-format", "json", port=port) as server:
        made = _traffic(port)
        assert server.stop() == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == made
    assert all(record["client"] == "127.0.0.1" and record["duration_us"] >= 0 for record in records)
    assert {record["status"] for record in records} >= {200, 404}
    refused = subprocess.run([trioweb_command(), "--access-log-format", "apache"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unknown access log format 'apache'" in refused.stderr


def test_log_level_and_error_log_file(tmp_path):
    port = free_port()
    error_log = tmp_path / "server.log"
    with trioweb("--error-log", str(error_log), "--log-level", "warning", port=port) as server:
        assert curl(f"http://127.0.0.1:{port}/").returncode == 0
        assert server.stop() == 0
    assert "serving on" not in error_log.read_text()  # info, below warning
    assert "serving on" not in server.output()  # nor on stderr
    with trioweb("--error-log", str(error_log), port=port) as server:
        assert server.stop() == 0
    assert "trioweb INFO trioweb" in error_log.read_text()


def test_no_timestamps_when_stderr_is_the_journal(tmp_path):
    port = free_port()
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        info = os.fstat(err.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}")
        server = subprocess.Popen([trioweb_command(), "--listen", f"tcp:{port}:interface=127.0.0.1"], env=env,
                                  stderr=err, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port, server)
        finally:
            server.terminate()
            assert server.wait(20) == 0
    first = err_path.read_text().splitlines()[0]
    assert first.startswith("trioweb INFO trioweb"), first


def test_an_access_log_that_cannot_be_opened_or_a_bad_key_is_a_clear_error(tmp_path):
    done = subprocess.run([trioweb_command(), "--logfile", str(tmp_path / "missing" / "access.log")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2  # something to set up first: one line naming the path and the fix
    assert (f"cannot open the log {tmp_path}/missing/access.log: No such file or directory; "
            f"create {tmp_path}/missing") in done.stderr
    done = subprocess.run([trioweb_command(), "--listen", f"ssl:0:privateKey={tmp_path}/none.pem"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and f"cannot read {tmp_path}/none.pem: no such file" in done.stderr
    assert "Traceback" not in done.stderr
