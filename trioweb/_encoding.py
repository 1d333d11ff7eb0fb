"""Request encoders: ``GzipEncoderFactory``, and what ``EncodingResourceWrapper`` runs.

``EncodingResourceWrapper(resource, [GzipEncoderFactory()])`` (in
``trioweb.resource``, with Twisted's names) compresses
what ``resource`` renders for clients that accept it. Each factory's
``encoderForRequest(request)`` returns an encoder or None; the first
encoder wins. ``GzipEncoderFactory`` negotiates ``Accept-Encoding``
properly (q-values, ``q=0`` refuses, ``*``, ``x-gzip``), offers ``br`` too
when the optional ``brotli`` package is installed (preferred when the
client ranks it equal or higher), and never offers ``deflate`` (whose two
incompatible readings are a known interoperability trap).

Theory of operation
-------------------
The wrapper gives the request a ``ResponseEncoding`` before the wrapped
resource renders. Nothing is decided then: the response's headers are not
known yet. The decision is taken when the response head is framed
(``begin``), by which time the status, the headers and, for a body written
and finished at once, the whole body are known:

- every response of a wrapped resource gets ``Vary: Accept-Encoding``,
  compressed or not, errors and 304s included;
- the body is left as it is when no encoder was chosen, the status has no
  body (or is a 206 part), it already has a ``Content-Encoding`` (never
  encoded twice), ``Cache-Control: no-transform`` is set, its type does not
  compress (``skipTypes``: images, audio, video, archives...), or its size
  is known and under ``minimumSize``;
- otherwise ``Content-Encoding`` is set, the resource's ``Content-Length``
  is dropped (the framing measures the encoded body), a strong ``ETag`` is
  dropped and a weak one gets the coding as a suffix. A body complete at
  once is compressed in one call and framed with its encoded length; a
  body that streams is compressed piece by piece, each write flushed
  (``Z_SYNC_FLUSH``) so that a streamed page still streams, in bounded
  memory. A body sent from a file or a pipe (``sendfile``, ``sendpipe``) is
  read through the encoder instead of around it.

BREACH: a compressed response that reflects client input next to a secret
(a CSRF token, a session id) lets an attacker who can make requests and see
the sizes of responses guess the secret byte by byte. Do not wrap resources
whose pages hold both, or mask the secret per response. docs/encoding.md
says more.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from trioweb.http import status_has_no_body

if TYPE_CHECKING:
    from trioweb._request import Request

try:  # optional: br is offered only when it is installed
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

__all__ = ["GzipEncoderFactory", "RequestEncoder", "ResponseEncoding", "accepted_codings", "file_pieces"]

# Content types that are compressed already (or gain nothing): left as they are.
SKIP_TYPES = (
    "image/", "audio/", "video/", "font/woff", "application/zip", "application/gzip", "application/x-gzip",
    "application/x-bzip2", "application/x-xz", "application/zstd", "application/x-7z-compressed",
    "application/x-rar-compressed", "application/vnd.rar", "application/pdf", "application/octet-stream",
)
# ...except these, which are text.
TEXT_IMAGES = ("image/svg+xml", "image/x-icon", "image/bmp")
_QVALUE = re.compile(rb"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# Pieces a file or a pipe is read in when it goes through an encoder.
READ_PIECE = 64 * 1024


def accepted_codings(header_values: Iterable[bytes]) -> dict[bytes, float]:
    """``Accept-Encoding`` values → ``{coding: q}``, lower-case codings.

    A malformed or out-of-range q counts as 0 (refused): the client meant
    something we cannot read, and the identity body is always safe.
    """
    accepted: dict[bytes, float] = {}
    for header in header_values:
        for item in header.split(b","):
            coding, _, params = item.partition(b";")
            coding = coding.strip().lower()
            if not coding:
                continue
            quality = 1.0
            for param in params.split(b";"):
                key, sep, value = param.partition(b"=")
                if key.strip().lower() == b"q":
                    quality = _quality(value.strip()) if sep else 0.0
            accepted[coding] = quality
    return accepted


def _quality(text: bytes) -> float:
    """An RFC 9110 qvalue (``0``, ``0.5``, ``1.000``), or 0.0 if malformed."""
    return float(text) if _QVALUE.fullmatch(text) else 0.0


class RequestEncoder(Protocol):
    """Twisted's encoder interface: ``encode`` each piece, ``finish`` for the tail."""

    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _GzipEncoder:
    """gzip (or x-gzip, as the client named it) with a flush per piece."""

    def __init__(self, factory: GzipEncoderFactory, coding: bytes) -> None:
        self.factory = factory
        self.coding = coding
        self._compressor: Any = None

    def whole(self, data: bytes) -> bytes:
        return zlib.compress(data, self.factory.compressLevel, wbits=31)

    def encode(self, data: bytes) -> bytes:
        if self._compressor is None:
            self._compressor = zlib.compressobj(self.factory.compressLevel, zlib.DEFLATED, 31)
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        if self._compressor is None:
            return self.whole(b"")
        tail: bytes = self._compressor.flush(zlib.Z_FINISH)
        return tail


