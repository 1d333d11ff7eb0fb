"""``trioweb --path`` and friends, run as a user would, talked to with curl."""

from __future__ import annotations

import email.utils
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.procs import ROOT, curl, free_port, trioweb

HTDOCS = ROOT / "examples" / "htdocs"


def status(*args: str) -> int:
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", *args).stdout)


def test_path_serves_the_demo_site_to_curl():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with trioweb("--path", str(HTDOCS), port=port):
        index = curl(f"{base}/").stdout
        assert index == (HTDOCS / "index.html").read_bytes()
        notes = (HTDOCS / "notes.txt").read_bytes()
        assert curl(f"{base}/notes.txt").stdout == notes
        # --range
        ranged = curl("-i", "--range", "0-9", f"{base}/notes.txt").stdout
        assert ranged.startswith(b"HTTP/1.1 206 ")
        assert b"Content-Range: bytes 0-9/%d" % len(notes) in ranged
        assert ranged.endswith(notes[:10])
        # -z (If-Modified-Since): a date after the file's mtime gives 304, one before gives 200
        later = email.utils.formatdate(time.time() + 3600, usegmt=True)
        earlier = email.utils.formatdate(os.stat(HTDOCS / "notes.txt").st_mtime - 3600, usegmt=True)
        assert status("-z", later, f"{base}/notes.txt") == 304
        assert status("-z", earlier, f"{base}/notes.txt") == 200
        # -I (HEAD)
        head = curl("-I", f"{base}/notes.txt").stdout
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Length: %d" % len(notes) in head and b"Accept-Ranges: bytes" in head
        # directory redirect, listing, resource scripts, as-is files, encodings
        assert curl("-sL", f"{base}/files").stdout.startswith(b"<!DOCTYPE html>")
        listing = curl(f"{base}/files/").stdout
        assert b"Directory listing for /files/" in listing and b'href="./tom%20%26%20jerry.txt"' in listing
        assert b"tom &amp; jerry.txt" in listing
        assert curl(f"{base}/hello.rpy").stdout == b"<html>foo</html>"
        assert curl(f"{base}/clock.rpy").stdout.startswith(b"<html><body>")
        first = curl(f"{base}/counter.rpy").stdout
        second = curl(f"{base}/counter.rpy").stdout
        assert re.fullmatch(rb"you are visitor \d+", first)
        assert int(second.split()[-1]) == int(first.split()[-1]) + 1
        asis = curl("-i", f"{base}/hello.asis").stdout
        assert asis.startswith(b"HTTP/1.1 200 OK") and b"X-Served-As-Is: yes" in asis
        moved = curl("-i", f"{base}/moved.asis").stdout
        assert moved.startswith(b"HTTP/1.1 301 Moved Permanently") and b"Location: /index.html" in moved
        page = curl("-i", f"{base}/files/page.html.gz").stdout
        assert b"Content-Encoding: gzip" in page and b"Content-Type: text/html" in page
        assert b"stored gzip-compressed" in curl("--compressed", f"{base}/files/page.html.gz").stdout
        assert status(f"{base}/%2e%2e/%2e%2e/etc/passwd", "--path-as-is") == 404
        assert status(f"{base}/../../etc/passwd", "--path-as-is") == 404


