"""``Channel``: what a Site needs from whatever carries a request.

``HTTPConnection`` is the channel of a request that came over HTTP; the
distributed mode has another (``trioweb.distrib``'s ``RemoteChannel``) for a
request forwarded by a front server. ``Site`` and ``Request`` use nothing else,
so every resource works the same behind either.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import IO, Protocol

from trioweb.address import Address
from trioweb.http._parser import RequestHead


class Channel(Protocol):
    client: Address
    host: Address
    is_secure: bool
    lost: bool  # the client is gone: writes are dropped, the response will not complete
    response_started: bool  # the head is framed; the status can no longer change
    response_done: bool

    @property
    def head(self) -> RequestHead | None:
        """The head of the request being answered (None between requests)."""

    def declared_body_size(self) -> int | None:
        """The request's Content-Length (0 without a body), None if unknown."""

    async def receive_body_chunk(self, max_size: int) -> bytes:
        """The next piece of the body, ``b""`` at its end.

        Raises ``BodyTooLarge`` past ``max_size``, ``BodyTimeout``,
        ``ParseError`` (malformed body) or ``ConnectionLost``.
        """

    def start_response(
        self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]], content_length: int | None
    ) -> None:
        """Frame the head; ``headers`` exclude framing and connection headers."""

    def write(self, data: bytes) -> None:
        """Queue body bytes (no I/O)."""

    def end_response(self) -> None:
        """The body is complete."""

    def has_output(self) -> bool:
        """Bytes are queued and not sent yet."""

    async def flush(self) -> None:
        """Send what is queued; ``ConnectionLost`` if the client is gone."""

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Send part of an open file as body, in bounded memory."""

    async def send_pipe(self, fd: int, count: int, on_sent: Callable[[int], None]) -> None:
        """Send the next ``count`` bytes of the pipe ``fd`` (non-blocking, the
        bytes already in it) as body, calling ``on_sent`` with each amount moved."""

    async def watch_for_disconnect(self) -> None:
        """Return when the client goes away (run beside long responses)."""


async def read_body(channel: Channel, max_size: int, spool_size: int) -> IO[bytes]:
    """The whole request body, as a file at its start: in memory if its
    declared size is at most ``spool_size``, else in a temporary file past
    that size. Raises as ``receive_body_chunk`` does."""
    declared = channel.declared_body_size()
    content: IO[bytes]
    if declared is not None and declared <= spool_size:
        content = BytesIO()
    else:
        content = tempfile.SpooledTemporaryFile(max_size=spool_size)
    while piece := await channel.receive_body_chunk(max_size):
        content.write(piece)
    content.seek(0)
    return content


def read_pipe(fd: int, count: int, on_sent: Callable[[int], None], piece_size: int) -> Iterator[bytes]:
    """The next ``count`` bytes already in the pipe ``fd``, in pieces of at
    most ``piece_size``, each reported to ``on_sent`` as it is taken out: for
    a channel's ``send_pipe`` that cannot splice. ValueError if the pipe holds
    fewer."""
    while count > 0:
        piece = os.read(fd, min(count, piece_size))
        if not piece:
            raise ValueError("pipe shorter than the count being sent")
        count -= len(piece)
        on_sent(len(piece))
        yield piece
