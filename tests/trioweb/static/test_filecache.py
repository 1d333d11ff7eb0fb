"""Kept copies of small files (trioweb.static._filecache): served while the file is
unchanged, never once it changed, moved, vanished or became unreachable."""

from __future__ import annotations

import gzip
import os
import time
from email.utils import formatdate
from pathlib import Path

import trio

from trioweb._fs import ServedRoot
from trioweb.static import File, _filecache
from trioweb.static._filecache import KeptFile, SmallFileCache, identity


def _settled_files(root: Path, contents: dict[str, bytes]) -> None:
    """Write files and wait until their ctime counts as settled, as on a live site."""
    for name, data in contents.items():
        (root / name).write_bytes(data)
    time.sleep(_filecache.SETTLED + 0.1)


def _is_kept(root: Path, relative: str) -> bool:
    served = ServedRoot(str(root))
    _filecache.kept_copy(served, "", False)  # no copy for the root itself, and no error either
    return _filecache.kept_copy(served, relative, False) is not None


# -- the cache alone, on real files ---------------------------------------------


def clock_ahead() -> int:
    """A clock 5 s ahead: files written now count as settled."""
    return time.time_ns() + 5 * 10**9


def _offer(cache: SmallFileCache, path: Path, content: bytes, *, change_before_keep: bytes | None = None) -> None:
    """Open ``path``, fstat it, and offer ``content`` as what was read of it
    (after writing ``change_before_keep`` to it, if given, as if it changed mid-read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if change_before_keep is not None:
            path.write_bytes(change_before_keep)
        cache.keep(("root", path.name, False), fd, info, content)
    finally:
        os.close(fd)


def _lookup(cache: SmallFileCache, directory: Path, name: str, root: object = "root") -> KeptFile | None:
    dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        return cache.get((root, name, False), dir_fd, name)
    finally:
        os.close(dir_fd)


def test_copy_of_a_settled_file_is_kept_and_matched(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    cache = SmallFileCache(clock_ns=clock_ahead)
    _offer(cache, tmp_path / "f", b"hello")
    found = _lookup(cache, tmp_path, "f")
    assert found is not None and found.content == b"hello"
    info = os.stat(tmp_path / "f")
    assert found.identity == identity(info)
    # The validators made once, when the copy was kept, from the identity alone.
    assert found.etag == b'"%x-%x"' % (info.st_mtime_ns, 5)
    assert found.last_modified == formatdate(int(info.st_mtime), usegmt=True).encode()
    assert _lookup(cache, tmp_path, "f", root="other root") is None


def test_no_copy_of_a_file_changed_within_the_last_second(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"fresh")
    cache = SmallFileCache()
    _offer(cache, tmp_path / "f", b"fresh")
    assert _lookup(cache, tmp_path, "f") is None


def test_no_copy_when_the_file_changed_while_it_was_read(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"before")
    cache = SmallFileCache(clock_ns=clock_ahead)
    _offer(cache, tmp_path / "f", b"before", change_before_keep=b"after, longer")
    assert cache._entries == {}


def test_only_small_files_and_whole_contents_are_kept(tmp_path: Path) -> None:
    cache = SmallFileCache(max_bytes=1000, max_file_bytes=10, clock_ns=clock_ahead)
    (tmp_path / "big").write_bytes(b"x" * 11)
    (tmp_path / "part").write_bytes(b"y" * 8)
    _offer(cache, tmp_path / "big", b"x" * 11)
    _offer(cache, tmp_path / "part", b"y" * 4)
    assert cache._entries == {}


def test_oldest_copies_go_first_past_the_byte_limit(tmp_path: Path) -> None:
    cache = SmallFileCache(max_bytes=25, max_file_bytes=10, clock_ns=clock_ahead)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() * 10)
        _offer(cache, tmp_path / name, name.encode() * 10)
    assert [relative for _, relative, _ in cache._entries] == ["b", "c"]
    assert cache._size == 20
    (tmp_path / "b").unlink()
    assert _lookup(cache, tmp_path, "b") is None  # gone: the copy is dropped
    assert [relative for _, relative, _ in cache._entries] == ["c"]
    assert cache._size == 10


# -- through a real server --------------------------------------------------------


async def test_served_copy_follows_every_change(tmp_path: Path, serve_file) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"SECRET-CONTENT")
    originals = {name: b"original-%s-bytes" % name.encode() for name in ("edited", "swapped", "linked", "gone")}
    await trio.to_thread.run_sync(_settled_files, root, originals)
    site = await serve_file(root)
    for name, data in originals.items():
        response = await site.get(f"/{name}")
        assert (response.status, response.body) == (200, data)
        assert _is_kept(root, name), name

    # Rewritten in place with the same size: the new bytes, at once.
    with open(root / "edited", "r+b") as f:
        f.write(b"ORIGINAL")
    response = await site.get("/edited")
    assert response.body == b"ORIGINAL-edited-bytes"
    # Replaced by rename (a deployment).
    (root / "swapped.new").write_bytes(b"new-swapped-bytes-0")
    os.rename(root / "swapped.new", root / "swapped")
    response = await site.get("/swapped")
    assert response.body == b"new-swapped-bytes-0"
    # Replaced by a symlink out of the root: refused, as for any such link.
    (root / "linked").unlink()
    (root / "linked").symlink_to(outside)
    response = await site.get("/linked")
    assert response.status == 404
    assert b"SECRET" not in response.body
    # Deleted.
    (root / "gone").unlink()
    response = await site.get("/gone")
    assert response.status == 404


async def test_served_copy_keeps_headers_ranges_and_conditionals(tmp_path: Path, serve_file) -> None:
    root = tmp_path / "root"
    root.mkdir()
    await trio.to_thread.run_sync(_settled_files, root, {"a.txt": b"0123456789abcdefghij"})
    site = await serve_file(root)
    first = await site.get("/a.txt")
    assert _is_kept(root, "a.txt")
    second = await site.get("/a.txt")
    for name in (b"content-type", b"content-length", b"etag", b"last-modified", b"accept-ranges"):
        assert second.header(name) == first.header(name)
    ranged = await site.get("/a.txt", b"Range: bytes=2-4\r\n")
    assert (ranged.status, ranged.body, ranged.header(b"content-range")) == (206, b"234", b"bytes 2-4/20")
    etag = first.header(b"etag")
    cached = await site.get("/a.txt", b"If-None-Match: " + etag + b"\r\n")
    assert (cached.status, cached.body) == (304, b"")
    since = await site.get("/a.txt", b"If-Modified-Since: " + first.header(b"last-modified") + b"\r\n")
    assert (since.status, since.body) == (304, b"")
    stale = await site.get("/a.txt", b'If-None-Match: "0-14"\r\n')
    assert (stale.status, stale.body, stale.header(b"etag")) == (200, b"0123456789abcdefghij", etag)
    head = await site.get("/a.txt", method=b"HEAD")
    assert (head.status, head.body, head.header(b"content-length")) == (200, b"", b"20")


async def test_plain_get_of_a_copy_answers_as_the_disk_did(tmp_path: Path, serve_file) -> None:
    # A plain GET of a kept copy takes a shorter path than conditional, ranged
    # and HEAD requests: its answer must be the one the file on disk gave.
    root = tmp_path / "root"
    root.mkdir()
    await trio.to_thread.run_sync(_settled_files, root, {"a.css": b"p { color: red }", "b.txt.gz": b"packed"})
    site = await serve_file(root)
    for name in ("a.css", "b.txt.gz"):
        from_disk = await site.get(f"/{name}")
        assert _is_kept(root, name)
        from_copy = await site.get(f"/{name}")
        assert (from_copy.status, from_copy.body) == (from_disk.status, from_disk.body)
        assert sorted(pair for pair in from_copy.headers if pair[0].lower() != b"date") == sorted(
            pair for pair in from_disk.headers if pair[0].lower() != b"date")
    copy = await site.get("/b.txt.gz")
    assert (copy.header(b"content-type"), copy.header(b"content-encoding")) == (b"text/plain", b"gzip")


async def test_precompressed_variant_that_appears_is_served_over_the_copy(tmp_path: Path, serve_file) -> None:
    root = tmp_path / "root"
    root.mkdir()
    await trio.to_thread.run_sync(_settled_files, root, {"app.js": b"let x = 1;"})
    served = File(str(root))
    served.variants_recheck = 0.2
    site = await serve_file(served)
    accepts = b"Accept-Encoding: gzip, br\r\n"
    plain = await site.get("/app.js", accepts)
    assert (plain.status, plain.body, plain.header(b"content-encoding")) == (200, b"let x = 1;", None)
    assert _is_kept(root, "app.js")
    (root / "app.js.gz").write_bytes(gzip.compress(b"let x = 1;"))
    await trio.sleep(0.25)  # what is known of the file's variants is trusted that long
    packed = await site.get("/app.js", accepts)
    assert packed.header(b"content-encoding") == b"gzip"
    assert gzip.decompress(packed.body) == b"let x = 1;"
