"""``scripts/bench hosting`` made small (100 accounts, 5 personal servers), to
prove its machinery: every account's page comes from the right process
(the bench checks each one before loading, and stops at a wrong answer),
no request fails under load, socket activation is measured, and nothing is
left afterwards, also when the bench is interrupted with Ctrl-C half-way.

Slow (about a minute): ``scripts/test -m slow tests/e2e/test_hosting_scale.py``.
Root only. The figures of the full run are in docs/community-hosting.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.many_accounts import existing, processes_of
from tests.support.procs import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids"),
]

BENCH = ROOT / "scripts" / "bench_hosting.py"
ACCOUNTS, LIVE = 100, 5


def account_names(bench_pid: int) -> list[str]:
    prefix = f"hb{bench_pid % 100000}u"
    return [*(f"{prefix}{index:04d}" for index in range(ACCOUNTS)), f"{prefix}act"]


def test_a_small_hosting_bench_serves_every_account_right_with_no_error_and_leaves_nothing(tmp_path):
    figures = tmp_path / "figures.json"
    bench = subprocess.Popen([sys.executable, str(BENCH), "--accounts", str(ACCOUNTS), "--live", str(LIVE),
                              "--duration", "3", "--activations", "3", "--json", str(figures)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = bench.communicate(timeout=300)
    assert bench.returncode == 0, output[-4000:]
    report = json.loads(figures.read_text())
    steps = report["timings"]
    setups = [row["setup"] for row in report["rows"]]
    assert "trioweb --user" in setups
    assert "twistd web --user" in setups or any(r.startswith("twistd") for r in report["skipped"]), output
    for setup in setups:
        assert f"check every account through {setup}" in steps  # each page its own account's, or no row
    for row in report["rows"]:
        assert row["errors"] == 0 and row["requests"] > 100, row
        assert len(row["personal_rss_mib"]) == LIVE and min(row["personal_rss_mib"]) > 0, row
        assert row["front_fds"] > 0 and row["front_rss_mib"] > 0, row
    assert len(report["activation_ms"]) == 3 and len(report["warm_ms"]) == 3, output[-4000:]
    assert report["left_behind"] == []
    assert existing(account_names(bench.pid)) == []
    assert "left behind: nothing" in output


def test_ctrl_c_half_way_removes_every_account_home_and_process():
    bench = subprocess.Popen([sys.executable, str(BENCH), "--accounts", str(ACCOUNTS), "--live", str(LIVE),
                              "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    names = account_names(bench.pid)
    seen = []
    try:
        assert bench.stdout is not None
        for line in bench.stdout:  # wait until the personal servers and the front run
            seen.append(line)
            if line.startswith("check every account through trioweb --user"):
                break
        else:
            pytest.fail("".join(seen)[-4000:])
        uids = set()
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] in names:
                uids.add(int(fields[2]))
        homes = {Path(line.split(":")[5]).parent for line in Path("/etc/passwd").read_text().splitlines()
                 if line.split(":")[0] in names}
        assert len(uids) == len(names) and len(homes) == 1
        deadline = time.monotonic() + 30
        while len(processes_of(uids)) < LIVE:
            assert time.monotonic() < deadline, "".join(seen)
            time.sleep(0.05)
        bench.send_signal(signal.SIGINT)
        rest, _ = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode != 0 and "KeyboardInterrupt" in rest
    assert existing(names) == []
    assert processes_of(uids) == []
    assert not any(home.exists() for home in homes)
