"""``--add-header 'Server: ...'`` and ``--server-header`` (issue 20, item 10), with curl."""

from __future__ import annotations

import subprocess

from tests.support.procs import curl, free_port, trioweb, trioweb_command


def server_lines(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"server:")]


def test_an_added_server_header_replaces_the_default():
    port = free_port()
    with trioweb("--add-header", "Server: x", port=port):
        for path in ("/", "/missing"):
            head = curl("-si", f"http://127.0.0.1:{port}{path}").stdout
            assert server_lines(head) == [b"Server: x"]


def test_server_header_names_or_hides_the_token():
    port = free_port()
    with trioweb("--server-header", "frontdoor", port=port):
        assert server_lines(curl("-si", f"http://127.0.0.1:{port}/").stdout) == [b"Server: frontdoor"]
    port = free_port()
    with trioweb("--server-header", "none", port=port):
        head = curl("-si", f"http://127.0.0.1:{port}/").stdout
        assert head.startswith(b"HTTP/1.1 200") and server_lines(head) == []
        assert b"\r\nDate: " in head


def test_server_header_rejects_what_cannot_be_a_field():
    result = subprocess.run([trioweb_command(), "--server-header", "a\nb"], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 2 and "--server-header" in result.stderr
