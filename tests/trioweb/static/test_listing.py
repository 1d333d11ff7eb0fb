"""Directory listings: order, columns, escaping of hostile names, what is hidden."""

from __future__ import annotations

import html
import os
import re
from urllib.parse import unquote

import pytest

from trioweb.resource import Resource
from trioweb.static import DirectoryLister, File, formatFileSize

HOSTILE_NAMES = [
    "<img src=x onerror=alert(1)>.txt",
    'a"b.txt',
    "x:y",
    "javascript:alert(1)",
    "it's & <b>bold",
    "%41%2e%2e.txt",
    "space name.txt",
    "#hash?q=1",
    "ünïcødé.txt",
]


def _rows(body: bytes) -> list[tuple[str, str, list[str]]]:
    """(href, label, other cells) of each row of the listing table."""
    rows = []
    for row in re.findall(r"<tr class=\"(?:odd|even)\">(.*?)</tr>", body.decode("utf-8")):
        href, label = re.search(r'<a href="([^"]*)">([^<]*)</a>', row).groups()
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
        rows.append((html.unescape(href), html.unescape(label), cells))
    return rows


async def test_listing_page(tree, serve_in_memory):
    (tree / "sub" / "b.html").write_bytes(b"x" * 5000)
    (tree / "sub" / "Zeta").mkdir()
    (tree / "sub" / "alpha").mkdir()
    (tree / "sub" / "c.tar.gz").write_bytes(b"x")
    site = await serve_in_memory(tree)
    response = await site.get("/sub/")
    assert response.status == 200
    assert response.header(b"content-type") == b"text/html; charset=utf-8"
    assert response.header(b"x-content-type-options") == b"nosniff"
    assert b"script-src" not in response.header(b"content-security-policy")
    assert b"<title>Directory listing for /sub/</title>" in response.body
    assert b"<style>" in response.body and b"<link" not in response.body and b"<script" not in response.body
    rows = _rows(response.body)
    assert [label for _, label, _ in rows] == ["Parent directory", "alpha/", "Zeta/", "b.html", "c.tar.gz",
                                             "inner.css"]
    assert rows[1][0] == "./alpha/"
    assert rows[3][2][:2] == ["4K", "[text/html]"]
    assert rows[4][2][1] == "[application/x-tar] [gzip]"
    assert rows[2][2][1] == "[Directory]"


async def test_root_listing_has_no_parent_link(tree, serve_in_memory):
    site = await serve_in_memory(tree)
    rows = _rows((await site.get("/")).body)
    assert rows[0][1] == "sub/" or rows[0][1] == "withindex/"
    assert all(label != "Parent directory" for _, label, _ in rows)


async def test_hostile_names_are_escaped_and_links_work(tree, serve_in_memory):
    listed = tree / "hostile"
    listed.mkdir()
    for name in HOSTILE_NAMES:
        (listed / name).write_bytes(name.encode("utf-8"))
    site = await serve_in_memory(tree)
    response = await site.get("/hostile/")
    body = response.body.decode("utf-8")
    assert "<img" not in body and "<b>" not in body
    assert 'href="javascript' not in body and 'href="x:' not in body
    rows = {label: href for href, label, _ in _rows(response.body)}
    for name in HOSTILE_NAMES:
        href = rows[name]
        assert href.startswith("./") and all(c not in href for c in ' "<>#?:&\'')
        assert unquote(href[2:]) == name
        got = await site.get("/hostile/" + href[2:])
        assert got.body == name.encode("utf-8"), name


async def test_title_escapes_the_path(tree, serve_in_memory):
    (tree / "<b>&dir").mkdir()
    site = await serve_in_memory(tree)
    response = await site.get("/%3Cb%3E%26dir/")
    assert b"Directory listing for /&lt;b&gt;&amp;dir/" in response.body
    assert b"<b>&dir" not in response.body


async def test_hidden_entries(tree, serve_in_memory):
    listed = tree / "mixed"
    listed.mkdir()
    (listed / "shown.txt").write_bytes(b"x")
    (listed / ".env").write_bytes(b"SECRET=1")
    (listed / ".git").mkdir()
    (listed / "broken").symlink_to("nowhere")
    (listed / "out").symlink_to("/etc/hostname")
    (listed / "in").symlink_to("../a.txt")
    (listed / "fifo").symlink_to("/dev/null")
    os.mkfifo(listed / "pipe")
    os.close(os.open(os.path.join(os.fsencode(listed), b"bad\xffname"), os.O_CREAT | os.O_WRONLY))
    site = await serve_in_memory(tree)
    labels = [label for _, label, _ in _rows((await site.get("/mixed/")).body)]
    assert labels == ["Parent directory", "in", "shown.txt"]


async def test_listing_methods_and_children(tree, serve_in_memory):
    site = await serve_in_memory(tree)
    assert (await site.get("/sub/", method=b"POST", headers=b"Content-Length: 0\r\n")).status == 405
    head = await site.get("/sub/", method=b"HEAD")
    assert head.status == 200 and head.body == b""
    root = Resource()
    root.putChild(b"list", DirectoryLister(str(tree / "sub")))
    site = await serve_in_memory(root)
    assert b"inner.css" in (await site.get("/list")).body
    assert (await site.get("/list/inner.css")).status == 404


async def test_listing_of_a_vanished_directory_is_404(tree, serve_in_memory):
    root = File(str(tree))
    site = await serve_in_memory(root)
    (tree / "sub" / "inner.css").unlink()
    (tree / "sub").rmdir()
    assert (await site.get("/sub/")).status == 404


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"), (123, "123B"), (4567, "4K"), (8900000, "8M"), (1234000000, "1G"), (1234567890000, "1149G"),
])
def test_format_file_size(size, text):
    assert formatFileSize(size) == text
