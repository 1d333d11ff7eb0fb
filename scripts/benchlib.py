"""Shared pieces of the benchmarks: servers as processes, wrk, RSS, tables.

Every server is its own process pinned to CPU 0 and wrk runs on CPU 1 (when
``taskset`` exists), so each side of a comparison gets one core, the same
one, in the same run. Only loopback addresses are used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIOWEB_PYTHON = str(ROOT / ".venv" / "bin" / "python")
TWISTED_PYTHON = str(ROOT / ".bench-venv-twisted" / "bin" / "python")


def pinned(command: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:
        return ["taskset", "-c", str(cpu), *command]
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


class Server:
    """A server process on CPU 0 that is killed on exit."""

    def __init__(self, command: list[str], port: int | None, cwd: str | Path | None = None,
                 env: dict | None = None):
        """``port`` None: a server that does not listen on TCP (do not wait for it)."""
        self.port = port
        self.process = subprocess.Popen(pinned(command, 0), cwd=cwd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        if port is None:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command} exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{command} did not listen on {port}")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        pid = self.process.pid
        # With taskset the child is the server itself (taskset execs it).
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us_per_request: float = float("nan")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def _percentile(output: str, label: str) -> float:
    """A latency percentile from wrk's --latency table; NaN when wrk printed none (no requests)."""
    # Anchored: a thread-stats line ends in a percentage too ("+/- Stdev": "78.50%").
    found = re.search(r"^\s+" + label + r"%\s+(\S+)", output, re.MULTILINE)
    return _ms(found.group(1)) if found else float("nan")


def wrk(url: str, duration: float, connections: int = 50, server: Server | None = None) -> WrkResult:
    """Load ``url``; with ``server``, also the server's CPU time per request.

    CPU per request is the steadier figure when the machine is shared:
    throughput moves with whatever else runs, CPU time much less.
    """
    cpu_before = server.cpu_seconds() if server else 0.0
    output = subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url], 1),
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _percentile(output, "50")
    p99 = _percentile(output, "99")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    count = int(re.search(r"(\d+) requests in", output).group(1))
    result = WrkResult(rps, p50, p99, errors + (int(non2xx.group(1)) if non2xx else 0), count)
    if server and count:
        result.cpu_us_per_request = (server.cpu_seconds() - cpu_before) / count * 1e6
    return result


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  " + "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
    sys.stdout.flush()
