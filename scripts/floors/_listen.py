"""The floors' listener: a TCP socket on 127.0.0.1 and a task per connection,
with nothing else (trio sockets, no streams). The per-connection read loop
stays written out in each floor: it runs for every request, and is what a
floor measures, so no layer is put between it and the socket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


async def serve_forever(port: int, serve_connection: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Accept on 127.0.0.1:``port`` and run ``serve_connection(sock, *args)`` for each connection."""
    listener = trio.socket.socket()
    listener.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", port))
    listener.listen(128)
    async with trio.open_nursery() as nursery:
        while True:
            sock, _ = await listener.accept()
            nursery.start_soon(serve_connection, sock, *args)
