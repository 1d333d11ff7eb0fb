"""The distributed-mode examples under examples/distrib, run as real processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.support.procs import ROOT, Process, curl, free_port

EXAMPLES = ROOT / "examples" / "distrib"


def wait_for(path: Path, process: Process) -> None:
    deadline = time.monotonic() + 15
    while not path.exists():
        assert process.process.poll() is None and time.monotonic() < deadline, process.output()
        time.sleep(0.05)


def test_manual_master_and_slave(tmp_path):
    sock = tmp_path / "slave.sock"
    with Process([sys.executable, str(EXAMPLES / "slave.py"), f"unix:{sock}"]) as slave:
        wait_for(sock, slave)
        port = free_port()
        with Process([sys.executable, str(EXAMPLES / "master.py"), str(port), f"unix:{sock}"], port=port):
            assert b"The master" in curl(f"http://127.0.0.1:{port}/").stdout
            page = curl(f"http://127.0.0.1:{port}/slave/").stdout
            assert b"Hello from the slave (pid %d)" % slave.pid in page
            assert b"published at http://127.0.0.1:%d/slave" % port in page
            assert curl(f"http://127.0.0.1:{port}/slave/data").stdout == b"slave data"


def test_slave_on_tcp(tmp_path):
    slave_port, port = free_port(), free_port()
    with Process([sys.executable, str(EXAMPLES / "slave.py"), f"tcp:{slave_port}:interface=127.0.0.1"],
                 port=slave_port):
        with Process([sys.executable, str(EXAMPLES / "master.py"), str(port), f"tcp:127.0.0.1:{slave_port}"],
                     port=port):
            assert curl(f"http://127.0.0.1:{port}/slave/data").stdout == b"slave data"


def test_bannerfish_rotates_banners_through_the_master():
    slave_port, port = free_port(), free_port()
    with Process([sys.executable, str(EXAMPLES / "bannerfish.py"), "slave", str(slave_port)], port=slave_port):
        with Process([sys.executable, str(EXAMPLES / "bannerfish.py"), "master", str(port), str(slave_port)],
                     port=port):
            assert b'<iframe src="banner/">' in curl(f"http://127.0.0.1:{port}/").stdout
            banners = [curl(f"http://127.0.0.1:{port}/banner/").stdout for _ in range(4)]
            assert banners[0] == b'<div class="banner">Bannerfish: the fish with a flag</div>'
            assert banners[1] != banners[0] and banners[3] == banners[0]


def test_two_virtual_hosts_reach_two_processes(tmp_path):
    ping, pong = tmp_path / "ping.sock", tmp_path / "pong.sock"
    with Process([sys.executable, str(EXAMPLES / "pingpong.py"), "backend", "ping", f"unix:{ping}"]) as p1, \
         Process([sys.executable, str(EXAMPLES / "pingpong.py"), "backend", "pong", f"unix:{pong}"]) as p2:
        wait_for(ping, p1)
        wait_for(pong, p2)
        port = free_port()
        with Process([sys.executable, str(EXAMPLES / "pingpong.py"), "front", str(port), str(ping), str(pong)],
                     port=port):
            url = f"http://127.0.0.1:{port}/"
            assert b"<h1>ping</h1>" in curl("-H", "Host: ping.localhost", url).stdout
            assert b"<h1>pong</h1>" in curl("-H", "Host: PONG:8080", url).stdout
            unknown = curl("-si", "-H", "Host: <b>other</b>", url).stdout
            assert unknown.startswith(b"HTTP/1.1 400")  # not even a valid host
            missing = curl("-si", "-H", "Host: other.example", url).stdout
            assert missing.startswith(b"HTTP/1.1 404") and b"other.example" in missing
