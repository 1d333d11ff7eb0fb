"""Request encoders in memory: negotiation, Vary, what is left alone, streaming, HEAD."""

from __future__ import annotations

import gzip
import zlib

import pytest
import trio
import trio.lowlevel

from trioweb import _encoding
from trioweb._encoding import accepted_codings
from trioweb.resource import NOT_DONE_YET, EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory
from trioweb.testing import fetch

PAGE = b"<html><body>" + b"<p>Hello, world! Hello, encoders.</p>\n" * 200 + b"</body></html>"


class Page(Resource):
    isLeaf = True

    def __init__(self, body: bytes = PAGE, **headers: bytes) -> None:
        super().__init__()
        self.body = body
        self.headers = headers

    def render_GET(self, request):
        for name, value in self.headers.items():
            request.setHeader(name.replace("_", "-"), value)
        return self.body


def wrapped(resource: Resource, **factory) -> EncodingResourceWrapper:
    return EncodingResourceWrapper(resource, [GzipEncoderFactory(brotli=False, **factory)])


def accept(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"accept-encoding", value)]


async def test_the_guide_example_is_compressed_with_its_length():
    response = await fetch(wrapped(Page(b"<html>Hello, world!</html>")), b"/", headers=accept(b"gzip"))
    assert response.header(b"content-encoding") == b"gzip" and response.header(b"vary") == b"Accept-Encoding"
    assert gzip.decompress(bytes(response.body)) == b"<html>Hello, world!</html>"
    assert response.header(b"content-length") == b"%d" % len(response.body)  # complete at once: a length


@pytest.mark.parametrize("header, coding", [
    (b"gzip", b"gzip"),
    (b"deflate, gzip", b"gzip"),
    (b"gzip;q=1.0", b"gzip"),
    (b"GZIP ; Q=0.5", b"gzip"),
    (b"x-gzip", b"x-gzip"),
    (b"gzip;q=0.2, x-gzip;q=0.8", b"x-gzip"),
    (b"*", b"gzip"),
    (b"*;q=0.1, identity", b"gzip"),
    (b"gzip;q=0", None),
    (b"gzip;q=0.000", None),
    (b"gzip ;q=0", None),  # Twisted compresses this one
    (b"gzip;q=0, *", None),  # named and refused: * does not bring it back
    (b"*;q=0", None),
    (b"deflate", None),  # never offered
    (b"identity", None),
    (b"gzip;q=abc", None),
    (b"gzip;q=2", None),
    (b"gzip;q", None),
    (b"gzip;q=.5", None),
    (b"gzip;q=0.1234", None),
    (b"gzip;q=1.001", None),
    (b"gzip;q=0.001", b"gzip"),
    (b"br", None),  # br only when brotli is offered (here it is not)
    (b"", None),
])
async def test_accept_encoding_negotiation(header, coding):
    response = await fetch(wrapped(Page()), b"/", headers=accept(header))
    assert response.header(b"content-encoding") == coding
    assert response.header(b"vary") == b"Accept-Encoding"
    body = bytes(response.body)
    assert (zlib.decompress(body, 31) if coding else body) == PAGE


async def test_accept_encoding_across_several_headers():
    response = await fetch(wrapped(Page()), b"/", headers=[(b"accept-encoding", b"deflate"),
                                                           (b"accept-encoding", b"gzip")])
    assert response.header(b"content-encoding") == b"gzip"


async def test_vary_on_every_response_of_the_wrapped_resource():
    class Several(Resource):
        isLeaf = True

        def render_GET(self, request):
            if request.postpath == [b"304"]:
                request.setResponseCode(304)
                return b""
            if request.postpath == [b"boom"]:
                raise RuntimeError("boom")
            if request.postpath == [b"vary"]:
                request.setHeader(b"vary", b"Cookie")
            return PAGE

    root = wrapped(Several())
    for path, accepts, code in [(b"/", b"", 200), (b"/304", b"gzip", 304), (b"/boom", b"gzip", 500),
                                (b"/boom", b"", 500)]:
        response = await fetch(root, path, headers=accept(accepts) if accepts else [])
        assert response.code == code and response.header(b"vary") == b"Accept-Encoding", path
    merged = await fetch(root, b"/vary", headers=accept(b"gzip"))
    assert merged.header_list(b"vary") == [b"Cookie, Accept-Encoding"]
    # A 405 for a method the resource lacks is a response of the wrapped resource too.
    response = await fetch(root, b"/", method=b"POST")
    assert response.code == 405 and response.header(b"vary") == b"Accept-Encoding"


