"""Hostile requests and hostile trees (security corpus §1.3): never a file outside, never a 500."""

from __future__ import annotations

import os
import socket

import pytest
import trio

import trioweb._fs
import trioweb.static
from trioweb.resource import Resource
from trioweb.static import File

HOSTNAME = open("/etc/hostname", "rb").read()


@pytest.fixture(autouse=True, params=["openat2", "proc"])
def opener(request, monkeypatch):
    """Every test runs with openat2(RESOLVE_BENEATH) and with the /proc fallback of older kernels."""
    if request.param == "openat2" and trioweb._fs._openat2 is None:
        pytest.skip("this kernel has no openat2")
    if request.param == "proc":
        monkeypatch.setattr(trioweb._fs, "_openat2", None)
    return request.param


@pytest.fixture
def hostile(tree):
    """The tree plus a sibling tree with a secret, and links of every kind."""
    sibling = tree.parent / "sibling"
    sibling.mkdir()
    (sibling / "secret.txt").write_bytes(b"SECRET of the sibling tree")
    (tree / "link-out").symlink_to("/etc/hostname")
    (tree / "link-sibling").symlink_to("../sibling/secret.txt")
    (tree / "dir-sibling").symlink_to("../sibling")
    (tree / "link-in").symlink_to("a.txt")
    (tree / "abs-in").symlink_to(tree / "a.txt")
    (tree / "sub-alias").symlink_to("sub")
    (tree / "zero").symlink_to("/dev/zero")
    (tree / "null").symlink_to("/dev/null")
    os.mkfifo(tree / "fifo")
    (tree / "%2e%2e").write_bytes(b"a file literally named %2e%2e")
    (tree / "back\\slash.txt").write_bytes(b"backslash is an ordinary byte")
    return tree


TRAVERSALS = [
    b"/../../../../etc/passwd",
    b"/sub/../../root/a.txt",
    b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/sub/.%2e/.%2e/.%2e/etc/passwd",
    b"/sub/%2e%2e/a.txt",
    b"/..%2f..%2f..%2fetc%2fpasswd",
    b"/sub%2finner.css",
    b"/sub/./inner.css",
    b"/.",
    b"/..",
    b"/%2e",
    b"/a.txt%00.html",
    b"/%00",
    b"/sub/%00/x",
    b"/..%5c..%5c..%5cetc%5cpasswd",
    b"/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    b"/%e0%80%ae%e0%80%ae/etc/passwd",
    b"/%ff",
    b"/.%%32%65/.%%32%65/etc/passwd",
    b"/%252e%252e/%252e%252e/etc/passwd",
    b"/dir-sibling/secret.txt",
    b"/dir-sibling/",
    b"/dir-sibling",
    b"/link-out",
    b"/link-sibling",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_is_404(hostile, serve_file, path):
    site = await serve_file(hostile)
    response = await site.get(path)
    assert response.status == 404, response
    assert b"root:" not in response.body and b"SECRET" not in response.body
    assert HOSTNAME not in response.body


async def test_decoding_happens_once(hostile, serve_file):
    site = await serve_file(hostile)
    assert (await site.get(b"/%252e%252e")).body == b"a file literally named %2e%2e"
    assert (await site.get(b"/back%5Cslash.txt")).body == b"backslash is an ordinary byte"


async def test_symlinks_inside_the_root_are_served(hostile, serve_file):
    site = await serve_file(hostile)
    assert (await site.get("/link-in")).body == b"0123456789abcdefghij"
    assert (await site.get("/abs-in")).body == b"0123456789abcdefghij"
    assert (await site.get("/sub-alias/inner.css")).body == b"body{}"


async def test_follow_symlinks_is_a_deliberate_choice(hostile, serve_file):
    root = File(str(hostile))
    root.follow_symlinks = True
    site = await serve_file(root)
    assert (await site.get("/link-out")).body == HOSTNAME
    assert (await site.get("/dir-sibling/secret.txt")).body == b"SECRET of the sibling tree"
    # Still only regular files and directories, and still no ".." segments.
    assert (await site.get("/zero")).status == 404
    assert (await site.get("/null")).status == 404
    assert (await site.get("/%2e%2e/%2e%2e/etc/passwd")).status == 404


async def test_special_files_are_404_and_do_not_hang(hostile, serve_file):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(hostile / "sock"))
    site = await serve_file(hostile)
    with trio.fail_after(5):
        for path in ("/fifo", "/zero", "/null", "/sock"):
            response = await site.get(path)
            assert response.status == 404, path
            assert len(response.body) < 1000
    listener.close()


