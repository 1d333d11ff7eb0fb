"""Every bad input answered (issue 20, items 5, 9, 10, 11, 14, 15): real servers on loopback."""

from __future__ import annotations

import logging

import pytest

from tests.support.rawhttp import get
from tests.trioweb.test_resource import Leaf
from trioweb.resource import Resource
from trioweb.static import File


def post(path: bytes, body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


# -- 5. dates no calendar can take are ignored ----------------------------------------------------


@pytest.mark.parametrize("date", [b"Mon, 01 Jan 10000 00:00:00 GMT", b"Mon, 01 Jan 99999999999 00:00:00 GMT",
                                  b"Mon, 32 Jan 2020 00:00:00 GMT", b"Mon, 01 Jan 2020 25:00:00 GMT"])
async def test_an_impossible_date_is_ignored(start_site, tmp_path, date):
    (tmp_path / "f.txt").write_bytes(b"0123456789")
    site = await start_site(File(str(tmp_path)))
    response = await site.request(get(b"/f.txt", extra=b"If-Modified-Since: " + date + b"\r\n"))
    assert (response.status, response.body) == (200, b"0123456789")
    response = await site.request(get(b"/f.txt", extra=b"Range: bytes=0-1\r\nIf-Range: " + date + b"\r\n"))
    assert (response.status, response.body) == (200, b"0123456789")  # If-Range does not match: all of it


async def test_an_impossible_date_is_ignored_by_set_last_modified(start_site):
    site = await start_site(Leaf(lambda request: b"" if request.setLastModified(1e9) else b"fresh"))
    response = await site.request(get(extra=b"If-Modified-Since: Sat, 01 Jan 12000 00:00:00 GMT\r\n"))
    assert (response.status, response.body) == (200, b"fresh")


# -- 9. the method is refused before the body is measured -------------------------------------------


async def test_a_large_put_to_a_static_file_is_405_not_413(start_site, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"x")
    site = await start_site(File(str(tmp_path)))
    conn = await site.connect()
    await conn.send(b"PUT /f.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n" + b"y" * 65536)
    response = await conn.read_response()
    assert response.status == 405
    assert b"GET" in response.header(b"allow")
    assert response.header(b"connection") == b"close"  # its body is too large to skip


async def test_a_small_post_to_a_get_only_resource_is_405_and_keeps_the_connection(start_site):
    site = await start_site(Leaf(lambda request: b"ok"))
    conn = await site.connect()
    await conn.send(post(b"/", b"a=1", b"application/x-www-form-urlencoded") + get())
    assert (await conn.read_response()).status == 405
    assert (await conn.read_response()).status == 200


# -- 10. an added Server or Date replaces ours; --server-header ---------------------------------------


async def test_an_added_server_header_replaces_the_default(start_site):
    site = await start_site(Leaf(lambda request: b"ok"), headers=[(b"Server", b"x"), (b"X-Frame-Options", b"DENY")])
    response = await site.request(get())
    assert response.header_list(b"server") == [b"x"]
    assert response.header_list(b"date") and len(response.header_list(b"date")) == 1
    assert response.header(b"x-frame-options") == b"DENY"
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\n\r\n")  # the engine's own 400
    assert (await conn.read_response()).header_list(b"server") == [b"x"]


async def test_a_resource_setting_date_or_server_replaces_ours(start_site):
    def render(request):
        request.setHeader(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT")
        request.setHeader(b"server", b"upstream")
        return b"ok"

    site = await start_site(Leaf(render))
    response = await site.request(get())
    assert response.header_list(b"date") == [b"Thu, 01 Jan 2026 00:00:00 GMT"]
    assert response.header_list(b"server") == [b"upstream"]


async def test_no_server_header_at_all(start_site):
    site = await start_site(Leaf(lambda request: b"ok"), server_header=b"")
    response = await site.request(get())
    assert response.header_list(b"server") == []
    assert len(response.header_list(b"date")) == 1
    conn = await site.connect()
    await conn.send(b"GET / HTTP/1.1\r\n\r\n")
    assert (await conn.read_response()).header_list(b"server") == []


# -- 11. multipart forms ----------------------------------------------------------------------------------


class Upload(Resource):
    isLeaf = True

    def render_POST(self, request):
        files = {name: [(u.filename, u.content_type, u.size, u.read()) for u in uploads]
                 for name, uploads in request.files.items()}
        return repr((sorted(request.args.items()), sorted(files.items()))).encode()


def form(boundary: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n" for head, content in parts) \
        + b"--" + boundary + b"--\r\n"


async def test_file_parts_keep_their_name_and_type(start_site):
    site = await start_site(Upload())
    body = form(b"XyZ", [
        (b'Content-Disposition: form-data; name="f"; filename="a b.txt"\r\nContent-Type: text/plain', b"file\r\ndata"),
        (b'Content-Disposition: form-data; name="g"', b"value"),
    ])
    response = await site.request(post(b"/", body, b"multipart/form-data; boundary=XyZ"))
    assert response.status == 200
    assert response.body == repr((
        [(b"f", [b"file\r\ndata"]), (b"g", [b"value"])],
        [(b"f", [(b"a b.txt", b"text/plain", 10, b"file\r\ndata")])],
    )).encode()


async def test_boundary_parameter_in_capitals_and_boundary_text_inside_content(start_site):
    site = await start_site(Upload())
    content = b"before --XyZ after\r\n--XyZnot a delimiter"
    body = form(b"XyZ", [(b'Content-Disposition: form-data; name="g"', content)])
    response = await site.request(post(b"/", body, b'multipart/form-data; Boundary="XyZ"'))
    assert response.status == 200
    assert response.body == repr(([(b"g", [content])], [])).encode()


async def test_a_large_file_part_is_spooled_to_disk(start_site):
    seen = {}

    class Spool(Resource):
        isLeaf = True
        max_request_body = 8 * 1024 * 1024

        def render_POST(self, request):
            upload = request.files[b"f"][0]
            seen["on_disk"] = upload.file._rolled  # SpooledTemporaryFile: rolled over to a real file
            return b"%d" % upload.size

    site = await start_site(Spool())
    data = bytes(range(256)) * 8192  # 2 MiB
    body = form(b"b0undary", [(b'Content-Disposition: form-data; name="f"; filename="x.bin"', data)])
    response = await site.request(post(b"/", body, b"multipart/form-data; boundary=b0undary"), timeout=20)
    assert (response.status, response.body) == (200, b"%d" % len(data))
    assert seen["on_disk"] is True


@pytest.mark.parametrize("body, ctype", [
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"g\"\r\n\r\nvalue\r\n", b"multipart/form-data; boundary=XyZ"),
    (b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--XyZ--\r\n", b"multipart/form-data; boundary=XyZ"),
    (b"--XyZ--\r\n", b"multipart/form-data"),
    (b"--XyZ\r\nX: " + b"a" * 20000 + b"\r\n\r\nv\r\n--XyZ--\r\n", b"multipart/form-data; boundary=XyZ"),
])
async def test_malformed_multipart_is_400(start_site, body, ctype):
    site = await start_site(Upload())
    response = await site.request(post(b"/", body, ctype))
    assert response.status == 400


# -- found by the fuzz run: bytes past ASCII in a query or a form ------------------------------------


async def test_query_and_form_bytes_past_ascii_are_args_not_a_500(start_site):
    class Args(Resource):
        isLeaf = True

        def render_GET(self, request):
            return repr(sorted(request.args.items())).encode()

        render_POST = render_GET

    site = await start_site(Args())
    response = await site.request(get(b"/?a=%C3%A9&b=%FF"))
    assert (response.status, response.body) == (200, repr([(b"a", [b"\xc3\xa9"]), (b"b", [b"\xff"])]).encode())
    response = await site.request(post(b"/", b"\x80=2&c=%e9", b"application/x-www-form-urlencoded"))
    assert (response.status, response.body) == (200, repr([(b"c", [b"\xe9"]), (b"\x80", [b"2"])]).encode())


# -- 14. an error after the first byte aborts, before it gives a clean 500 ----------------------------


async def test_an_error_after_a_write_gives_a_clean_500(start_site, caplog):
    def render(request):
        request.write(b"partial")
        raise RuntimeError("boom")

    site = await start_site(Leaf(render))
    with caplog.at_level(logging.ERROR):
        response = await site.request(get())
    assert response.status == 500
    assert b"partial" not in response.body
    assert response.body.startswith(b"<html>")
    assert "boom" in caplog.text


async def test_an_error_after_the_response_started_aborts_the_connection(start_site, caplog):
    class Streaming(Resource):
        isLeaf = True

        async def render_GET(self, request):
            request.write(b"partial")
            await request.drain()  # the head and the first bytes are out
            raise RuntimeError("boom")

    site = await start_site(Streaming())
    conn = await site.connect()
    await conn.send(get())
    with caplog.at_level(logging.ERROR):
        with pytest.raises(EOFError):
            await conn.read_response()  # the chunked body never ends: the connection is cut
    assert "boom" in caplog.text


# -- 15. a traceback page worth reading -----------------------------------------------------------------


def _fails_with_markup(request):
    marker = "<script>alert(1)</script>"  # shown on the page, escaped
    return _inner(marker)


def _inner(value):
    raise ValueError(value)


async def test_display_tracebacks_shows_frames_with_source(start_site):
    site = await start_site(Leaf(_fails_with_markup), displayTracebacks=True)
    response = await site.request(get())
    page = response.body.decode()
    assert response.status == 500
    assert "<script>" not in page
    assert page.count("ValueError: &lt;script&gt;alert(1)&lt;/script&gt;") == 2  # at the top and at the bottom
    assert "_fails_with_markup" in page and "_inner" in page
    assert "raise ValueError(value)" in page  # the source line of the frame
    assert 'marker = &quot;&lt;script&gt;' in page  # and lines around it
    assert __file__ in page


async def test_no_traceback_without_the_flag(start_site):
    site = await start_site(Leaf(_fails_with_markup))
    page = (await site.request(get())).body.decode()
    assert "Traceback" not in page and "_inner" not in page and "script" not in page
