"""Every example under examples/core runs and does what the guide says."""

from __future__ import annotations

import socket
import sys
import time

from tests.support.procs import ROOT, Process, curl, free_port

EXAMPLES = ROOT / "examples" / "core"


def run_example(name: str) -> tuple[Process, int]:
    port = free_port()
    return Process([sys.executable, str(EXAMPLES / name), str(port)], port=port), port


def test_hello_site():
    process, port = run_example("hello_site.py")
    with process:
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"<html><body>Hello, world!</body></html>"


def test_resource_tree():
    process, port = run_example("resource_tree.py")
    with process:
        assert b'href="hello"' in curl(f"http://127.0.0.1:{port}/").stdout
        assert curl(f"http://127.0.0.1:{port}/hello").stdout == b"Hello from a static child."
        echo = curl(f"http://127.0.0.1:{port}/echo/a/b?x=1").stdout
        assert echo == b"prepath=[b'echo'] postpath=[b'a', b'b'] args={b'x': [b'1']}"
        assert b"404" in curl("-si", f"http://127.0.0.1:{port}/nothing").stdout.split(b"\r\n")[0]


def test_delayed():
    process, port = run_example("delayed.py")
    with process:
        started = time.monotonic()
        result = curl("-si", f"http://127.0.0.1:{port}/")
        assert time.monotonic() - started >= 0.9
        assert b"Sorry to keep you waiting." in result.stdout
        assert b"Content-Length: 52" in result.stdout  # written and finished together: framed with a length


def test_not_wanted():
    process, port = run_example("not_wanted.py")
    with process:
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.3)
        client.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "work cancelled" not in process.output():
            time.sleep(0.05)
        output = process.output()
        assert "client went away" in output and "work cancelled" in output
        assert "response delivered" not in output
