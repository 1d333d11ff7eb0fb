"""static.File: serving files, directories, index names, types, processors, putChild."""

from __future__ import annotations

import gzip

from tests.trioweb.static.sizes import BIG_SIZE
from trioweb.resource import Resource
from trioweb.static import ASISProcessor, Data, File, Registry


async def test_file_body_and_headers(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/a.txt")
    assert response.status == 200
    assert response.body == b"0123456789abcdefghij"
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"content-length") == b"20"
    assert response.header(b"accept-ranges") == b"bytes"
    assert response.header(b"last-modified").endswith(b"GMT")
    assert response.header(b"etag").startswith(b'"')


async def test_big_file_streams_whole(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/big.bin")
    assert response.status == 200
    assert len(response.body) == BIG_SIZE
    assert response.body == (tree / "big.bin").read_bytes()
    assert response.header(b"content-type") == b"application/octet-stream"
    assert not response.chunked


async def test_keep_alive_after_streamed_file(tree, serve_file):
    site = await serve_file(tree)
    conn = await site.running.connect()
    try:
        for path in (b"/big.bin", b"/a.txt", b"/big.bin"):
            await conn.send(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            response = await conn.read_response()
            assert response.status == 200
            assert response.body == (tree / path.decode()[1:]).read_bytes()
    finally:
        await conn.aclose()


async def test_empty_file(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/empty.txt")
    assert (response.status, response.body, response.header(b"content-length")) == (200, b"", b"0")


async def test_head_has_get_headers_and_no_body(tree, serve_file):
    site = await serve_file(tree)
    for path in ("/a.txt", "/big.bin"):
        get = await site.get(path)
        head = await site.get(path, method=b"HEAD")
        assert head.status == 200
        assert head.body == b""
        for name in (b"content-length", b"content-type", b"etag", b"last-modified", b"accept-ranges"):
            assert head.header(name) == get.header(name), name


async def test_other_methods_are_405(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/a.txt", method=b"POST", headers=b"Content-Length: 0\r\n")
    assert response.status == 405
    assert response.header(b"allow") == b"GET, HEAD"


async def test_missing_file_404_with_child_not_found(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/nothing.txt")
    assert response.status == 404
    assert b"File not found." in response.body


async def test_custom_child_not_found_and_forbidden_are_used(tree, serve_file):
    class Mine(File):
        childNotFound = Data(b"no such thing here", "text/plain")

    site = await serve_file(Mine(str(tree)))
    response = await site.get("/sub/missing")
    assert response.body == b"no such thing here"


async def test_directory_redirects_to_slash_keeping_query(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/sub?x=1&y=%20")
    assert response.status == 302
    location = response.header(b"location")
    assert location == b"http://a/sub/?x=1&y=%20"  # the URL as the client named it (Host without port)
    assert b'href="%s"' % location.replace(b"&", b"&amp;") in response.body


async def test_directory_with_index(tree, serve_file):
    site = await serve_file(tree)
    response = await site.get("/withindex/")
    assert (response.status, response.body) == (200, b"the index")
    assert response.header(b"content-type") == b"text/html"


async def test_index_names_replaced(tree, serve_file):
    (tree / "withindex" / "start.txt").write_bytes(b"start here")
    root = File(str(tree))
    root.indexNames = ["start.txt"]
    site = await serve_file(root)
    assert (await site.get("/withindex/")).body == b"start here"
    listing = await site.get("/sub/")
    assert b"Directory listing for /sub/" in listing.body


async def test_file_of_a_single_file_as_child(tree, serve_file):
    root = Resource()
    root.putChild(b"favicon.ico", File(str(tree / "a.txt")))
    site = await serve_file(root)
    response = await site.get("/favicon.ico")
    assert (response.status, response.body) == (200, b"0123456789abcdefghij")


async def test_file_below_a_file_is_404(tree, serve_file):
    site = await serve_file(tree)
    assert (await site.get("/a.txt/")).status == 404
    assert (await site.get("/a.txt/x")).status == 404


async def test_empty_segment_in_the_middle_is_404(tree, serve_file):
    site = await serve_file(tree)
    assert (await site.get("//a.txt")).status == 404
    assert (await site.get("/sub//inner.css")).status == 404


async def test_content_types_and_default_type(tree, serve_file):
    for name in ("x.woff2", "x.js", "x.json", "x.svg", "x.unknownext", "X.TXT"):
        (tree / name).write_bytes(b"data")
    root = File(str(tree), defaultType="application/x-unknown")
    site = await serve_file(root)
    expected = {"x.woff2": b"font/woff2", "x.js": b"text/javascript", "x.json": b"application/json",
                "x.svg": b"image/svg+xml", "x.unknownext": b"application/x-unknown", "X.TXT": b"text/plain"}
    for name, ctype in expected.items():
        assert (await site.get("/" + name)).header(b"content-type") == ctype, name


async def test_content_types_assignable_per_tree(tree, serve_file):
    (tree / "sub" / "t.gmi").write_bytes(b"# hi")
    root = File(str(tree))
    root.contentTypes = dict(File.contentTypes, **{".gmi": "text/gemini"})
    site = await serve_file(root)
    assert (await site.get("/sub/t.gmi")).header(b"content-type") == b"text/gemini"
    assert ".gmi" not in File.contentTypes


async def test_compressed_file_served_with_content_encoding(tree, serve_file):
    (tree / "x.html.gz").write_bytes(gzip.compress(b"<p>zipped</p>"))
    (tree / "archive.gz").write_bytes(gzip.compress(b"raw"))
    site = await serve_file(tree)
    response = await site.get("/x.html.gz")
    assert response.header(b"content-type") == b"text/html"
    assert response.header(b"content-encoding") == b"gzip"
    assert gzip.decompress(response.body) == b"<p>zipped</p>"
    plain = await site.get("/archive.gz")
    assert plain.header(b"content-type") == b"application/gzip"
    assert plain.header(b"content-encoding") is None


async def test_precompressed_variant_when_accepted(tree, serve_file):
    (tree / "app.js").write_bytes(b"console.log('plain')")
    (tree / "app.js.gz").write_bytes(gzip.compress(b"console.log('zipped')"))
    site = await serve_file(tree)
    zipped = await site.get("/app.js", b"Accept-Encoding: br;q=0, gzip\r\n")
    assert zipped.header(b"content-encoding") == b"gzip"
    assert zipped.header(b"content-type") == b"text/javascript"
    assert zipped.header(b"vary") == b"Accept-Encoding"
    assert gzip.decompress(zipped.body) == b"console.log('zipped')"
    for refused in (b"", b"Accept-Encoding: gzip;q=0\r\n", b"Accept-Encoding: identity\r\n"):
        plain = await site.get("/app.js", refused)
        assert plain.body == b"console.log('plain')"
        assert plain.header(b"content-encoding") is None


async def test_put_child_overrides_filesystem(tree, serve_file):
    root = File(str(tree))
    root.putChild(b"sub", Data(b"not the directory", "text/plain"))
    root.putChild(b"doc", File(str(tree / "withindex")))
    site = await serve_file(root)
    assert (await site.get("/sub")).body == b"not the directory"
    assert (await site.get("/doc/")).body == b"the index"
    assert (await site.get("/doc/index.html")).body == b"the index"


async def test_ignore_ext(tree, serve_file):
    (tree / "foo.bar").write_bytes(b"foo dot bar")
    (tree / "only.zzz").write_bytes(b"only zzz")
    root = File(str(tree), ignoredExts=(".bar",))
    site = await serve_file(root)
    assert (await site.get("/foo")).body == b"foo dot bar"
    assert (await site.get("/only")).status == 404
    root.ignoreExt("*")
    assert (await site.get("/only")).body == b"only zzz"
    assert (await site.get("/a")).body == b"0123456789abcdefghij"  # a.txt


async def test_processors_get_path_and_shared_registry(tree, serve_file):
    seen = []

    class Shown(Resource):
        isLeaf = True

        def __init__(self, path, registry):
            super().__init__()
            seen.append((path, registry))

        def render_GET(self, request):
            return b"processed"

    (tree / "sub" / "x.foo").write_bytes(b"source")
    registry = Registry()
    root = File(str(tree), registry=registry)
    root.processors = {".foo": Shown, ".asis": ASISProcessor}
    site = await serve_file(root)
    assert (await site.get("/sub/x.foo")).body == b"processed"
    assert seen == [(str(tree / "sub" / "x.foo"), registry)]
    assert (await site.get("/sub/missing.foo")).status == 404
    assert len(seen) == 1


class CheckedEveryTime(File):
    root_recheck = 0.0


async def test_root_symlink_repointed_by_a_deployment(tmp_path, serve_file):
    for release in ("v1", "v2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "version.txt").write_text(release)
    (tmp_path / "current").symlink_to("v1")
    site = await serve_file(CheckedEveryTime(str(tmp_path / "current")))
    assert (await site.get("/version.txt")).body == b"v1"
    (tmp_path / "next").symlink_to("v2")
    (tmp_path / "next").rename(tmp_path / "current")
    assert (await site.get("/version.txt")).body == b"v2"


# -- children kept by traversal (File._resolved, see trioweb.static's docstring) --


async def test_kept_child_follows_the_disk_between_requests(tree, serve_file):
    """A kept child is only a path: a file that becomes a directory, goes
    missing or comes back is answered from the disk on each request."""
    site = await serve_file(tree)
    (tree / "later").write_bytes(b"a file")
    assert (await site.get("/later")).body == b"a file"
    (tree / "later").unlink()
    assert (await site.get("/later")).status == 404
    (tree / "later").mkdir()
    (tree / "later" / "index.html").write_bytes(b"now a directory")
    assert (await site.get("/later")).status == 302
    assert (await site.get("/later/")).body == b"now a directory"
    (tree / "later" / "index.html").unlink()
    (tree / "later").rmdir()
    (tree / "later").symlink_to(tree.parent)  # out of the tree
    assert (await site.get("/later")).status == 404


async def test_setting_changed_after_requests_reaches_the_next_one(tree, serve_file):
    (tree / "withindex" / "start.txt").write_bytes(b"start here")
    (tree / "sub" / "x.gmi").write_bytes(b"# hi")
    root = File(str(tree))
    site = await serve_file(root)
    assert (await site.get("/withindex/")).body == b"the index"
    assert (await site.get("/sub/x.gmi")).header(b"content-type") == b"text/html"
    root.indexNames = ["start.txt"]
    root.defaultType = "text/gemini"
    assert (await site.get("/withindex/")).body == b"start here"
    assert (await site.get("/sub/x.gmi")).header(b"content-type") == b"text/gemini"
    root.ignoreExt(".txt")  # looks at the disk while traversing: nothing kept is used
    assert (await site.get("/a")).body == b"0123456789abcdefghij"
    root.processors = {".gmi": lambda path, registry: Data(b"processed", "text/plain")}
    assert (await site.get("/sub/x.gmi")).body == b"processed"


def test_children_kept_are_reused_and_bounded_per_tree(tree, monkeypatch):
    import trioweb.static as static

    monkeypatch.setattr(static, "RESOLVED_CHILDREN", 3)
    root = File(str(tree))
    first = root.getChild(b"a.txt", None)
    assert root.getChild(b"a.txt", None) is first
    assert root.getChild(b"..", None) is root.childNotFound
    # Made-up paths, however deep, share the tree's one bounded table.
    node = root
    for name in (b"x", b"y", b"z", b"w"):
        node = node.getChild(name, None)
        assert len(root._resolved) <= 3
    assert node.path == str(tree / "x" / "y" / "z" / "w")
    assert root.getChild(b"a.txt", None) is not first  # forgotten when the bound was reached
    assert root.getChild(b"a.txt", None).path == first.path


async def test_children_kept_below_processors_meet_a_processor_added_later(tree, serve_file):
    """``trioweb --path`` sets processors: children whose extension has none
    are kept too, and the processors are asked again on every request."""
    (tree / "sub" / "x.gmi").write_bytes(b"# hi")
    root = File(str(tree))
    root.processors = {".asis": ASISProcessor}
    site = await serve_file(root)
    assert (await site.get("/sub/x.gmi")).body == b"# hi"
    sub = root.getChild(b"sub", None)
    assert sub is root.getChild(b"sub", None)
    assert sub.getChild(b"x.gmi", None) is sub.getChild(b"x.gmi", None)
    root.processors[".gmi"] = lambda path, registry: Data(b"processed", "text/plain")  # in place: no setattr
    assert (await site.get("/sub/x.gmi")).body == b"processed"
    del root.processors[".gmi"]
    assert (await site.get("/sub/x.gmi")).body == b"# hi"
