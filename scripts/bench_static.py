"""Static files: trioweb against Twisted Web and nginx, on the same files, on loopback.

Run through ``scripts/bench static [--duration SECONDS]``. Two scenarios:

- a 1 KiB file, ``wrk -t1 -c50``: requests per second;
- a 100 MiB file, ``wrk -t1 -c1``: MiB per second.

Each server is one process (nginx: one worker) and writes an access log to a
file, as it would in service. nginx is installed from Debian's packages if it
is missing; a server that cannot be started is reported and skipped. The
machine may be shared: figures are noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIOWEB = ROOT / ".venv" / "bin" / "trioweb"
TWISTD = ROOT / ".bench-venv-twisted" / "bin" / "twistd"

SMALL = "small.html"
BIG = "big.bin"

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    default_type application/octet-stream;
    types {{ text/html html; }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {files};
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"not listening on {port} after {timeout} s")


@contextmanager
def running(command: list[str], port: int, log: Path) -> Iterator[None]:
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=log.parent)
        try:
            wait_for(port, process)
            yield
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


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
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=work, port=port, files=files))
        found["nginx"] = ([nginx, "-c", str(conf), "-p", str(work)], port)
    else:
        print("nginx could not be installed: skipped", file=sys.stderr)
    return found


def wrk(url: str, connections: int, duration: float) -> str:
    result = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", url],
                            capture_output=True, text=True, timeout=duration + 60)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or result.stdout.strip())
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise RuntimeError(f"{errors[1]} error responses from {url}")
    return result.stdout


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def requests_per_second(output: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])


def mib_per_second(output: str) -> float:
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", output).groups()
    return float(value) * _UNITS[unit] / 1024**2


def measure(base: str, duration: float) -> dict[str, float]:
    # Warm up (page cache, lazy imports) before measuring.
    for name in (SMALL, BIG):
        subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{base}/{name}"], check=True, timeout=60)
    wrk(f"{base}/{SMALL}", 50, 1)
    return {
        "small": requests_per_second(wrk(f"{base}/{SMALL}", 50, duration)),
        "big": mib_per_second(wrk(f"{base}/{BIG}", 1, duration)),
    }


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
            for _ in range(100):
                f.write(block)
        results: dict[str, dict[str, float]] = {}
        for name, (command, port) in servers(work, files).items():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            try:
                with running(command, port, work / f"{name}.out"):
                    results[name] = measure(f"http://127.0.0.1:{port}", options.duration)
            except Exception as exc:  # report and go on with the others
                print(f"{name} failed: {exc}", file=sys.stderr)
        report(results, options.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, float]], duration: float) -> None:
    names = [n for n in ("trioweb", "twisted", "nginx") if n in results]
    print(f"\nstatic files, loopback, {os.cpu_count()} CPUs, {duration:g} s per figure")
    header = f"{'scenario':<26}" + "".join(f"{n:>12}" for n in names)
    ratios = [n for n in names if n != "trioweb"] if "trioweb" in results else []
    header += "".join(f"{'trioweb/' + n:>18}" for n in ratios)
    print(header)
    for key, label in (("small", "1 KiB file, req/s (c50)"), ("big", "100 MiB file, MiB/s (c1)")):
        line = f"{label:<26}" + "".join(f"{results[n][key]:>12,.0f}" for n in names)
        line += "".join(f"{results['trioweb'][key] / results[n][key]:>17.2f}x" for n in ratios)
        print(line)


if __name__ == "__main__":
    main()
