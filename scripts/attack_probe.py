"""How a normal client fares while ``trioweb --path`` is under a slow attack.

    .venv/bin/python scripts/attack_probe.py [--duration SECONDS] [--only NAME ...] [--max-p99-ms MS]

Starts ``trioweb --path`` (default limits) on 127.0.0.1, then for each
scenario starts the attack from 127.0.0.1 and, once it has ramped up, runs a
probe client from another address (127.0.0.2): one GET of a 1 KiB file on a
new connection every 50 ms, each allowed 5 s. Prints p50, p99 and max of the
probe's latency and its failures per scenario. Scenarios:

- ``baseline``: no attack;
- ``slowloris``: ``slowhttptest -H -c 1100``: heads trickled forever;
- ``slowpost``: ``slowhttptest -B -c 1100``: bodies trickled forever;
- ``slowread``: ``slowhttptest -X -c 1100``: responses read a few bytes at a time;
- ``idle``: 5,000 sockets that never send a byte, from 100 addresses
  (127.0.1.1-100, 50 each: under the per-address cap, far over the total);
- ``idle1``: 5,000 idle sockets from 127.0.0.1 alone.

With ``--max-p99-ms``, exits 1 if any scenario's p99 is above it or a probe
failed (tests/e2e/test_slow_attacks.py runs it so). Needs slowhttptest
(Debian package) on PATH; raises its own open-file limit for the idle
sockets, within the hard limit.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
TRIOWEB = ROOT / ".venv" / "bin" / "trioweb"
PROBE_ADDRESS = "127.0.0.2"
PROBE_INTERVAL = 0.05
PROBE_TIMEOUT = 5.0
RAMP_UP = 6.0  # seconds an attack gets to open its connections before the probe starts
IDLE_SOCKETS = 5000

SCENARIOS = ["baseline", "slowloris", "slowpost", "slowread", "idle", "idle1"]


def probe_once(port: int) -> float | None:
    """Seconds for one request on a new connection from the probe address; None if it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT,
                                      source_address=(PROBE_ADDRESS, 0)) as sock:
            sock.sendall(b"GET /small.html HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    except OSError:
        return None
    if not received.startswith(b"HTTP/1.1 200 ") or not received.endswith(b"x" * 64):
        return None
    return time.perf_counter() - started


def probe(port: int, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        took = probe_once(port)
        if took is None:
            failures += 1
        else:
            latencies.append(took)
        time.sleep(max(PROBE_INTERVAL - (took or 0), 0))
    return latencies, failures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


class IdleSockets:
    """Opens sockets that never send, from the given source addresses, in a thread."""

    def __init__(self, port: int, addresses: list[str], count: int) -> None:
        self.port = port
        self.addresses = addresses
        self.count = count
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._open, daemon=True)

    def _open(self) -> None:
        for i in range(self.count):
            if self._stop.is_set():
                return
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((self.addresses[i % len(self.addresses)], 0))
            try:
                sock.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                continue
            self.sockets.append(sock)
            if i % 500 == 499:
                time.sleep(0.5)  # ~1,000 a second, as a script kiddie's loop would

    def __enter__(self) -> IdleSockets:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def slowhttptest(mode: str, url: str, big_url: str, length: float) -> subprocess.Popen[bytes]:
    common = ["-c", "1100", "-r", "200", "-l", str(int(length)), "-p", "3"]
    args = {
        "slowloris": ["-H", "-i", "10", "-x", "24", "-u", url],
        "slowpost": ["-B", "-i", "10", "-s", "8192", "-x", "24", "-u", url],
        "slowread": ["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3", "-u", big_url],
    }[mode]
    return subprocess.Popen(["slowhttptest", *common, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def run_scenario(name: str, port: int, duration: float) -> tuple[list[float], int]:
    url = f"http://127.0.0.1:{port}/small.html"
    big_url = f"http://127.0.0.1:{port}/big.bin"
    if name == "baseline":
        return probe(port, duration)
    if name in ("idle", "idle1"):
        addresses = [f"127.0.1.{i}" for i in range(1, 101)] if name == "idle" else ["127.0.0.1"]
        with IdleSockets(port, addresses, IDLE_SOCKETS):
            time.sleep(RAMP_UP)
            return probe(port, duration)
    attack = slowhttptest(name, url, big_url, duration + RAMP_UP + 5)
    try:
        time.sleep(RAMP_UP)
        return probe(port, duration)
    finally:
        os.killpg(attack.pid, signal.SIGTERM)
        attack.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of probing per scenario")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, help="scenarios to run (default: all)")
    parser.add_argument("--max-p99-ms", type=float, help="fail if a p99 is above this or a probe failed")
    options = parser.parse_args()
    if shutil.which("slowhttptest") is None:
        raise SystemExit("slowhttptest is not installed (Debian package slowhttptest)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_SOCKETS + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    scenarios = options.only or SCENARIOS
    failed = False
    with tempfile.TemporaryDirectory() as site:
        Path(site, "small.html").write_bytes(b"x" * 1024)
        Path(site, "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
        port = free_port()
        log = Path(site, "server.log")
        with open(log, "wb") as errors:
            server = subprocess.Popen([str(TRIOWEB), "--path", site, "--listen", f"tcp:{port}:interface=127.0.0.1",
                                       "--logfile", str(Path(site, "access.log"))],
                                      stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_for_port(port)
            print(f"load average before: {open('/proc/loadavg').read().strip()}")
            print(f"{'scenario':>10} {'probes':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7}")
            for name in scenarios:
                latencies, failures = run_scenario(name, port, options.duration)
                p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
                top = max(latencies, default=float("nan")) * 1000
                print(f"{name:>10} {len(latencies) + failures:>7} {p50:>8.1f} {p99:>8.1f} {top:>8.1f} {failures:>7}",
                      flush=True)
                if options.max_p99_ms is not None and (failures or not latencies or p99 > options.max_p99_ms):
                    failed = True
                time.sleep(2)  # let the server close what the attack left
            print(f"load average after: {open('/proc/loadavg').read().strip()}")
        finally:
            server.terminate()
            try:
                server.wait(40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if b"Traceback" in log.read_bytes():
            print(log.read_text(errors="replace"), file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
