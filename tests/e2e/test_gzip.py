"""``trioweb --gzip`` with real clients: curl --compressed, requests, headless Chromium."""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
import requests

from tests.e2e.apps import CHROMIUM_PAGE
from tests.support.procs import curl, free_port, trioweb

PAGE = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>compressed</title></head><body>"
        + "".join(f"<p>Paragraph {i}: the quick brown fox jumps over the lazy dog.</p>\n" for i in range(300))
        + "</body></html>").encode()

STREAM_RPY = """\
# Streams ?mib=N mebibytes of hex text (compressible, not trivially) with backpressure.
import os

from trioweb.resource import NOT_DONE_YET, Resource


class Stream(Resource):
    isLeaf = True

    def render_GET(self, request):
        mib = int(request.args.get(b"mib", [b"1"])[0])
        request.setHeader(b"content-type", b"text/plain")

        async def produce():
            for _ in range(mib * 4):
                request.write(os.urandom(128 * 1024).hex().encode())
                await request.drain()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


resource = Stream()
"""

# curl --compressed offers br too: the server (in this venv) prefers it when brotli is installed.
CURL_CODING = "br" if importlib.util.find_spec("brotli") else "gzip"

@pytest.fixture(scope="module")
def site():
    """``trioweb --path DIR --gzip`` on a directory of pages, files and a streaming script."""
    base = Path(tempfile.mkdtemp(prefix="trioweb-gzip-"))
    try:
        (base / "index.html").write_bytes(PAGE)
        (base / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4000))
        (base / "app.js").write_bytes(b"console.log('app');\n" * 100)
        (base / "app.js.gz").write_bytes(gzip.compress((base / "app.js").read_bytes()))
        (base / "big.txt").write_bytes(b"".join(b"line %d of a file sent with sendfile\n" % i
                                                for i in range(40000)))
        (base / "stream.rpy").write_text(STREAM_RPY)
        port = free_port()
        with trioweb("--path", str(base), "--gzip", port=port) as process:
            yield f"http://127.0.0.1:{port}", process, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def headers_of(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return {k.lower(): v for k, v in re.findall(r"^([^:\r\n]+): (.*?)\r?$", head, re.MULTILINE)}


def test_curl_compressed_gets_gzip_and_decodes_it(site):
    url, _, _ = site
    result = curl("--compressed", "-D", "-", "-o", "/dev/null", url + "/")
    headers = headers_of(result.stdout)
    assert headers["content-encoding"] == CURL_CODING and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) < len(PAGE) / 5
    assert curl("--compressed", url + "/").stdout == PAGE


def decoded(body: bytes, coding: str | None) -> bytes:
    if coding == "br":
        import brotli

        return brotli.decompress(body)
    return gzip.decompress(body) if coding else body


@pytest.mark.parametrize("accept, coding", [
    ("gzip", "gzip"), ("gzip;q=0", None), ("x-gzip", "x-gzip"), ("identity", None), ("deflate", None),
    ("gzip;q=0, br;q=0, *;q=1", None), ("gzip;q=0.5, br;q=0.4", "gzip"),
    ("*", CURL_CODING), ("gzip;q=0, *;q=1", "br" if CURL_CODING == "br" else None),
])
def test_q_values_with_curl(site, accept, coding):
    url, _, _ = site
    raw = curl("-s", "-i", "-H", f"Accept-Encoding: {accept}", "-H", "User-Agent: x", url + "/").stdout
    headers = headers_of(raw)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert headers.get("content-encoding") == coding and headers["vary"] == "Accept-Encoding"
    assert decoded(body, coding) == PAGE


def test_without_accept_encoding_the_page_is_as_it_is_with_vary(site):
    url, _, _ = site
    raw = curl("-s", "-i", "-H", "Accept-Encoding:", url + "/").stdout
    assert "content-encoding" not in headers_of(raw) and headers_of(raw)["vary"] == "Accept-Encoding"
    assert raw.endswith(PAGE)


