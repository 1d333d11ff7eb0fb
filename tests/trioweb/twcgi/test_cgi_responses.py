"""What a script prints, as the client gets it; resources around scripts (403, 404, 503)."""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from trioweb.http import Limits, MiB
from trioweb.resource import Resource
from trioweb.twcgi import CGISettings, FilteredScript


async def test_status_location_cookies_and_dropped_fields(cgi):
    cgi.script("h.cgi", "#!/bin/sh\nprintf 'Status: 404 Nope\\r\\nContent-Type: text/plain\\r\\n"
                        "Set-Cookie: a=1\\r\\nSet-Cookie: b=2\\r\\nServer: evil\\r\\nDate: x\\r\\n\\r\\nmissing'\n")
    cgi.script("loc.cgi", "#!/bin/sh\nprintf 'Location: http://elsewhere.test/\\n\\n'\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/h.cgi")
    assert (response.status, response.reason, response.body) == (404, b"Nope", b"missing")
    assert response.header_list(b"set-cookie") == [b"a=1", b"b=2"]
    assert response.header_list(b"server") == [b"trioweb/0.1.0"] and response.header(b"date") != b"x"
    assert response.header_list(b"content-type") == [b"text/plain"]
    response = await cgi.get("/cgi-bin/loc.cgi")
    assert response.status == 302 and response.header(b"location") == b"http://elsewhere.test/"


async def test_no_content_type_is_invented(cgi):
    cgi.script("bare.cgi", "#!/bin/sh\nprintf 'X-A: 1\\n\\nbody'\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/bare.cgi")
    assert response.status == 200 and response.header(b"content-type") is None and response.body == b"body"


async def test_content_length_from_the_script_frames_the_body(cgi):
    cgi.script("cl.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 5\\n\\nhello'\n")
    cgi.script("short.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 50\\n\\nhello'\n")
    cgi.script("late.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 50\\n\\nhello'\nsleep 0.5\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/cl.cgi")
    assert response.header(b"content-length") == b"5" and not response.chunked and response.body == b"hello"
    # Short: an error page if found before anything was sent (the script
    # ended before the server looked again), else an aborted connection;
    # never a complete 200.
    for name in ("short.cgi", "late.cgi"):
        conn = await cgi.connect()
        await conn.send(b"GET /cgi-bin/" + name.encode() + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        received = b""
        while piece := await conn.stream.receive_some(65536):
            received += piece
        await conn.aclose()
        if name == "late.cgi" or received.startswith(b"HTTP/1.1 200 "):
            assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"\r\n\r\nhello"), name
        else:
            assert received.startswith(b"HTTP/1.1 500 ") and b"hello" not in received


async def test_nph_script_passes_its_own_status_line_and_fields(cgi):
    cgi.script("nph-raw.cgi", "#!/bin/sh\nprintf 'HTTP/1.1 203 Own Words\\r\\nContent-Type: text/x-nph\\r\\n"
                              "Location: /kept\\r\\n\\r\\nraw body'\n")
    await cgi.start()
    response = await cgi.get("/cgi-bin/nph-raw.cgi")
    assert (response.status, response.reason) == (203, b"Own Words")
    assert response.header(b"location") == b"/kept" and response.body == b"raw body"


async def test_head_gets_the_head_only(cgi):
    cgi.script("h.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\necho \"$REQUEST_METHOD\"\n")
    await cgi.start()
    response = await cgi.request(b"HEAD /cgi-bin/h.cgi HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", head=True)
    assert response.status == 200 and response.header(b"content-type") == b"text/plain"


