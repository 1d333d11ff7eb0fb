"""Scripts that fail, hang or lose their client: the answer, the log, and no
process, zombie or orphan left behind (checked in /proc)."""

from __future__ import annotations

import logging
import os

import trio

from tests.support.polling import wait_until
from tests.support.proctree import alive, children_of, in_group
from trioweb.http import Limits

# Writes its pid and that of a background child that keeps stdout open.
PIDS = "echo $$ > {dir}/pids\nsleep 300 & echo $! >> {dir}/pids\n"


def pids(directory) -> list[int]:
    path = directory / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def no_process_left(directory) -> None:
    """The script and its child are gone, and this process has no child left, not even a zombie.

    The script's child, orphaned when the script exited, may stay a zombie
    for a moment: reaping it is the job of init (or of whatever adopted it),
    not ours, and this machine's init reaps every few seconds."""
    found = pids(directory)
    assert len(found) == 2, found
    await wait_until(lambda: not any(alive(pid) for pid in found)
                     and not [p for p in in_group(found[0]) if p.state != "Z" or p.ppid == os.getpid()], timeout=10)
    await wait_until(lambda: not children_of(os.getpid()), timeout=10)


async def test_premature_end_of_headers_is_500_with_stderr_logged(cgi, caplog):
    cgi.script("early.cgi", "#!/bin/sh\necho 'something went wrong' >&2\nprintf 'Content-Type: text/pl'\n")
    await cgi.start()
    with caplog.at_level(logging.WARNING, logger="trioweb.twcgi"):
        response = await cgi.get("/cgi-bin/early.cgi")
    assert response.status == 500 and b"Premature end of script headers" in response.body
    assert "something went wrong" in caplog.text and "premature end of script headers" in caplog.text
    await wait_until(lambda: not children_of(os.getpid()), timeout=10)


async def test_malformed_header_block_is_502_and_logged(cgi, caplog):
    cgi.script("bad.cgi", "#!/bin/sh\nprintf 'Content-Type text/plain\\n\\nSCRIPT-BODY'\n")
    await cgi.start()
    with caplog.at_level(logging.ERROR, logger="trioweb.twcgi"):
        response = await cgi.get("/cgi-bin/bad.cgi")
    assert response.status == 502 and b"SCRIPT-BODY" not in response.body
    assert "malformed header block" in caplog.text


async def test_oversized_header_block_is_502_and_the_script_is_stopped(cgi, tmp_path):
    cgi.script("huge.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) +
               "while :; do printf 'X-Filler: %0200d\\n' 0; done\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/huge.cgi")
    assert response.status == 502
    await no_process_left(tmp_path)


async def test_a_script_that_never_answers_is_504_and_its_group_killed(cgi, tmp_path):
    # It ignores SIGTERM: SIGKILL follows after the grace period.
    cgi.script("hang.cgi", "#!/bin/sh\ntrap '' TERM\n" + PIDS.format(dir=tmp_path) + "sleep 300\n")
    await cgi.start(timeout=0.5, kill_grace=0.3)
    response = await cgi.get("/cgi-bin/hang.cgi")
    assert response.status == 504 and b"did not answer in time" in response.body
    await no_process_left(tmp_path)


async def test_client_going_away_stops_the_script_and_its_children(cgi, tmp_path):
    cgi.script("stream.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) +
               "printf 'Content-Type: text/plain\\n\\n'\nwhile :; do echo tick; sleep 0.05; done\n")
    await cgi.start(kill_grace=0.5)
    conn = await cgi.connect()
    await conn.send(b"GET /cgi-bin/stream.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
    first = await conn.stream.receive_some(65536)
    assert b"200 OK" in first
    await wait_until(lambda: len(pids(tmp_path)) == 2)
    await conn.aclose()
    await no_process_left(tmp_path)


async def test_client_going_away_before_the_head_stops_the_script(cgi, tmp_path):
    cgi.script("slow.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) + "sleep 300\n")
    await cgi.start(kill_grace=0.5)
    conn = await cgi.connect()
    await conn.send(b"GET /cgi-bin/slow.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
    await wait_until(lambda: len(pids(tmp_path)) == 2)
    await conn.aclose()
    await no_process_left(tmp_path)


async def test_background_children_end_with_the_response(cgi, tmp_path):
    cgi.script("fork.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) + "printf 'Content-Type: text/plain\\n\\ndone'\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/fork.cgi")
    assert response.body == b"done"
    await no_process_left(tmp_path)


async def test_silence_mid_body_aborts_the_response(cgi, tmp_path):
    cgi.script("stall.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) +
               "printf 'Content-Type: text/plain\\n\\npart'\nsleep 300\n")
    await cgi.start(timeout=0.5, kill_grace=0.2)
    conn = await cgi.connect()
    await conn.send(b"GET /cgi-bin/stall.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
    received = b""
    with trio.fail_after(10):
        while piece := await conn.stream.receive_some(65536):
            received += piece
    assert b"part" in received and not received.endswith(b"0\r\n\r\n")  # never a complete chunked body
    await conn.aclose()
    await no_process_left(tmp_path)


async def test_a_slow_client_slows_the_script(cgi, tmp_path):
    done = tmp_path / "done"
    size = 32 * 1024 * 1024
    cgi.script("big.cgi", f"#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                          f"head -c {size} /dev/zero\ntouch {done}\n")
    await cgi.start()
    conn = await cgi.connect(timeout=30)
    await conn.send(b"GET /cgi-bin/big.cgi HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    first = await conn.stream.receive_some(4096)
    assert b"200 OK" in first
    await trio.sleep(1)  # not reading: the socket buffers and the pipe fill up, and the script waits
    assert not done.exists()
    received = len(first)
    while piece := await conn.stream.receive_some(1024 * 1024):
        received += len(piece)
    await conn.aclose()
    assert received > size and done.exists()


async def test_script_that_cannot_start_is_500(cgi, caplog):
    cgi.script("nointerp.cgi", "#!/no/such/interpreter\n")
    await cgi.start()
    with caplog.at_level(logging.ERROR, logger="trioweb.twcgi"):
        response = await cgi.get("/cgi-bin/nointerp.cgi")
    assert response.status == 500 and "cannot run" in caplog.text


async def test_a_body_that_stalls_midway_is_408_and_the_script_stopped(cgi, tmp_path):
    cgi.script("read.cgi", "#!/bin/sh\n" + PIDS.format(dir=tmp_path) +
               "cat >/dev/null\nprintf 'Content-Type: text/plain\\n\\nread it all'\n")
    await cgi.start(limits=Limits(body_timeout=0.5), kill_grace=0.3)
    conn = await cgi.connect()
    await conn.send(b"POST /cgi-bin/read.cgi HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    response = await conn.read_response()
    await conn.aclose()
    assert response.status == 408 and b"read it all" not in response.body
    await no_process_left(tmp_path)
