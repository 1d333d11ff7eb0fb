"""Static files: trioweb against Twisted Web and nginx, on the same files, on loopback.

Run through ``scripts/bench static [--duration SECONDS]``. Two scenarios:

- a 1 KiB file, ``wrk -t1 -c50``: requests per second, and server CPU time
  per request (the steadier figure on a shared machine);
- a 100 MiB file, ``wrk -t1 -c1``: MiB per second.

Each server is one process (nginx: one worker, no master) pinned to one CPU,
wrk to the other (see ``benchlib``), and each writes an access log to a file,
as it would in service. nginx is installed from Debian's packages if it is
missing; a server that cannot be started is reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import ROOT, Server, free_port, measure_each, nginx_conf, table, wrk

TRIOWEB = ROOT / ".venv" / "bin" / "trioweb"
TWISTD = ROOT / ".bench-venv-twisted" / "bin" / "twistd"
BIG_MIB = 100

SMALL = "small.html"
BIG = "big.bin"

NGINX_HTTP = """\
    access_log {dir}/nginx-access.log;
    default_type application/octet-stream;
    types {{ text/html html; }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {files};
    }}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None
    if found:
        return found
    print("nginx is missing: installing it from Debian's packages", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for package in ("nginx-light", "nginx"):
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], env=env,
                              check=False)
        if done.returncode == 0 and os.path.exists("/usr/sbin/nginx"):
            # The package starts a system nginx on port 80; this benchmark runs its own.
            subprocess.run(["service", "nginx", "stop"], capture_output=True, check=False)
            return "/usr/sbin/nginx"
    return None


def servers(work: Path, files: Path) -> dict[str, tuple[list[str], int]]:
    """name → (command, port) for every server that can be run here."""
    found = {}
    port = free_port()
    found["trioweb"] = ([str(TRIOWEB), "--path", str(files), "--listen", f"tcp:{port}:interface=127.0.0.1",
                         "--logfile", str(work / "trioweb-access.log")], port)
    if TWISTD.exists():
        port = free_port()
        found["twisted"] = ([str(TWISTD), "-n", "--pidfile=", "--logfile", str(work / "twistd.log"), "web",
                             "--path", str(files), "--listen", f"tcp:{port}:interface=127.0.0.1"], port)
    else:
        print(f"{TWISTD} is missing (scripts/bench creates it): Twisted skipped", file=sys.stderr)
    nginx = nginx_binary()
    if nginx:
        port = free_port()
        conf = nginx_conf(work, "nginx", NGINX_HTTP.format(dir=work, port=port, files=files))
        found["nginx"] = ([nginx, "-c", str(conf), "-p", str(work)], port)
    else:
        print("nginx could not be installed: skipped", file=sys.stderr)
    return found


def measure(name: str, command: list[str], port: int, work: Path, duration: float) -> tuple[str, ...]:
    base = f"http://127.0.0.1:{port}"
    with Server(command, port, cwd=work) as server:
        for path in (SMALL, BIG):  # warm up: page cache, lazy imports
            subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{base}/{path}"], check=True, timeout=60)
        wrk(f"{base}/{SMALL}", 1)
        small = wrk(f"{base}/{SMALL}", duration, 50, server)
        big = wrk(f"{base}/{BIG}", duration, 1)
    if small.errors or big.errors:
        raise RuntimeError(f"{small.errors + big.errors} failed requests")
    return (name, f"{small.requests_per_second:,.0f}", f"{small.cpu_us_per_request:.0f}",
            f"{small.p99_ms:.1f}", f"{big.requests_per_second * BIG_MIB:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/bench installs it)")
    work = Path(tempfile.mkdtemp(prefix="trioweb-bench-static-"))
    try:
        work.chmod(0o755)  # nginx's worker may run as another user
        files = work / "files"
        files.mkdir(mode=0o755)
        (files / SMALL).write_bytes(b"<!DOCTYPE html><title>x</title>" + b"x" * (1024 - 31))
        with open(files / BIG, "wb") as f:
            block = os.urandom(1024 * 1024)
            for _ in range(BIG_MIB):
                f.write(block)
        report(measure_each(servers(work, files), measure, work, options.duration), options.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(rows: list[tuple[str, ...]], duration: float) -> None:
    table(f"static files, loopback, {duration:g} s per figure",
          rows, ("server", "1 KiB req/s", "CPU us/req", "p99 ms", "100 MiB MiB/s"))
    figures = {row[0]: (float(row[1].replace(",", "")), float(row[4].replace(",", ""))) for row in rows}
    if "trioweb" in figures:
        ours = figures.pop("trioweb")
        for name, (small, big) in figures.items():
            print(f"  trioweb/{name}: 1 KiB {ours[0] / small:.2f}x, 100 MiB {ours[1] / big:.2f}x")


if __name__ == "__main__":
    main()
