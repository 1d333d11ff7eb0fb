"""Soak ``trioweb --path``: mixed traffic for a while, its RSS and open files sampled.

    .venv/bin/python scripts/soak.py [--duration SECONDS]   (default 300)

Starts ``trioweb --path`` on 127.0.0.1 with static files, an ``.rpy``
script and a form, and sends for ``--duration`` seconds, all at once:

- ``wrk`` (2 connections, lua-scripted) cycling through a static file, a
  missing one, the script, a query string and a 304;
- a Python client sending what goes wrong: malformed requests, oversized
  heads, trickled bodies cut by the body deadline, multipart forms, clients
  that vanish mid-request, an error from the script.

Every 10 s it prints the server's RSS and open file descriptors. At the end
it checks that growth is bounded: RSS at most 1.5x (+16 MiB) its first sample
after a warm-up, open files back within 16 of their idle count once the
traffic has stopped, and no traceback in the server's log. Exits 1 otherwise.
tests/e2e/test_soak.py runs it (marked slow).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
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
SAMPLE_EVERY = 10.0

SCRIPT = b'''
from trioweb.resource import Resource

class Dynamic(Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.args.get(b"fail"):
            raise RuntimeError("asked to fail")
        return b"hello " + request.args.get(b"n", [b"you"])[0][:50]

    def render_POST(self, request):
        return b"%d fields, %d files" % (len(request.args), len(request.files))

resource = Dynamic()
'''

WRK_SCRIPT = """
local paths = {"/small.html", "/missing", "/dynamic.rpy", "/dynamic.rpy?n=soak", "/page.css"}
local i = 0
request = function()
  i = i + 1
  local path = paths[(i % #paths) + 1]
  if i % 7 == 0 then
    return wrk.format("GET", "/small.html", {["If-None-Match"] = "*"})
  end
  return wrk.format("GET", path)
end
"""

BAD_REQUESTS = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 40000 + b"\r\n\r\n",
    b"POST /dynamic.rpy HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /dynamic.rpy?fail=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /small.html HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,3-4,6-7\r\n\r\n",
    b"GET /small.html HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Mon, 01 Jan 10000 00:00:00 GMT\r\n\r\n",
    b"POST /dynamic.rpy HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=B\r\n"
    b"Content-Length: 97\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"
    b"Content-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " + b"c" * 40000,
]


def sample(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of process ``pid``."""
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def bad_traffic(port: int, stop: threading.Event) -> None:
    """What goes wrong, over and over: each on its own connection."""
    rng = random.Random(20)
    while not stop.is_set():
        kind = rng.randrange(4)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if kind == 0:  # a bad request, read to the end
                    sock.sendall(rng.choice(BAD_REQUESTS))
                    while sock.recv(65536):
                        pass
                elif kind == 1:  # vanish mid-head
                    sock.sendall(b"GET /small.html HTTP/1.1\r\nHo")
                elif kind == 2:  # vanish mid-body
                    sock.sendall(b"POST /dynamic.rpy HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
                else:  # a trickled body, cut by the body deadline (short for the soak)
                    sock.sendall(b"POST /dynamic.rpy HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
                    for _ in range(30):
                        if stop.is_set():
                            break
                        sock.sendall(b"x")
                        time.sleep(0.1)
        except OSError:
            pass
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    with tempfile.TemporaryDirectory() as site:
        Path(site, "small.html").write_bytes(b"<p>" + b"x" * 1000 + b"</p>")
        Path(site, "page.css").write_bytes(b"body{}" * 2000)
        Path(site, "dynamic.rpy").write_bytes(SCRIPT)
        Path(site, "soak.lua").write_text(WRK_SCRIPT)
        log = Path(site, "server.log")
        port = free_port()
        with open(log, "wb") as errors:
            server = subprocess.Popen(
                [str(TRIOWEB), "--path", site, "--listen", f"tcp:{port}:interface=127.0.0.1",
                 "--logfile", str(Path(site, "access.log")), "--body-timeout", "1", "--min-body-rate", "100"],
                stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_for_port(port)
            idle_rss, idle_fds = sample(server.pid)
            print(f"load average before: {open('/proc/loadavg').read().strip()}")
            print(f"idle: RSS {idle_rss:.1f} MiB, {idle_fds} fds")
            stop = threading.Event()
            misbehaving = threading.Thread(target=bad_traffic, args=(port, stop), daemon=True)
            misbehaving.start()
            wrk = subprocess.Popen(["wrk", "-t1", "-c2", f"-d{int(options.duration)}s", "-s",
                                    str(Path(site, "soak.lua")), f"http://127.0.0.1:{port}/"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            started = time.monotonic()
            samples = []
            while time.monotonic() - started < options.duration:
                time.sleep(SAMPLE_EVERY)
                rss, fds = sample(server.pid)
                samples.append((rss, fds))
                print(f"{time.monotonic() - started:6.0f} s: RSS {rss:6.1f} MiB, {fds:4d} fds", flush=True)
            stop.set()
            misbehaving.join()
            report = wrk.communicate(timeout=60)[0].decode()
            print("\n".join(line for line in report.splitlines() if "Requests/sec" in line or "requests in" in line
                            or "Non-2xx" in line))
            time.sleep(3)  # connections close; lingering ones end
            end_rss, end_fds = sample(server.pid)
            print(f"after: RSS {end_rss:.1f} MiB, {end_fds} fds")
            print(f"load average after: {open('/proc/loadavg').read().strip()}")
        finally:
            server.terminate()
            server.wait(40)
        reference = samples[min(2, len(samples) - 1)][0]  # after a warm-up of the caches
        peak = max(rss for rss, _ in samples)
        problems = []
        if peak > reference * 1.5 + 16:
            problems.append(f"RSS grew from {reference:.1f} to {peak:.1f} MiB")
        if end_fds > idle_fds + 16:
            problems.append(f"{end_fds} fds open after the traffic, {idle_fds} before")
        text = log.read_text(errors="replace")  # the script's own errors are logged with their traceback
        if text.count("Traceback (most recent call last)") > text.count("RuntimeError: asked to fail"):
            problems.append("a traceback other than the script's own error in the server log")
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
