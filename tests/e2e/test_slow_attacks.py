"""Slow attacks against a real ``trioweb --path`` with slowhttptest, and a soak (both marked slow).

    scripts/test -m slow tests/e2e/test_slow_attacks.py

The figures in docs/http.md come from the same scripts run longer
(``scripts/attack_probe.py``, ``scripts/soak.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support.procs import ROOT

pytestmark = pytest.mark.slow


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                            timeout=timeout)
    print(result.stdout, result.stderr)
    return result


def test_a_normal_client_keeps_p99_under_100_ms_during_each_attack():
    if shutil.which("slowhttptest") is None:
        pytest.skip("slowhttptest is not installed (.ci/run installs the Debian package)")
    result = run_script("attack_probe.py", "--duration", "10", "--max-p99-ms", "100", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\n") >= 8  # a line per scenario


def test_soak_mixed_traffic_five_minutes_bounded_growth():
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (.ci/run installs the Debian package)")
    result = run_script("soak.py", "--duration", "300", timeout=500)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "after: RSS" in result.stdout