async def test_a_500_page_is_compressed_for_a_client_that_accepts_it():
    class Boom(Resource):
        isLeaf = True

        def render_GET(self, request):
            raise RuntimeError("boom")

    response = await fetch(wrapped(Boom()), b"/", headers=accept(b"gzip"))
    assert response.code == 500 and b"Processing Failed" in gzip.decompress(bytes(response.body))


@pytest.mark.parametrize("headers", [
    {"content_encoding": b"gzip"},  # encoded already: never twice
    {"content_type": b"image/png"},
    {"content_type": b"application/zip"},
    {"content_type": b"video/mp4; codecs=avc1"},
    {"cache_control": b"public, no-transform"},
])
async def test_bodies_left_as_they_are(headers):
    response = await fetch(wrapped(Page(**headers)), b"/", headers=accept(b"gzip"))
    assert bytes(response.body) == PAGE and response.header(b"vary") == b"Accept-Encoding"
    assert response.header(b"content-encoding") == headers.get("content_encoding")


async def test_text_images_and_configured_types():
    svg = await fetch(wrapped(Page(content_type=b"image/svg+xml")), b"/", headers=accept(b"gzip"))
    assert svg.header(b"content-encoding") == b"gzip"
    configured = wrapped(Page(content_type=b"text/csv"), skipTypes=["text/csv"])
    assert (await fetch(configured, b"/", headers=accept(b"gzip"))).header(b"content-encoding") is None


async def test_small_bodies_are_left_as_they_are():
    small = await fetch(wrapped(Page(b"tiny")), b"/", headers=accept(b"gzip"))
    assert bytes(small.body) == b"tiny" and small.header(b"content-encoding") is None
    configured = await fetch(wrapped(Page(), minimumSize=len(PAGE) + 1), b"/", headers=accept(b"gzip"))
    assert configured.header(b"content-encoding") is None


async def test_content_length_and_strong_etag_dropped_weak_etag_suffixed():
    strong = await fetch(wrapped(Page(etag=b'"abc"', content_length=b"%d" % len(PAGE))), b"/",
                         headers=accept(b"gzip"))
    assert strong.header(b"etag") is None and strong.header(b"content-length") == b"%d" % len(strong.body)
    assert gzip.decompress(bytes(strong.body)) == PAGE
    weak = await fetch(wrapped(Page(etag=b'W/"abc"')), b"/", headers=accept(b"gzip"))
    assert weak.header(b"etag") == b'W/"abc-gzip"'
    plain = await fetch(wrapped(Page(etag=b'"abc"')), b"/")
    assert plain.header(b"etag") == b'"abc"'


async def test_head_gives_the_headers_a_get_would():
    root = wrapped(Page())
    get = await fetch(root, b"/", headers=accept(b"gzip"))
    head = await fetch(root, b"/", method=b"HEAD", headers=accept(b"gzip"))
    assert bytes(head.body) == b""
    assert sorted(head.headers) == sorted(get.headers)


class Streamed(Resource):
    """Writes ``pieces`` with a pause between them (NOT_DONE_YET), noting what had been sent."""

    isLeaf = True

    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__()
        self.pieces = pieces

    def render_GET(self, request):
        async def produce():
            for piece in self.pieces:
                request.write(piece)
                await request.drain()
                await trio.lowlevel.checkpoint()
            request.finish()

        request.start_soon(produce)
        return NOT_DONE_YET


async def test_a_streamed_body_is_flushed_per_write():
    from trioweb.server import Site
    from trioweb.testing import MemoryChannel, request_head

    pieces = [b"<p>piece %d</p>\n" % i * 20 for i in range(5)]
    site = Site(wrapped(Streamed(pieces)))
    head = request_head(b"GET", b"/", accept(b"gzip"), b"")
    channel = MemoryChannel(head)
    seen = []
    original_write = channel.write

    def write(data):
        original_write(data)
        seen.append(bytes(channel.response.body))

    channel.write = write
    await site.process(site.requestFactory(site, channel, head))
    response = channel.response
    assert response.header(b"content-encoding") == b"gzip" and response.header(b"content-length") is None
    assert zlib.decompress(bytes(response.body), 31) == b"".join(pieces)
    # After each write, what was sent so far decodes to everything written so far.
    decoded = [zlib.decompressobj(31).decompress(sent) for sent in seen]
    for i in range(len(pieces)):
        assert b"".join(pieces[: i + 1]) in decoded


async def test_an_async_render_and_written_bytes():
    class Async(Resource):
        isLeaf = True

        async def render_GET(self, request):
            request.write(PAGE[:100])
            await trio.lowlevel.checkpoint()
            request.write(PAGE[100:])
            request.finish()

    response = await fetch(wrapped(Async()), b"/", headers=accept(b"gzip"))
    assert gzip.decompress(bytes(response.body)) == PAGE


