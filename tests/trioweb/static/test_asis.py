"""ASISProcessor: status and headers from the file, validated."""

from __future__ import annotations

import pytest

from trioweb.static import ASISProcessor, File


def _root(path) -> File:
    root = File(str(path))
    root.processors = {".asis": ASISProcessor}
    return root


async def test_status_line_form(tmp_path, serve_file):
    (tmp_path / "x.asis").write_bytes(
        b"HTTP/1.0 201 Made It\r\nX-Custom: yes\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n"
        b"Set-Cookie: b=2\r\nContent-Length: 999\r\nConnection: close\r\nServer: fake\r\n\r\nthe body\r\n")
    site = await serve_file(_root(tmp_path))
    response = await site.get("/x.asis")
    assert (response.status, response.reason) == (201, b"Made It")
    assert response.header(b"x-custom") == b"yes"
    assert response.header_list(b"set-cookie") == [b"a=1", b"b=2"]
    assert response.body == b"the body\r\n"
    assert response.header(b"content-length") == b"10"
    assert response.header_list(b"server") == [b"trioweb/0.1.0"] or b"fake" not in response.header(b"server")
    head = await site.get("/x.asis", method=b"HEAD")
    assert (head.status, head.body, head.header(b"content-length")) == (201, b"", b"10")


async def test_apache_form_with_status_header_and_lf(tmp_path, serve_file):
    (tmp_path / "moved.asis").write_bytes(b"Status: 301 Moved\nLocation: /there\n\n<a href=/there>moved</a>")
    (tmp_path / "plain.asis").write_bytes(b"Content-Type: text/plain\n\nno status: 200")
    (tmp_path / "bare.asis").write_bytes(b"\r\n\r\njust a body")
    site = await serve_file(_root(tmp_path))
    moved = await site.get("/moved.asis")
    assert (moved.status, moved.header(b"location"), moved.body) == (301, b"/there", b"<a href=/there>moved</a>")
    plain = await site.get("/plain.asis")
    assert (plain.status, plain.body) == (200, b"no status: 200")
    assert (await site.get("/bare.asis")).body == b"just a body"


async def test_big_body_is_streamed(tmp_path, serve_file):
    body = bytes(range(256)) * 4096
    (tmp_path / "big.asis").write_bytes(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-test\r\n\r\n" + body)
    site = await serve_file(_root(tmp_path))
    response = await site.get("/big.asis")
    assert response.body == body


@pytest.mark.parametrize("content", [
    b"HTTP/1.1 200 OK\r\nX-A: b\r\nno blank line",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\x00\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: b\rSet-Cookie: evil=1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: v\x00v\r\n\r\n",
    b"Status: abc\n\n",
    b"Status: 200 OK\r\nLocation: /x\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno-colon-line\r\n\r\n",
])
async def test_malformed_file_is_500_never_split(tmp_path, serve_file, content):
    (tmp_path / "bad.asis").write_bytes(content)
    site = await serve_file(_root(tmp_path))
    response = await site.get("/bad.asis")
    assert response.status == 500
    assert b"Processing Failed" in response.body
    assert response.header(b"set-cookie") is None and response.header(b"x-a") is None
    # The connection stays usable: the response was framed by the server.
    conn = await site.running.connect()
    try:
        await conn.send(b"GET /bad.asis HTTP/1.1\r\nHost: a\r\n\r\nGET /bad.asis HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await conn.read_response()).status == 500
        assert (await conn.read_response()).status == 500
    finally:
        await conn.aclose()
