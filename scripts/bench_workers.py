"""``--workers``: how fairly two workers share the load, and what the second process costs.

    scripts/bench workers [--duration SECONDS] [--connections N]

Runs the real ``trioweb --workers N`` command (1 and 2) on a hello resource
that counts, in each worker, the requests it answered and the client ports
it saw (its connections), and tells them at ``/count``. wrk loads it;
afterwards ``/count`` is asked on fresh connections until every worker has
answered. Reported: each worker's share of the connections and of the
requests (neither should be above 65 %), and CPU microseconds per request:
the user plus system CPU time of the supervisor and all its workers (from
/proc) over the requests wrk made, for 2 workers against 1. Nothing is
pinned: the workers and wrk share the two cores, so requests/s is not the
figure (the CPU time is). wrk's keep-alive connections are reopened every
1,000 requests (``max_requests_per_connection``), so connections keep
arriving during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchlib import ROOT, _cpu_seconds, _process_tree, free_port, table, wait_for_port

HELLO = textwrap.dedent("""
    import json, os
    from trioweb.resource import Resource

    answered = 0
    ports = set()

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request):
            global answered
            if request.path == b"/count":
                request.setHeader(b"connection", b"close")
                return json.dumps({"pid": os.getpid(), "requests": answered,
                                   "connections": len(ports)}).encode()
            answered += 1
            ports.add(request.getClientAddress().port)
            return b"Hello, world!"
""")


def _counts(port: int, workers: set[int]) -> dict[int, dict]:
    seen: dict[int, dict] = {}
    for _ in range(400):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /count HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        seen[body["pid"]] = body
        if set(seen) >= workers:
            break
    return seen


def run(count: int, duration: float, connections: int, work: Path) -> tuple[tuple[str, ...], float]:
    port = free_port()
    command = [str(ROOT / ".venv" / "bin" / "trioweb"), "--workers", str(count), "--class", "benchhello.Hello",
               "--listen", f"tcp:{port}:interface=127.0.0.1", "--logfile", os.devnull, "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(work)}, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        time.sleep(1)  # every worker ready
        tree = _process_tree(process.pid)
        workers = set(tree[1:]) if count > 1 else {process.pid}
        before = sum(_cpu_seconds(pid) for pid in tree)
        output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s",
                                 f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
        cpu = sum(_cpu_seconds(pid) for pid in _process_tree(process.pid)) - before
        requests = int(output.split(" requests in")[0].split()[-1])
        seen = _counts(port, workers)
    finally:
        process.terminate()
        process.wait(30)
    total_requests = sum(w["requests"] for w in seen.values()) or 1
    total_connections = sum(w["connections"] for w in seen.values()) or 1
    shares = " / ".join(f"{100 * w['connections'] / total_connections:.0f}%" for w in seen.values())
    request_shares = " / ".join(f"{100 * w['requests'] / total_requests:.0f}%" for w in seen.values())
    per_request = cpu / requests * 1e6 if requests else float("nan")
    row = (str(count), str(requests), str(total_connections), shares, request_shares, f"{per_request:.0f}")
    return row, per_request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "benchhello.py").write_text(HELLO)
        rows, costs = [], []
        for count in (1, 2):
            print(f"measuring --workers {count} ...", file=sys.stderr, flush=True)
            row, cost = run(count, options.duration, options.connections, work)
            rows.append(row)
            costs.append(cost)
    table(f"--workers: shares and CPU per request ({options.connections} connections, load average "
          f"{os.getloadavg()[0]:.1f})", rows,
          ("workers", "requests", "connections", "connections by worker", "requests by worker", "CPU us/request"))
    print(f"  CPU per request, 2 workers / 1: {costs[1] / costs[0]:.2f}x")


if __name__ == "__main__":
    main()