async def test_children_are_not_wrapped_unless_asked():
    root = Resource()
    root.putChild(b"page", Page())
    plain = await fetch(wrapped(root), b"/page", headers=accept(b"gzip"))
    assert plain.header(b"content-encoding") is None and plain.header(b"vary") is None
    deep = EncodingResourceWrapper(root, [GzipEncoderFactory(brotli=False)], wrap_children=True)
    assert (await fetch(deep, b"/page", headers=accept(b"gzip"))).header(b"content-encoding") == b"gzip"


async def test_the_first_factory_giving_an_encoder_wins_and_twisted_style_encoders_work():
    class Upper:
        """An encoder of Twisted's interface: encode and finish only."""

        def encode(self, data):
            return data.upper()

        def finish(self):
            return b"!"

    class Never:
        def encoderForRequest(self, request):
            return None

    class Always:
        def encoderForRequest(self, request):
            request.setHeader(b"content-encoding", b"x-upper")  # as Twisted's factories do
            return Upper()

    root = EncodingResourceWrapper(Page(b"hello"), [Never(), Always(), GzipEncoderFactory()])
    response = await fetch(root, b"/", headers=accept(b"gzip"))
    assert bytes(response.body) == b"HELLO!" and response.header(b"content-encoding") == b"x-upper"
    assert response.header(b"content-length") == b"6"


def test_accepted_codings():
    assert accepted_codings([b"gzip;q=0.5, br , *;q=0", b"x-gzip;q=1.000"]) == {
        b"gzip": 0.5, b"br": 1.0, b"*": 0.0, b"x-gzip": 1.0}
    assert accepted_codings([b" , ;q=1, gzip ; q=0.8 ; foo=bar"]) == {b"gzip": 0.8}


def test_compress_level_is_checked():
    with pytest.raises(ValueError):
        GzipEncoderFactory(10)


@pytest.fixture
def brotli():
    if _encoding.brotli is None:
        pytest.skip("the optional brotli package is not installed (pip install brotli, or the test extra)")
    return _encoding.brotli


@pytest.mark.parametrize("header, coding", [
    (b"gzip, br", b"br"),
    (b"br;q=0.5, gzip", b"gzip"),
    (b"br;q=0.5, gzip;q=0.5", b"br"),
    (b"*", b"br"),
    (b"br;q=0, gzip", b"gzip"),
])
async def test_brotli_when_installed(brotli, header, coding):
    root = EncodingResourceWrapper(Page(), [GzipEncoderFactory()])
    response = await fetch(root, b"/", headers=accept(header))
    assert response.header(b"content-encoding") == coding
    body = bytes(response.body)
    assert (brotli.decompress(body) if coding == b"br" else gzip.decompress(body)) == PAGE


async def test_brotli_streams_too(brotli):
    pieces = [b"<p>piece %d</p>\n" % i * 20 for i in range(5)]
    root = EncodingResourceWrapper(Streamed(pieces), [GzipEncoderFactory()])
    response = await fetch(root, b"/", headers=accept(b"br"))
    assert response.header(b"content-encoding") == b"br"
    assert brotli.decompress(bytes(response.body)) == b"".join(pieces)


async def test_without_brotli_installed_gzip_alone(monkeypatch):
    monkeypatch.setattr(_encoding, "brotli", None)  # as if the package were not installed
    root = EncodingResourceWrapper(Page(), [GzipEncoderFactory()])
    assert (await fetch(root, b"/", headers=accept(b"br, gzip"))).header(b"content-encoding") == b"gzip"
    assert (await fetch(root, b"/", headers=accept(b"br"))).header(b"content-encoding") is None


async def test_the_access_log_counts_the_encoded_bytes(tmp_path):
    from trioweb.server import Site

    def logged_size(site, log):
        site.flush_log()
        request_line_end = log.read_text().index('HTTP/1.1" ')  # ... "GET / HTTP/1.1" 200 SIZE ...
        return int(log.read_text()[request_line_end:].split()[2])

    streamed_log, whole_log = tmp_path / "streamed.log", tmp_path / "whole.log"
    streamed_site = Site(wrapped(Streamed([PAGE[:3000], PAGE[3000:]])), logPath=str(streamed_log))
    streamed = await fetch(streamed_site, b"/", headers=accept(b"gzip"))
    whole_site = Site(wrapped(Page()), logPath=str(whole_log))
    whole = await fetch(whole_site, b"/", headers=accept(b"gzip"))
    assert logged_size(streamed_site, streamed_log) == len(streamed.body) < len(PAGE)
    assert logged_size(whole_site, whole_log) == len(whole.body) < len(PAGE)