async def test_precompressed_variant_gets_the_same_checks(hostile, serve_file):
    """aiohttp CVE-2024-42367: app.js.gz -> /etc/... must not be served for app.js."""
    (hostile / "app.js").write_bytes(b"plain js")
    (hostile / "app.js.gz").symlink_to("/etc/hostname")
    (hostile / "lib.js").write_bytes(b"plain lib")
    (hostile / "lib.js.br").symlink_to("../sibling/secret.txt")
    (hostile / "lib.js.gz").symlink_to("fifo")
    (hostile / "x.js").write_bytes(b"plain x")
    os.mkfifo(hostile / "x.js.gz")
    site = await serve_file(hostile)
    for path, plain in (("/app.js", b"plain js"), ("/lib.js", b"plain lib"), ("/x.js", b"plain x")):
        with trio.fail_after(5):
            response = await site.get(path, b"Accept-Encoding: gzip, br\r\n")
        assert (response.status, response.body) == (200, plain), path
        assert response.header(b"content-encoding") is None


async def test_index_file_that_escapes_is_404(hostile, serve_file):
    (hostile / "sub" / "index.html").symlink_to("/etc/hostname")
    site = await serve_file(hostile)
    response = await site.get("/sub/")
    assert response.status == 404
    assert HOSTNAME not in response.body


async def test_processor_on_an_escaping_link_is_not_run(hostile, serve_file):
    ran = []
    (hostile / "evil.rpy").symlink_to("../sibling/secret.txt")
    root = File(str(hostile))
    root.processors = {".rpy": lambda path, registry: ran.append(path)}
    site = await serve_file(root)
    assert (await site.get("/evil.rpy")).status == 404
    assert ran == []


async def test_redirect_location_never_starts_with_two_slashes(hostile, serve_file):
    """CPython gh-87389: //evil.example/.. must not become Location: //evil.example/../"""
    (hostile / "evil.example").mkdir()
    root = Resource()
    root.putChild(b"", File(str(hostile)))  # lets //x reach the File
    for resource in (File(str(hostile)), root):
        site = await serve_file(resource)
        for path in (b"//evil.example", b"//evil.example/%2e%2e", b"///evil.example", b"//sub"):
            response = await site.get(path)
            assert response.status in (302, 404), (path, response.status)
            location = response.header(b"location")
            if location is not None:
                assert location.startswith(b"http://a/"), location


async def test_head_and_304_never_read_the_file(tree, serve_file, monkeypatch):
    def refuse(*args):
        raise AssertionError("the file was read")

    monkeypatch.setattr(trioweb.static, "read_exactly", refuse)
    monkeypatch.setattr(trioweb.static, "send_pieces", refuse)
    site = await serve_file(tree)
    for path in ("/a.txt", "/big.bin"):
        head = await site.get(path, method=b"HEAD")
        assert head.status == 200
        cached = await site.get(path, b"If-None-Match: " + head.header(b"etag") + b"\r\n")
        assert cached.status == 304


async def test_server_keeps_serving_after_bad_requests(hostile, serve_file):
    site = await serve_file(hostile)
    conn = await site.running.connect()
    try:
        for path in [*TRAVERSALS[:10], b"/a.txt"]:
            await conn.send(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            response = await conn.read_response()
            assert response.status == (200 if path == b"/a.txt" else 404)
    finally:
        await conn.aclose()
