"""`Connection`: what references and streams need of the connection they belong to.

A `RemoteReference`, a `StreamSender` or a `StreamReceiver` belongs to one
connection. The sans-I/O `rpc._protocol.Protocol` makes references and
receivers as it decodes them, and binds senders as it encodes them; it gives
each the `Connection` it was made with, and never calls it itself. They call
it for whatever needs I/O or the connection's tasks (calls and one-way sends,
stream data, credit and ends, the pump of a sender with a source, pipes for
spliced payloads), and ask it whether it is still open and what credit a
sender has. `rpc.Broker` implements it. A protocol made without one (as in
tests of the protocol alone) gives None: its references are dead and its
streams carry no data.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._pending import PendingCall
    from ._streams import StreamSender

# How a producer ends a stream: DATA with the end flag, or ABORT.
StreamEnd = Literal["end", "abort"]


class Connection(typing.Protocol):
    """The methods of a broker that its references and streams call."""

    @property
    def closed(self) -> bool:
        """Whether the connection is over: references are dead from then on."""

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended; None while it is open."""

    @property
    def splice_payloads(self) -> bool:
        """Whether large payloads of incoming streams are spliced into pipes."""

    # References. Each raises `DeadReference` if the connection is closed when
    # the message would be sent; `_call` raises `ConnectionLost` if it closes
    # before the answer.

    async def _call(self, object_id: int, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Call ``method`` on the peer's object and return its answer."""

    async def _start_pending_call(self, object_id: int, method: str, args: Sequence[Any],
                                  kwargs: dict[str, Any]) -> PendingCall:
        """Send a call; return the `PendingCall` that will receive its answer."""

    async def _send_one_way(self, object_id: int, method: str, args: Sequence[Any],
                            kwargs: dict[str, Any]) -> None:
        """Send a call whose answer nobody wants."""

    # Stream senders, once the message carrying them is encoded.

    def _start_pump(self, sender: StreamSender, source: AsyncIterable[bytes] | bytes) -> None:
        """Feed ``sender`` from its ``source`` (see `StreamSender`)."""

    def _send_credit(self, stream_id: int) -> int:
        """Bytes the stream may still send; 0 once it is over."""

    async def _send_stream_data(self, stream_id: int, data: memoryview) -> int:
        """Send the start of ``data`` that the stream's credit allows, in one chunk;
        return its size: 0 if the credit is gone (the stream ended meanwhile).
        Raises `ConnectionLost` if the connection is closed."""

    def _finish_stream(self, stream_id: int, end: StreamEnd, reason: str) -> None:
        """End the stream (``reason`` goes with an abort); nothing if it is over already."""

    # Stream receivers.

    def _stream_consumed(self, stream_id: int, size: int) -> None:
        """The application took ``size`` bytes of the stream: grant credit when due."""

    def _take_pipe(self) -> tuple[int, int] | None:
        """A pipe (read end, write end) for spliced payloads, or None if there is none to lend."""

    def _give_back_pipe(self, pipe: tuple[int, int], empty: bool) -> None:
        """Return a pipe `_take_pipe` lent; one that is not ``empty`` is closed."""
