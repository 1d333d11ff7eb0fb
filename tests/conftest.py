"""Fixtures shared by the whole suite: real servers on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.support.hosting import installed_for_accounts
from tests.support.rawhttp import RawConnection
from trioweb.http import Limits
from trioweb.resource import Resource
from trioweb.server import Server, Site, serve


class RunningSite:
    def __init__(self, server: Server, port: int) -> None:
        self.server = server
        self.site = server.site
        self.port = port

    async def connect(self, timeout: float = 5.0) -> RawConnection:
        return await RawConnection.open(self.port, timeout=timeout)

    async def request(self, data: bytes, *, timeout: float = 5.0, head: bool = False) -> Any:
        """One request on a fresh connection; returns the response."""
        conn = await self.connect(timeout)
        try:
            await conn.send(data)
            return await conn.read_response(head_request=head)
        finally:
            await conn.aclose()


    async def request_cut_short(self, data: bytes) -> None:
        """One request whose response must be cut short (the connection aborted):
        no complete response can be read from it."""
        conn = await self.connect()
        try:
            await conn.send(data)
            with pytest.raises((AssertionError, ValueError, EOFError, trio.TooSlowError)):
                await conn.read_response()
        finally:
            await conn.aclose()


@pytest.fixture
def start_site(nursery: trio.Nursery) -> Callable[..., Any]:
    """``await start_site(root, **site_options)`` → a RunningSite on 127.0.0.1."""

    async def start(root: Resource, *, limits: Limits | None = None, **options: Any) -> RunningSite:
        site = Site(root, limits=limits, **options)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server = await nursery.start(serve, site, listeners)
        return RunningSite(server, listeners[0].socket.getsockname()[1])

    return start


@pytest.fixture(scope="session")
def install():
    """What other accounts run (see tests/support/hosting.py): this checkout, or a copy
    installed where they can read it; made once per test run, on first use."""
    with installed_for_accounts() as install:
        yield install