def test_file_options(tmp_path):
    site = tmp_path / "site"
    (site / "dir").mkdir(parents=True)
    (site / "dir" / "start.txt").write_bytes(b"start page")
    (site / "dir" / "index.html").write_bytes(b"not the index now")
    (site / "noext").write_bytes(b"no extension")
    (site / "doc.txt").write_bytes(b"doc text")
    (site / "paper.pdf").write_bytes(b"%PDF")
    (site / "thing.raw").write_bytes(b"HTTP/1.1 202 Accepted\r\nX-Raw: 1\r\n\r\nraw")
    (site / "script.rpy").write_text("from trioweb.static import Data\nresource = Data(b'rpy', 'text/plain')\n")
    (site / "out").symlink_to("/etc/hostname")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with trioweb("--path", str(site), "--index", "start.txt", "--index", "missing", "--mime-type", "text/x-plain",
                 "--ignore-ext", ".txt", "--allow-ignore-ext", "--processor", ".raw=trioweb.static.ASISProcessor",
                 "--follow-symlinks", port=port):
        assert curl(f"{base}/dir/").stdout == b"start page"
        assert b"Content-Type: text/x-plain" in curl("-I", f"{base}/noext").stdout
        assert curl(f"{base}/doc").stdout == b"doc text"
        assert curl(f"{base}/paper").stdout == b"%PDF"
        raw = curl("-i", f"{base}/thing.raw").stdout
        assert raw.startswith(b"HTTP/1.1 202 Accepted") and b"X-Raw: 1" in raw
        assert curl(f"{base}/script.rpy").stdout == b"rpy"
        assert curl(f"{base}/out").stdout == open("/etc/hostname", "rb").read()
    port = free_port()
    with trioweb("--path", str(site), port=port):
        assert status(f"http://127.0.0.1:{port}/out") == 404
        assert status(f"http://127.0.0.1:{port}/doc") == 404
        assert curl(f"http://127.0.0.1:{port}/dir/").stdout == b"not the index now"


def test_resource_script_option():
    port = free_port()
    with trioweb("--resource-script", str(HTDOCS / "clock.rpy"), port=port):
        for path in ("/", "/any/where"):
            assert curl(f"http://127.0.0.1:{port}{path}").stdout.startswith(b"<html><body>")


@pytest.mark.parametrize(("args", "message"), [
    (["--index", "x"], "--index can only be used with --path"),
    (["--follow-symlinks"], "--follow-symlinks can only be used with --path"),
    (["--path", ".", "--class", "trioweb.resource.Resource"], "give one of them"),
    (["--path", ".", "--resource-script", "x.rpy"], "give one of them"),
    (["--path", "/nonexistent/dir"], "no such file or directory"),
    (["--path", ".", "--processor", "rpy"], "is not of the form .EXT=MODULE.NAME"),
    (["--path", ".", "--processor", ".x=no.such.module"], "cannot load"),
])
def test_usage_errors(args, message):
    from tests.support.procs import trioweb_command

    result = subprocess.run([trioweb_command(), *args, "--listen", "tcp:0:interface=127.0.0.1"],
                            capture_output=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a server that drops to nobody")
def test_unreadable_file_is_403():
    # pytest's tmp dirs are private to root; nobody needs a world-traversable tree.
    site = Path(tempfile.mkdtemp(prefix="trioweb-public-"))
    site.chmod(0o755)
    if not all(os.stat(d).st_mode & 0o001 for d in site.parents):
        pytest.skip(f"{site.parent} is not traversable by other users")
    (site / "readable.txt").write_bytes(b"anyone may read this")
    (site / "private.txt").write_bytes(b"root only")
    (site / "private.txt").chmod(0o600)
    (site / "closed").mkdir(mode=0o700)
    (site / "closed").chmod(0o700)
    (site / "closed" / "x.txt").write_bytes(b"x")
    port = free_port()
    try:
        with trioweb("--path", str(site), "--uid", "nobody", port=port):
            base = f"http://127.0.0.1:{port}"
            assert curl(f"{base}/readable.txt").stdout == b"anyone may read this"
            private = curl("-i", f"{base}/private.txt").stdout
            assert private.startswith(b"HTTP/1.1 403 ") and b"root only" not in private
            assert status("-I", f"{base}/private.txt") == 403
            assert status(f"{base}/closed/") == 403
            assert status(f"{base}/closed/x.txt") == 403
            assert status(f"{base}/missing.txt") == 404
    finally:
        shutil.rmtree(site)


def test_precompressed_over_curl(tmp_path):
    (tmp_path / "app.js").write_bytes(b"let plain = 1;")
    (tmp_path / "app.js.gz").write_bytes(gzip.compress(b"let zipped = 1;"))
    port = free_port()
    with trioweb("--path", str(tmp_path), port=port):
        assert curl("--compressed", f"http://127.0.0.1:{port}/app.js").stdout == b"let zipped = 1;"
        assert curl(f"http://127.0.0.1:{port}/app.js").stdout == b"let plain = 1;"
