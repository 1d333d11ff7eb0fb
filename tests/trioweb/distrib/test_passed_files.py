"""File bodies passed open from the personal server to the front (``_passed_file``).

A front and a personal server in this process, over a real UNIX socket; a
hostile "personal server" speaking rpc directly passes what a real one
never would. Every test that passes descriptors counts this process's open
ones: none may be left behind.
"""

from __future__ import annotations

import gc
import os
import stat
import zlib

import pytest
import trio

import rpc
from tests.support.polling import wait_until
from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import front_to_personal, hostile_front, pattern, unix_listener
from trioweb.distrib import ResourcePublisher, ResourceSubscription, _passed_file, serve_publisher
from trioweb.distrib._passed_file import FilesystemTypes, parse_mountinfo, unsendable
from trioweb.resource import EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory, Site
from trioweb.static import File

SIZE = 3 * 1024 * 1024 + 123


def open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class LoggingSite(Site):
    """A personal Site that records the requests it has finished."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished: list[bytes] = []

    def log(self, request):
        self.finished.append(request.uri)
        super().log(request)


@pytest.fixture
def files(tmp_path):
    directory = tmp_path / "files"
    directory.mkdir()
    (directory / "big.bin").write_bytes(pattern(SIZE))
    (directory / "big.txt").write_bytes(pattern(SIZE))  # a type worth compressing
    (directory / "huge.bin").write_bytes(pattern(32 * 1024 * 1024))
    return directory


async def personal_files(start_site, nursery, tmp_path, files):
    root = Resource()
    root.putChild(b"files", File(str(files)))
    return await front_to_personal(start_site, nursery, tmp_path, root)


async def test_a_file_body_arrives_whole_and_in_ranges(start_site, nursery, tmp_path, files):
    site, _ = await personal_files(start_site, nursery, tmp_path, files)
    response = await site.request(get(b"/~alice/files/big.bin"), timeout=20)
    before = open_fds()  # with the front's connection to the personal server open
    response = await site.request(get(b"/~alice/files/big.bin"), timeout=20)
    assert response.status == 200 and response.body == pattern(SIZE)
    assert response.header(b"content-length") == b"%d" % SIZE
    ranged = await site.request(get(b"/~alice/files/big.bin", extra=b"Range: bytes=70000-2100000\r\n"), timeout=20)
    assert ranged.status == 206 and ranged.body == pattern(SIZE)[70000:2100001]
    head = await site.request(b"HEAD /~alice/files/big.bin HTTP/1.1\r\nHost: a\r\n\r\n", head=True)
    assert head.status == 200 and head.header(b"content-length") == b"%d" % SIZE
    await wait_until(lambda: open_fds() <= before)


async def test_the_personal_request_ends_before_the_client_has_read_the_body(start_site, nursery, tmp_path, files):
    # The front sends the file itself: the personal server is done once it
    # has passed it, even while the client has not read a byte of the body.
    # (Streamed, 32 MiB would hold the personal request until the client reads.)
    personal = LoggingSite(Resource())
    personal.resource.putChild(b"files", File(str(files)))
    path = str(tmp_path / "pb.sock")
    await nursery.start(serve_publisher, ResourcePublisher(personal), [await unix_listener(path)])
    front_root = Resource()
    front_root.putChild(b"~alice", ResourceSubscription("unix", path))
    site = await start_site(front_root)
    conn = await site.connect(timeout=20)
    await conn.send(get(b"/~alice/files/huge.bin"))
    await conn._read_until(b"\r\n\r\n")
    await wait_until(lambda: personal.finished == [b"/~alice/files/huge.bin"])
    body = bytearray(conn.buffer)
    conn.buffer.clear()
    while len(body) < 32 * 1024 * 1024 and await conn._fill():
        body += conn.buffer
        conn.buffer.clear()
    assert bytes(body) == pattern(32 * 1024 * 1024)
    await conn.aclose()


async def test_files_on_other_filesystems_are_streamed(start_site, nursery, tmp_path, files, monkeypatch):
    mountinfo = tmp_path / "mountinfo"
    device = os.stat(files / "big.bin").st_dev
    mountinfo.write_text(f"27 1 {os.major(device)}:{os.minor(device)} / / rw - fuse.sshfs remote rw\n")
    monkeypatch.setattr(_passed_file, "filesystem_types", FilesystemTypes(str(mountinfo)))
    site, _ = await personal_files(start_site, nursery, tmp_path, files)
    response = await site.request(get(b"/~alice/files/big.bin"), timeout=20)
    assert response.status == 200 and response.body == pattern(SIZE)


def test_mountinfo_is_read_by_device() -> None:
    text = ("22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
            "garbage line\n"
            "40 27 0:44 / /home/alice/fuse rw - fuse.sshfs host: rw\n")
    assert parse_mountinfo(text) == {os.makedev(0, 21): "proc", os.makedev(254, 0): "ext4",
                                     os.makedev(0, 44): "fuse.sshfs"}


def test_what_the_front_refuses_to_send(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    read_end, write_end = os.pipe()
    try:
        assert unsendable(fd, 0, 1000) is None
        assert unsendable(fd, 999, 1) is None
        assert "not in a file of 1000 bytes" in unsendable(fd, 1, 1000)
        assert "not in a file" in unsendable(fd, -1, 10)
        assert unsendable(read_end, 0, 0) == "the file is not a regular file"
        assert "cannot be examined" in unsendable(99999, 0, 1)
    finally:
        for each in (fd, read_end, write_end):
            os.close(each)


# -- a hostile personal server --------------------------------------------------


def passing(open_file, offset, count, length, **extra):
    async def answer(message, body, front):
        return {"status": 200, "reason": None, "headers": [], "length": length,
                "file": [rpc.FileDescriptor(open_file()), offset, count], **extra}
    return answer


@pytest.mark.parametrize("case", ["pipe", "beyond the end", "length", "with a body", "not a list", "fuse"])
async def test_files_the_front_refuses_are_502(start_site, nursery, tmp_path, case, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"y" * 100000)
    pipes = []

    def open_path():
        return os.open(path, os.O_RDONLY)

    def open_pipe():
        read_end, write_end = os.pipe()
        pipes.append(write_end)
        return read_end

    answer = {
        "pipe": passing(open_pipe, 0, 100000, 100000),
        "beyond the end": passing(open_path, 50000, 60000, 60000),
        "length": passing(open_path, 0, 100000, 99999),
        "with a body": passing(open_path, 0, 2, 2, body=b"ok"),
        "fuse": passing(open_path, 0, 100000, 100000),
    }.get(case)
    if case == "not a list":
        async def answer(message, body, front):
            return {"status": 200, "reason": None, "headers": [], "length": 5,
                    "file": {"fd": rpc.FileDescriptor(os.open(path, os.O_RDONLY))}}
    if case == "fuse":
        mountinfo = tmp_path / "mountinfo"
        device = os.stat(path).st_dev
        mountinfo.write_text(f"40 27 {os.major(device)}:{os.minor(device)} / /x rw - fuse.evil evil rw\n")
        monkeypatch.setattr(_passed_file, "filesystem_types", FilesystemTypes(str(mountinfo)))
    site = await hostile_front(start_site, nursery, tmp_path, answer)
    before = open_fds()
    response = await site.request(get(b"/~mallory/"))
    assert response.status == 502
    assert response.header(b"content-type") == b"text/html; charset=utf-8"
    for write_end in pipes:
        os.close(write_end)
    await wait_until(lambda: open_fds() <= before)


async def test_a_file_that_shrinks_while_sent_cuts_the_connection(start_site, nursery, tmp_path):
    path = tmp_path / "shrinking.bin"
    path.write_bytes(pattern(16 * 1024 * 1024))
    site = await hostile_front(start_site, nursery, tmp_path,
                               passing(lambda: os.open(path, os.O_RDONLY), 0, 16 << 20, 16 << 20))
    before = open_fds()
    conn = await site.connect(timeout=10)
    await conn.send(get(b"/~mallory/"))
    await conn._read_until(b"\r\n\r\n")  # the head is out, the body under way, the client not reading
    await trio.sleep(0.2)
    os.truncate(path, 1000)
    received = len(conn.buffer)
    while await conn._fill():
        received = len(conn.buffer)
    assert received < 16 << 20  # cut short: the client sees a body shorter than its Content-Length
    await conn.aclose()
    assert (await site.request(get(b"/~mallory/"))).status == 502  # the next one: 1000 bytes < 16 MiB
    await wait_until(lambda: open_fds() <= before)


def test_a_regular_file_check_is_not_fooled_by_a_directory(tmp_path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
        assert unsendable(fd, 0, 0) == "the file is not a regular file"
    finally:
        os.close(fd)


async def test_the_front_compresses_a_passed_file_through_its_encoder(start_site, nursery, tmp_path, files):
    site, _ = await personal_files(start_site, nursery, tmp_path, files)
    site.site.resource = EncodingResourceWrapper(site.site.resource, [GzipEncoderFactory(brotli=False)],
                                                 wrap_children=True)
    response = await site.request(get(b"/~alice/files/big.txt", extra=b"Accept-Encoding: gzip\r\n"), timeout=30)
    assert response.status == 200 and response.header(b"content-encoding") == b"gzip"
    assert zlib.decompress(response.body, 31) == pattern(SIZE)
