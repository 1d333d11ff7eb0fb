"""CGI: trioweb against Twisted Web's twcgi, the same scripts, on loopback.

Run through ``scripts/bench cgi [--duration SECONDS] [--connections N]``. Two scenarios:

- a hello CGI (a shell script printing a header and a line) served by
  ``trioweb --path`` and ``twistd web --path`` (both run ``.cgi`` files),
  ``wrk -t1 -cN``: requests per second, the server's own CPU time per
  request (its scripts' CPU is the same on both sides and left out), and
  wrk's errors (a response slower than wrk's 2 s timeout counts as one);
- a 100 MiB CGI download (``head -c``), ``curl`` reading it: MiB/s and the
  server's peak RSS before and after (it must stay flat: the body is relayed
  with backpressure, never gathered).

Each server is one process pinned to one CPU (its scripts inherit it), wrk
and curl on the other (see ``benchlib``); each writes an access log to a file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, Server, free_port, pinned, table, wrk

TRIOWEB = ROOT / ".venv" / "bin" / "trioweb"
TWISTD = ROOT / ".bench-venv-twisted" / "bin" / "twistd"
BIG_MIB = 100

HELLO = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nHello, world!\\n'\n"
BIG = ("#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
       f"exec head -c {BIG_MIB * 1024 * 1024} /dev/zero\n")


def servers(work: Path, scripts: Path) -> dict[str, tuple[list[str], int]]:
    found = {}
    port = free_port()
    found["trioweb"] = ([str(TRIOWEB), "--path", str(scripts), "--listen", f"tcp:{port}:interface=127.0.0.1",
                         "--logfile", str(work / "trioweb-access.log"), "--cgi-max-processes", "256"], port)
    if TWISTD.exists():
        port = free_port()
        found["Twisted Web"] = ([str(TWISTD), "-n", "--pidfile=", "--logfile", str(work / "twistd.log"), "web",
                                 "--path", str(scripts), "--listen", f"tcp:{port}:interface=127.0.0.1"], port)
    else:
        sys.exit(f"{TWISTD} is missing (scripts/bench creates it)")
    return found


def download(url: str) -> float:
    """Fetch ``url`` with curl on the other CPU; MiB/s."""
    started = time.monotonic()
    result = subprocess.run(pinned(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url], 1),
                            capture_output=True, text=True, check=True, timeout=300)
    elapsed = time.monotonic() - started
    if int(result.stdout) != BIG_MIB * 1024 * 1024:
        raise RuntimeError(f"downloaded {result.stdout} bytes, not {BIG_MIB} MiB")
    return BIG_MIB / elapsed


def measure(name: str, command: list[str], port: int, work: Path, duration: float,
            connections: int) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    with Server(command, port, cwd=work) as server:
        subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{base}/hello.cgi"], check=True, timeout=60)
        wrk(f"{base}/hello.cgi", 1, connections)  # warm-up
        hello = wrk(f"{base}/hello.cgi", duration, connections, server)
        rss_before = server.peak_rss_mib()
        speed = download(f"{base}/big.cgi")
        rss_after = server.peak_rss_mib()
    return {"rps": hello.requests_per_second, "cpu": hello.cpu_us_per_request, "p99": hello.p99_ms,
            "errors": hello.errors,
            "mibs": speed, "rss_before": rss_before, "rss_after": rss_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/bench installs it)")
    work = Path(tempfile.mkdtemp(prefix="trioweb-bench-cgi-"))
    try:
        scripts = work / "cgi"
        scripts.mkdir()
        for name, text in (("hello.cgi", HELLO), ("big.cgi", BIG)):
            (scripts / name).write_text(text)
            (scripts / name).chmod(0o755)
        results = {}
        for name, (command, port) in servers(work, scripts).items():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results[name] = measure(name, command, port, work, options.duration, options.connections)
        report(results, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, float]], options: argparse.Namespace) -> None:
    rows = [(name, f"{r['rps']:,.0f}", f"{r['cpu']:.0f}", f"{r['p99']:.1f}", str(r["errors"]), f"{r['mibs']:,.0f}",
             f"{r['rss_before']:.1f}", f"{r['rss_after']:.1f}") for name, r in results.items()]
    ours, theirs = results["trioweb"], results["Twisted Web"]
    rows.append(("trioweb/Twisted", f"{ours['rps'] / theirs['rps']:.2f}x", f"{theirs['cpu'] / ours['cpu']:.2f}x less",
                 "", "", f"{ours['mibs'] / theirs['mibs']:.2f}x", "", ""))
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    table(f"CGI hello (wrk -t1 -c{options.connections} -d{options.duration:g}s) and a {BIG_MIB} MiB CGI download; "
          f"load average {' '.join(load)}",
          rows, ("server", "hello req/s", "CPU us/req", "p99 ms", "errors", f"{BIG_MIB} MiB MiB/s",
                 "peak RSS MiB before", "after"))


if __name__ == "__main__":
    main()
