"""Shared pieces of the benchmarks: servers as processes, wrk, RSS, tables.

Every server is its own process pinned to CPU 0 and wrk runs on CPU 1 (when
``taskset`` exists), so each side of a comparison gets one core, the same
one, in the same run. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIOWEB_PYTHON = str(ROOT / ".venv" / "bin" / "python")
TWISTED_PYTHON = str(ROOT / ".bench-venv-twisted" / "bin" / "python")
# Other servers compared with (gunicorn, hypercorn, uvicorn): their own venv, made by scripts/bench.
APPS_BIN = ROOT / ".bench-venv-apps" / "bin"
# uvicorn on asyncio is the issues' "Python ceiling" (the event loop in
# Python, the parser in C); on uvloop (its default when installed with the
# "standard" extra) the event loop is C too, shown for information.
UVICORN_LOOPS = (("uvicorn-asyncio", "asyncio"), ("uvicorn-uvloop", "uvloop"))


def uvicorn_command(loop: str, port: int, app: str, access_log: bool = False) -> list[str]:
    """uvicorn with the httptools parser, one worker, on ``loop``; with
    ``access_log``, at its default log level, which writes a line per request
    to its stdout (the bench's ``Server`` sends it to /dev/null)."""
    return [str(APPS_BIN / "uvicorn"), "--http", "httptools", "--loop", loop, "--workers", "1",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "info" if access_log else "warning", app]


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
        """User plus system CPU time the server has used so far, its live
        child processes included (a gunicorn master and its worker)."""
        return sum(_cpu_seconds(pid) for pid in _process_tree(self.process.pid))

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


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(_process_tree(int(child)))
    return found


def measure_each(servers: dict[str, tuple[list[str], int]], measure: Callable[..., tuple[str, ...]],
                 *args: object) -> list[tuple[str, ...]]:
    """The rows of ``measure(name, command, port, *args)`` for each server;
    one that fails is reported and left out, and the others go on."""
    rows = []
    for name, (command, port) in servers.items():
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(measure(name, command, port, *args))
        except Exception as exc:
            print(f"{name} failed: {exc}", file=sys.stderr)
    return rows


def nginx_conf(work: Path, name: str, http: str) -> Path:
    """An nginx configuration file in ``work`` for one worker in the
    foreground, its files all in ``work`` (named after ``name``), with
    ``http`` as the body of its ``http`` block."""
    conf = work / f"{name}.conf"
    conf.write_text(f"""\
daemon off;
master_process off;
worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fastcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
{http}}}
""")
    return conf


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us_per_request: float = float("nan")
    other_load: float = float("nan")  # cores used by processes that are not the benchmark's during the run


# A run during which processes other than the benchmark's (its servers, wrk)
# used more than this many cores is flagged by ``table``.
BUSY_OTHER_LOAD = 0.25
# The other processes' load during each wrk run since the last table, in run order.
_other_loads: list[float] = []


def _benchmark_cpu_seconds() -> float:
    """CPU time of this benchmark and every process it started: the live ones
    (servers, upstreams, personal servers) and the ones it waited for (wrk)."""
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(_cpu_seconds(pid) for pid in _process_tree(os.getpid())) + finished.ru_utime + finished.ru_stime


def busy_cpu_seconds() -> float:
    """CPU time all processors spent busy since boot (user, nice, system, irq,
    softirq, steal), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def _percentile(output: str, label: str) -> float:
    """A latency percentile from wrk's --latency table; NaN when wrk printed none (no requests)."""
    # Anchored: a thread-stats line ends in a percentage too ("+/- Stdev": "78.50%").
    found = re.search(r"^\s+" + label + r"%\s+(\S+)", output, re.MULTILINE)
    return _ms(found.group(1)) if found else float("nan")


def wrk(url: str, duration: float, connections: int = 50, server: Server | None = None,
        headers: tuple[str, ...] = (), lua: tuple[str, ...] = ()) -> WrkResult:
    """Load ``url`` (sending ``headers``, "Name: value" each); with ``server``, also
    the server's CPU time per request; with ``lua`` (a script's path, then its
    arguments), the requests are the ones the script makes.

    CPU per request is the steadier figure when the machine is shared:
    throughput moves with whatever else runs, CPU time much less.
    """
    cpu_before = server.cpu_seconds() if server else 0.0
    busy_before = busy_cpu_seconds()
    ours_before = _benchmark_cpu_seconds()
    started = time.monotonic()
    output = subprocess.run(
        pinned(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                *(f"-H{header}" for header in headers), *(["-s", lua[0]] if lua else []), url,
                *(["--", *lua[1:]] if lua else [])], 1),
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
    ours = _benchmark_cpu_seconds() - ours_before
    result.other_load = max(0.0, busy_cpu_seconds() - busy_before - ours) / (time.monotonic() - started)
    _other_loads.append(result.other_load)
    return result


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print ``rows`` under ``title``, then the load other processes put on
    the machine during each wrk run since the last table, with a warning
    when it was busy enough to move the figures."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, *rows]:
        print("  " + "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
    if _other_loads:
        print("  load from other processes during each wrk run (warm-ups included), in cores: "
              + ", ".join(f"{load:.2f}" for load in _other_loads))
        if max(_other_loads) > BUSY_OTHER_LOAD:
            print(f"  WARNING: the machine was busy (over {BUSY_OTHER_LOAD} cores used by other processes"
                  " during a run): these figures are less reliable; run again when it is quiet")
        _other_loads.clear()
    sys.stdout.flush()


def app_bench_arguments() -> argparse.Namespace:
    """The options of the application benchmarks (wsgi, asgi)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    return parser.parse_args()


def trioweb_serving(option: str, application: str, port: int, log_dir: str) -> tuple[str, list[str], int]:
    """The ``trioweb OPTION APPLICATION`` server of a comparison, logging to ``log_dir``."""
    return ("trioweb", [str(ROOT / ".venv" / "bin" / "trioweb"), option, application, "--listen",
                        f"tcp:{port}:interface=127.0.0.1", "--logfile", f"{log_dir}/trioweb.log"], port)


def compare(title: str, servers: list[tuple[str, list[str], int]], *, reference: str, duration: float,
            connections: int, cwd: str | Path | None = None) -> dict[str, WrkResult]:
    """Load each ``(name, command, port)`` server in turn (a 2 s warm-up, then
    ``duration``) and print one table, with the ratios of ``reference`` (the
    first server's name is "ours") to each of the others."""
    results: dict[str, WrkResult] = {}
    rows = []
    for name, command, port in servers:
        with Server(command, port, cwd=cwd) as server:
            url = f"http://127.0.0.1:{port}/"
            wrk(url, 2, connections)  # warm-up
            result = results[name] = wrk(url, duration, connections, server)
            rows.append((name, f"{result.requests_per_second:,.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
                         f"{result.cpu_us_per_request:.1f}", f"{server.peak_rss_mib():.1f}", str(result.errors)))
    ours = results[reference]
    for name, theirs in results.items():
        if name != reference:
            rows.append((f"{reference}/{name}", f"{ours.requests_per_second / theirs.requests_per_second:.2f}x", "",
                         "", f"{theirs.cpu_us_per_request / ours.cpu_us_per_request:.2f}x less", "", ""))
    table(f"{title}, wrk -t1 -c{connections} -d{duration:g}s, one core per side, load average "
          f"{Path('/proc/loadavg').read_text().split()[0]} before the last run",
          rows, ("server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "peak RSS MiB", "errors"))
    return results
