"""Every example under examples/static runs and does what the guide says."""

from __future__ import annotations

import sys

from tests.support.procs import ROOT, Process, curl, free_port

EXAMPLES = ROOT / "examples" / "static"
HTDOCS = ROOT / "examples" / "htdocs"


def run_example(name: str, *args: str) -> tuple[Process, str]:
    port = free_port()
    return Process([sys.executable, str(EXAMPLES / name), str(port), *args], port=port), f"http://127.0.0.1:{port}"


def test_serve_directory(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello from /tmp")
    process, base = run_example("serve_directory.py", str(tmp_path))
    with process:
        assert curl(f"{base}/hello.txt").stdout == b"hello from /tmp"
        assert b"hello.txt" in curl(f"{base}/").stdout


def test_index_rpy_and_processors():
    process, base = run_example("index_rpy.py")
    with process:
        assert curl(f"{base}/").stdout == b"<html><body>index.rpy rendered this page.</body></html>"
        assert curl(f"{base}/foo.rpy").stdout == b"foo.rpy at foo.rpy"
        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/foo").stdout == b"404"
        forgot = curl("-i", f"{base}/forgot.rpy").stdout
        assert forgot.startswith(b"HTTP/1.1 500 ") and b"You forgot to assign" in forgot
        broken = curl("-i", f"{base}/broken.rpy").stdout
        assert broken.startswith(b"HTTP/1.1 500 ") and b"Processing Failed" in broken
        assert b"broken on purpose" not in broken
        built = curl(f"{base}/cached.rpy").stdout
        assert built.startswith(b"built at ") and curl(f"{base}/cached.rpy").stdout == built


def test_ignore_ext():
    process, base = run_example("ignore_ext.py")
    with process:
        assert curl(f"{base}/foo").stdout == b"foo.rpy at foo"
        assert curl(f"{base}/foo.rpy").stdout == b"foo.rpy at foo.rpy"


def test_content_types():
    process, base = run_example("content_types.py")
    with process:
        assert b"Content-Type: text/gemini" in curl("-I", f"{base}/files/hello.gmi").stdout
        assert b"Content-Type: text/plain; charset=utf-8" in curl("-I", f"{base}/files/docs/guide.md").stdout
        assert b"Content-Type: image/svg+xml" in curl("-I", f"{base}/files/logo.svg").stdout


def test_doc_child(tmp_path):
    (tmp_path / "somepackage").mkdir()
    (tmp_path / "somepackage" / "README").write_bytes(b"package docs")
    process, base = run_example("doc_child.py", str(tmp_path))
    with process:
        assert curl(f"{base}/").stdout == (HTDOCS / "index.html").read_bytes()
        assert b'href="./somepackage/"' in curl(f"{base}/doc/").stdout
        assert curl(f"{base}/doc/somepackage/README").stdout == b"package docs"
