"""What a cache and a browser are told about a file (issue 20, items 12 and 13)."""

from __future__ import annotations

import gzip

import pytest

from tests.support.rawhttp import get
from trioweb.static import File, PublicFile


@pytest.fixture
def precompressed(tmp_path):
    (tmp_path / "x.html").write_bytes(b"<p>hello</p>")
    (tmp_path / "x.html.gz").write_bytes(gzip.compress(b"<p>hello</p>"))
    (tmp_path / "plain.html").write_bytes(b"<p>alone</p>")
    return tmp_path


@pytest.mark.parametrize("accept", [b"", b"Accept-Encoding: gzip\r\n", b"Accept-Encoding: br\r\n",
                                    b"Accept-Encoding: identity\r\n"])
async def test_vary_on_every_answer_for_a_precompressed_file(start_site, precompressed, accept):
    site = await start_site(File(str(precompressed)))
    response = await site.request(get(b"/x.html", extra=accept))
    assert response.status == 200
    assert response.header(b"vary") == b"Accept-Encoding"
    assert (response.header(b"content-encoding") == b"gzip") == (b"gzip" in accept)
    again = await site.request(get(b"/x.html", extra=accept + b"If-None-Match: " + response.header(b"etag") + b"\r\n"))
    assert (again.status, again.header(b"vary")) == (304, b"Accept-Encoding")


async def test_no_vary_without_a_precompressed_sibling(start_site, precompressed):
    site = await start_site(File(str(precompressed)))
    response = await site.request(get(b"/plain.html", extra=b"Accept-Encoding: gzip\r\n"))
    assert response.status == 200
    assert response.header(b"vary") is None


@pytest.fixture
def unknown_types(tmp_path):
    (tmp_path / "upload").write_bytes(b"<script>alert(document.cookie)</script>")
    (tmp_path / "notes.unknownext").write_bytes(b"<b>hi</b>")
    (tmp_path / "page.html").write_bytes(b"<p>page</p>")
    return tmp_path


async def test_public_html_serves_unknown_types_as_octet_stream_nosniff(start_site, unknown_types):
    site = await start_site(PublicFile(str(unknown_types)))
    for name in (b"/upload", b"/notes.unknownext"):
        response = await site.request(get(name))
        assert response.status == 200
        assert response.header(b"content-type") == b"application/octet-stream"
        assert response.header(b"x-content-type-options") == b"nosniff"
    page = await site.request(get(b"/page.html"))
    assert page.header(b"content-type") == b"text/html"
    assert page.header(b"x-content-type-options") == b"nosniff"


async def test_path_keeps_twisteds_text_html_default(start_site, unknown_types):
    site = await start_site(File(str(unknown_types)))
    response = await site.request(get(b"/upload"))
    assert response.header(b"content-type") == b"text/html"
