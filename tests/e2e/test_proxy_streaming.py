"""A reverse proxy process between curl and a trioweb upstream: big bodies in flat memory, a killed upstream.

The proxy is examples/proxy/reverse_proxy.py; the upstream a ``trioweb
--path`` serving a sparse file (no disk to speak of). The proxy's resident
memory is sampled while the body streams through it and compared with what
it had after a warm-up request. The 1 GiB run takes about 6 s here, so it is
in the default suite.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from pathlib import Path

from tests.support.procs import ROOT, Process, curl, free_port, trioweb_command

REVERSE_PROXY = ROOT / "examples" / "proxy" / "reverse_proxy.py"
MiB = 1024 * 1024
RSS_GROWTH_LIMIT = 30 * MiB


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RSSSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))


def pair(files: Path):
    upstream, port = free_port(), free_port()
    inner = Process([trioweb_command(), "--path", str(files), "--listen", f"tcp:{upstream}:interface=127.0.0.1"],
                    port=upstream)
    proxy = Process([sys.executable, str(REVERSE_PROXY), str(port), "127.0.0.1", str(upstream)], port=port)
    return inner, proxy, port


def stream_through(tmp_path: Path, size: int) -> None:
    files = tmp_path / "files"
    files.mkdir()
    with open(files / "big.bin", "wb") as f:
        f.truncate(size)  # sparse: zeros that cost no disk
    (files / "warm.bin").write_bytes(b"w" * MiB)
    inner, proxy, port = pair(files)
    with inner, proxy:
        for _ in range(3):
            assert curl("-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/warm.bin").returncode == 0
        baseline = rss(proxy.pid)
        sampler = RSSSampler(proxy.pid)
        sampler.start()
        started = time.monotonic()
        done = curl("-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                    f"http://127.0.0.1:{port}/big.bin", timeout=600)
        sampler.done.set()
        sampler.join()
        elapsed = time.monotonic() - started
        assert done.stdout == b"200 %d" % size, done
        growth = sampler.peak - baseline
        print(f"{size // MiB} MiB in {elapsed:.1f} s; proxy RSS {baseline / MiB:.1f} MiB, "
              f"peak growth {growth / MiB:.1f} MiB")
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / MiB:.1f} MiB"


def test_1_gib_stream_through_the_proxy_in_flat_memory(tmp_path):
    stream_through(tmp_path, 1024 * MiB)


def test_an_upload_streams_up_whole(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "sink.rpy").write_text(
        "import hashlib\n"
        "from trioweb.resource import Resource\n"
        "class Sink(Resource):\n"
        "    stream_request_body = True\n"
        "    max_request_body = 1 << 30\n"
        "    async def render_PUT(self, request):\n"
        "        digest, size = hashlib.sha256(), 0\n"
        "        async for piece in request.body_stream():\n"
        "            digest.update(piece)\n"
        "            size += len(piece)\n"
        "        return b'%d %s' % (size, digest.hexdigest().encode())\n"
        "resource = Sink()\n")
    body = tmp_path / "body.bin"
    data = bytes(range(256)) * (40 * 4096)  # 40 MiB
    body.write_bytes(data)
    inner, proxy, port = pair(files)
    with inner, proxy:
        for framing in ([], ["-H", "Transfer-Encoding: chunked"]):
            done = curl("-s", "-T", str(body), *framing, f"http://127.0.0.1:{port}/sink.rpy", timeout=120)
            assert done.stdout == b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode()), done


def test_a_killed_upstream_is_a_502_at_once_and_a_restarted_one_is_used_again(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "page.html").write_text("the page")
    inner, proxy, port = pair(files)
    with proxy:
        upstream_port = int(inner.args[-1].split(":")[1])
        with inner:
            assert curl(f"http://127.0.0.1:{port}/page.html").stdout == b"the page"
            inner.process.kill()  # SIGKILL: the kept-alive connection dies with it
            inner.process.wait()
            started = time.monotonic()
            failed = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/page.html")
            assert failed.stdout == b"502"
            assert time.monotonic() - started < 5.0  # the connect timeout; refused is at once
        again = Process([trioweb_command(), "--path", str(files), "--listen",
                         f"tcp:{upstream_port}:interface=127.0.0.1"], port=upstream_port)
        with again:
            assert curl(f"http://127.0.0.1:{port}/page.html").stdout == b"the page"