def test_requests_decodes_what_it_is_sent(site):
    url, _, _ = site
    response = requests.get(url + "/", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.headers["Content-Encoding"] == "gzip" and response.content == PAGE
    big = requests.get(url + "/big.txt", headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert big.headers["Content-Encoding"] == "gzip" and "Content-Length" not in big.headers  # streamed
    assert big.content == (site[2] / "big.txt").read_bytes()


def test_images_and_precompressed_files_are_not_encoded_again(site):
    url, _, base = site
    png = requests.get(url + "/logo.png", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert "Content-Encoding" not in png.headers and png.content == (base / "logo.png").read_bytes()
    raw = curl("-s", "-i", "-H", "Accept-Encoding: gzip", url + "/app.js").stdout
    assert headers_of(raw)["content-encoding"] == "gzip"
    assert raw.split(b"\r\n\r\n", 1)[1] == (base / "app.js.gz").read_bytes()  # the file itself, once


def test_head_has_the_headers_of_get(site):
    """All of them, except a static file's Content-Length: its encoded length is known only by
    encoding the body, which a HEAD does not read (RFC 9110 9.3.2 lets HEAD omit such fields)."""
    url, _, _ = site

    def head_of(*args):
        return {k: v for k, v in headers_of(curl("-s", "-D", "-", "-o", "/dev/null", *args).stdout).items()
                if k != "date"}

    for path in ("/", "/big.txt", "/logo.png"):
        head = head_of("-I", "-H", "Accept-Encoding: gzip", url + path)
        get = head_of("-H", "Accept-Encoding: gzip", url + path)
        if "content-encoding" in get:
            get.pop("content-length", None)
            get.pop("transfer-encoding", None)
        assert head == get, path


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise KeyError("VmHWM")


def test_a_50_mib_stream_is_compressed_in_bounded_memory(site):
    url, process, _ = site
    before = _rss_peak_kib(process.pid)
    response = requests.get(url + "/stream.rpy?mib=50", headers={"Accept-Encoding": "gzip"}, stream=True,
                            timeout=60)
    assert response.headers["Content-Encoding"] == "gzip" and response.headers["Transfer-Encoding"] == "chunked"
    decoder = zlib.decompressobj(31)
    compressed = decoded = 0
    for piece in response.raw.stream(256 * 1024, decode_content=False):
        compressed += len(piece)
        decoded += len(decoder.decompress(piece))
    decoded += len(decoder.flush())
    assert decoder.eof and decoded == 50 * 1024 * 1024
    assert compressed < 0.7 * decoded  # hex text: compressed to a little over half
    growth = _rss_peak_kib(process.pid) - before
    assert growth < 20 * 1024, f"server peak memory grew by {growth} KiB for a 50 MiB compressed stream"


def test_curl_decodes_a_stream_as_it_comes(site):
    url, _, _ = site
    result = subprocess.run(f"curl -sS --compressed --max-time 60 '{url}/stream.rpy?mib=4' | wc -c",
                            shell=True, capture_output=True, timeout=70)
    assert int(result.stdout) == 4 * 1024 * 1024


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url: str, profile: Path) -> bytes:
    """The page at ``url`` as headless Chromium built it (after its scripts ran)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, timeout=90, env={**os.environ, "HOME": str(profile.parent)})
    assert b"Decoded by the browser. " * 200 in result.stdout, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_loads_a_gzipped_page(tmp_path):
    port = free_port()
    with trioweb("--class", "apps.GzipOnlyPage", port=port, env={"PYTHONPATH": str(Path(__file__).parent)}):
        dom = dump_dom(f"http://127.0.0.1:{port}/", tmp_path / "profile")
    assert b'<p id="coding">coding=gzip</p>' in dom  # the browser was sent gzip, and decoded it


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_loads_a_page_of_a_gzip_site(site, tmp_path):
    url, _, base = site
    (base / "chromium.html").write_bytes(CHROMIUM_PAGE)
    dom = dump_dom(url + "/chromium.html", tmp_path / "profile")
    assert b'<p id="coding">coding=%s</p>' % CURL_CODING.encode() in dom  # Chromium offers br too


def test_gzip_with_class_streams_a_streamed_page():
    """--gzip wraps a --class root too, and a page written line by line still arrives line by line."""
    port = free_port()
    with trioweb("--class", "apps.Slow", "--gzip", port=port, env={"PYTHONPATH": str(Path(__file__).parent)}):
        response = requests.get(f"http://127.0.0.1:{port}/?seconds=2", headers={"Accept-Encoding": "gzip"},
                                stream=True, timeout=10)
        assert response.headers["Content-Encoding"] == "gzip"
        decoder = zlib.decompressobj(31)
        pieces = response.raw.stream(65536, decode_content=False)
        first = decoder.decompress(next(pieces))
        assert first.startswith(b"line 0\n") and b"line 7" not in first  # not held back until the end
        rest = b"".join(decoder.decompress(piece) for piece in pieces) + decoder.flush()
        assert first + rest == b"".join(b"line %d\n" % i for i in range(8)) and decoder.eof