class _BrotliEncoder:
    """br, through the optional ``brotli`` package, with a flush per piece."""

    coding = b"br"

    def __init__(self, factory: GzipEncoderFactory) -> None:
        self.factory = factory
        self._compressor: Any = None

    def whole(self, data: bytes) -> bytes:
        compressed: bytes = brotli.compress(data, quality=self.factory.brotliQuality)
        return compressed

    def encode(self, data: bytes) -> bytes:
        if self._compressor is None:
            self._compressor = brotli.Compressor(quality=self.factory.brotliQuality)
        return self._compressor.process(data) + self._compressor.flush()

    def finish(self) -> bytes:
        if self._compressor is None:
            return self.whole(b"")
        return self._compressor.finish()


class GzipEncoderFactory:
    """Chooses gzip (or br, when ``brotli`` is installed) for the clients that accept it.

    ``compressLevel``: zlib's level, 6 by default (Twisted's 9 costs far
    more CPU for a body a percent or two smaller). ``minimumSize``: bodies
    of a known size under it are sent as they are (20 bytes, nginx's
    default). ``skipTypes``: content-type prefixes left as they are
    (``SKIP_TYPES``). ``brotli``: offer br when the package is installed
    (True by default; False never offers it). ``brotliQuality``: 4.
    """

    compressLevel = 6
    minimumSize = 20
    brotliQuality = 4

    def __init__(self, compressLevel: int | None = None, *, minimumSize: int | None = None,
                 skipTypes: Iterable[str] | None = None, brotli: bool = True) -> None:
        if compressLevel is not None:
            if not 0 <= compressLevel <= 9:
                raise ValueError("compressLevel must be from 0 to 9")
            self.compressLevel = compressLevel
        if minimumSize is not None:
            self.minimumSize = minimumSize
        self.skipTypes = tuple(SKIP_TYPES if skipTypes is None else skipTypes)
        self.offers_brotli = brotli and _brotli_installed()

    def encoderForRequest(self, request: Request) -> _GzipEncoder | _BrotliEncoder | None:
        """An encoder for the best coding the client accepts, or None."""
        values = request.requestHeaders.getRawHeaders(b"accept-encoding")
        if not values:
            return None
        accepted = accepted_codings(values)
        anything = accepted.get(b"*", 0.0)
        gzip_name, gzip_q = b"gzip", accepted.get(b"gzip", -1.0)
        if accepted.get(b"x-gzip", -1.0) > gzip_q:
            gzip_name, gzip_q = b"x-gzip", accepted[b"x-gzip"]
        if gzip_q < 0:
            gzip_q = anything
        if self.offers_brotli:
            brotli_q = accepted.get(b"br", anything)
            if brotli_q > 0 and brotli_q >= gzip_q:
                return _BrotliEncoder(self)
        if gzip_q > 0:
            return _GzipEncoder(self, gzip_name)
        return None

    def compresses(self, content_type: bytes | None) -> bool:
        """Whether bodies of this type are worth compressing."""
        if content_type is None:
            return True
        kind = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        return kind in TEXT_IMAGES or not kind.startswith(self.skipTypes)