async def test_large_upload_streams_to_stdin(cgi):
    body = bytes(range(256)) * 4096 * 8  # 8 MiB, more than a pipe and the spool threshold hold
    cgi.script("sum.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nsha256sum | cut -d' ' -f1\n")
    await cgi.start(limits=Limits(max_body_size=16 * MiB))
    conn = await cgi.connect(timeout=30)
    await conn.send(b"POST /cgi-bin/sum.cgi HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    await conn.stream.send_all(body)
    response = await conn.read_response()
    await conn.aclose()
    assert response.body.strip() == hashlib.sha256(body).hexdigest().encode()


async def test_a_script_that_ignores_its_body_is_answered(cgi):
    cgi.script("deaf.cgi", "#!/bin/sh\nexec 0<&-\nprintf 'Content-Type: text/plain\\n\\nnot listening'\n")
    await cgi.start()
    response = await cgi.request(b"POST /cgi-bin/deaf.cgi HTTP/1.1\r\nHost: a\r\nContent-Length: 900000\r\n"
                                 b"Connection: close\r\n\r\n" + b"x" * 900000, timeout=20)
    assert response.status == 200 and response.body == b"not listening"


async def test_body_over_the_limit_is_413_before_the_script_runs(cgi, tmp_path):
    ran = tmp_path / "ran"
    cgi.script("once.cgi", f"#!/bin/sh\ntouch {ran}\nprintf 'Content-Type: text/plain\\n\\nok'\n")
    await cgi.start()  # the Site's default limit: 1 MiB
    response = await cgi.request(b"POST /cgi-bin/once.cgi HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                 b"Connection: close\r\n\r\n" + (b"40000\r\n" + b"x" * 0x40000 + b"\r\n") * 8,
                                 timeout=20)
    assert response.status == 413 and not ran.exists()


async def test_not_executable_is_403_and_never_its_source(cgi):
    cgi.script("plain.cgi", "#!/bin/sh\necho SECRET-SOURCE\n", mode=0o644)
    await cgi.start()
    response = await cgi.get("/cgi-bin/plain.cgi")
    assert response.status == 403 and b"SECRET-SOURCE" not in response.body


async def test_directory_missing_children_and_dotfiles(cgi):
    cgi.script("sub/inner.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\ninner'\n")
    cgi.script(".hidden.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhidden'\n")
    await cgi.start()
    listing = await cgi.get("/cgi-bin/")
    assert listing.status == 404 and b"CGI directories do not support directory listing" in listing.body
    assert (await cgi.get("/cgi-bin/sub/inner.cgi")).body == b"inner"
    for path in ("/cgi-bin/missing.cgi", "/cgi-bin/.hidden.cgi", "/cgi-bin/%2e%2e/cgi-bin/sub/inner.cgi",
                 "/cgi-bin/sub%2finner.cgi"):
        assert (await cgi.get(path)).status == 404, path


async def test_nul_in_extra_path_is_404(cgi):
    cgi.script("env.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n")
    await cgi.start()
    assert (await cgi.get("/cgi-bin/env.cgi/a%00b")).status == 404


async def test_filtered_script_runs_its_interpreter(cgi, start_site):
    class ShellScript(FilteredScript):
        filter = "/bin/sh"

    path = cgi.script("page.sh", "printf 'Content-Type: text/plain\\n\\n'\necho \"run by sh with $# args: $*\"\n",
                      mode=0o644)
    root = Resource()
    root.putChild(b"page", ShellScript(str(path)))
    site = await start_site(root)
    response = await site.request(b"GET /page?a+b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert response.body == b"run by sh with 2 args: a b\n"


async def test_over_the_process_limit_is_503(cgi, tmp_path):
    cgi.script("slow.cgi", "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\n\\nslow'\n")
    await cgi.start(max_processes=2)
    results = []

    async def fetch():
        results.append((await cgi.get("/cgi-bin/slow.cgi")).status)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(fetch)
        await trio.sleep(0.3)
        results.append((await cgi.get("/cgi-bin/slow.cgi")).status)
    assert sorted(results) == [200, 200, 503]
    assert (await cgi.get("/cgi-bin/slow.cgi")).status == 200  # the slots were given back


async def test_settings_are_per_resource(cgi):
    settings = CGISettings(max_processes=3, timeout=5)
    assert settings.slots.limit == 3 and CGISettings().slots is not settings.slots


async def test_head_with_a_content_length_and_no_body_keeps_the_connection(cgi):
    cgi.script("cl.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 5\\n\\n'\n"
                         "[ \"$REQUEST_METHOD\" = HEAD ] || printf hello\n")
    await cgi.start()
    conn = await cgi.connect()
    await conn.send(b"HEAD /cgi-bin/cl.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await conn.read_response(head_request=True)
    assert head.status == 200 and head.header(b"content-length") == b"5"
    await conn.send(b"GET /cgi-bin/cl.cgi HTTP/1.1\r\nHost: a\r\n\r\n")  # the same connection still works
    assert (await conn.read_response()).body == b"hello"
    await conn.aclose()


async def test_the_head_is_sent_before_a_slow_body(cgi):
    cgi.script("slow.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nsleep 2\necho late\n")
    await cgi.start()
    conn = await cgi.connect(timeout=1)  # less than the script's pause: the head must come first
    await conn.send(b"GET /cgi-bin/slow.cgi HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await conn._read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Type: text/plain" in head
    conn.timeout = 10
    assert await conn._read_until(b"late\n")
    await conn.aclose()


@pytest.mark.parametrize("file_mode, dir_mode", [(0o775, 0o755), (0o757, 0o755), (0o4755, 0o755), (0o2755, 0o755),
                                                 (0o755, 0o775), (0o755, 0o1777)])
async def test_scripts_others_may_change_are_refused(cgi, caplog, file_mode, dir_mode):
    path = cgi.script("sub/w.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nRAN'\n")
    os.chmod(path, file_mode)
    os.chmod(path.parent, dir_mode)
    await cgi.start()
    response = await cgi.get("/cgi-bin/sub/w.cgi")
    assert response.status == 403 and b"RAN" not in response.body
    assert "refused" in caplog.text
    os.chmod(path, 0o755)
    os.chmod(path.parent, 0o755)
    assert (await cgi.get("/cgi-bin/sub/w.cgi")).body == b"RAN"
