"""Compressed responses across the front: encoded by the personal server, or by the front."""

from __future__ import annotations

import zlib

from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import Whole, front_to_personal, pattern, personal_root
from trioweb.resource import EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory

GZIP = b"Accept-Encoding: gzip\r\n"


def gzip_wrapped(root: Resource) -> EncodingResourceWrapper:
    return EncodingResourceWrapper(root, [GzipEncoderFactory(brotli=False)], wrap_children=True)


async def test_a_personal_server_compresses_and_the_front_relays_it(start_site, nursery, tmp_path):
    front, _ = await front_to_personal(start_site, nursery, tmp_path, root=gzip_wrapped(personal_root()))
    whole = await front.request(get(b"/~alice/whole", extra=GZIP))
    assert whole.header(b"content-encoding") == b"gzip" and whole.header(b"vary") == b"Accept-Encoding"
    assert whole.header(b"content-length") == b"%d" % len(whole.body)  # complete at once: a length
    assert zlib.decompress(whole.body, 31) == Whole.body
    streamed = await front.request(get(b"/~alice/big?mib=2", extra=GZIP), timeout=30)
    assert streamed.header(b"content-encoding") == b"gzip"
    assert zlib.decompress(streamed.body, 31) == b"x" * (2 << 20)
    plain = await front.request(get(b"/~alice/whole"))
    assert plain.header(b"content-encoding") is None and plain.body == Whole.body
    assert plain.header(b"vary") == b"Accept-Encoding"


async def test_the_front_compresses_a_body_it_relays_from_a_pipe(start_site, nursery, tmp_path):
    """A personal server's body arrives as pipe pieces (sendpipe); an encoder on the front reads
    them through itself instead of splicing them past it."""
    front, subscription = await front_to_personal(start_site, nursery, tmp_path)
    front.site.resource = gzip_wrapped(front.site.resource)
    response = await front.request(get(b"/~alice/sized?mib=3", extra=GZIP), timeout=30)
    assert response.status == 200 and response.header(b"content-encoding") == b"gzip"
    assert response.header(b"content-length") is None  # the personal server's length was of the identity body
    assert zlib.decompress(response.body, 31) == pattern(3 << 20)