def _brotli_installed() -> bool:
    return brotli is not None


class ResponseEncoding:
    """One response of a wrapped resource, and the encoder chosen for it (or None).

    ``Request`` calls ``begin`` when it frames the head, then ``encode`` for
    each later piece and ``finish`` for the tail (see the theory of operation).
    """

    def __init__(self, encoder: RequestEncoder | None) -> None:
        self.encoder = encoder

    def begin(self, request: Request, pieces: list[bytes],
              content_length: int | None) -> tuple[list[bytes], int | None] | None:
        """The body queued so far (``pieces``), encoded, and its length
        (``content_length`` is given when ``pieces`` is the whole body); None to
        send the body as it is."""
        headers = request.responseHeaders
        _add_vary(headers)
        encoder = self.encoder
        if encoder is None or status_has_no_body(request.code):
            return None
        if isinstance(encoder, (_GzipEncoder, _BrotliEncoder)):
            if not self._applies(request, encoder.factory, content_length):
                return None
            headers.set_value(b"content-encoding", encoder.coding)
            etag = headers.last_value(b"etag")
            if etag is not None:
                headers.removeHeader(b"etag")
                if etag.startswith(b'W/"') and etag.endswith(b'"'):
                    headers.set_value(b"etag", etag[:-1] + b"-" + encoder.coding + b'"')
        # else an encoder of Twisted's interface, which set its headers itself: it always applies
        headers.removeHeader(b"content-length")
        if content_length is None:
            return ([encoder.encode(b"".join(pieces))] if pieces else []), None
        if request.method == b"HEAD" and not any(pieces):
            return [], None  # what the body would encode to is not known without it
        body = b"".join(pieces)
        whole = getattr(encoder, "whole", None)
        encoded = whole(body) if whole is not None else encoder.encode(body) + encoder.finish()
        return [encoded], len(encoded)

    @staticmethod
    def _applies(request: Request, factory: GzipEncoderFactory, content_length: int | None) -> bool:
        headers = request.responseHeaders
        if request.code == 206 or headers.last_value(b"content-encoding") is not None:
            return False
        cache_control = headers.getRawHeaders(b"cache-control")
        if cache_control and any(b"no-transform" in value.lower() for value in cache_control):
            return False
        if not factory.compresses(headers.last_value(b"content-type") or request.defaultContentType):
            return False
        declared = headers.last_value(b"content-length")
        size = int(declared) if declared is not None and declared.isdigit() else content_length
        return size is None or size >= factory.minimumSize

    def encode(self, data: bytes) -> bytes:
        assert self.encoder is not None
        return self.encoder.encode(data)

    def finish(self) -> bytes:
        assert self.encoder is not None
        return self.encoder.finish()


def _add_vary(headers: Any) -> None:
    values = headers.getRawHeaders(b"vary")
    if not values:
        headers.set_value(b"vary", b"Accept-Encoding")
        return
    fields = {field.strip().lower() for value in values for field in value.split(b",")}
    if b"accept-encoding" not in fields and b"*" not in fields:
        headers.set_value(b"vary", b", ".join([*values, b"Accept-Encoding"]))


def file_pieces(fd: int, offset: int, count: int) -> Iterator[bytes]:
    """``count`` bytes of the open file ``fd`` from ``offset``, in pieces (to go
    through an encoder); OSError if the file is shorter."""
    while count > 0:
        piece = os.pread(fd, min(count, READ_PIECE), offset)
        if not piece:
            raise OSError("the file ended before the part being sent")
        offset += len(piece)
        count -= len(piece)
        yield piece
