"""Serving and connecting over UNIX sockets, TCP and TLS.

Each ``serve_*`` runs until cancelled, runs one `Broker` per accepted
connection with the root object ``root_factory(broker)`` returns, and keeps
each connection's failures to that connection: they are logged (logger
``rpc``), never raised into the server. Each ``connect_*`` is an async
context manager that yields a connected `Broker` and closes it on exit.
Keyword options not named here (``limits``, ``send_tracebacks``,
``handshake_timeout``) go to every `Broker`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import ssl
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import trio

from ._broker import Broker
from ._credentials import PeerCredentials, peer_credentials
from ._references import Referenceable

logger = logging.getLogger("rpc")

RootFactory = Callable[[Broker], Referenceable | None]
Authorizer = Callable[[PeerCredentials | None], bool | Awaitable[bool]]


async def _serve_connection(stream: trio.abc.Stream, root_factory: RootFactory,
                            broker_options: dict[str, Any]) -> None:
    try:
        broker = Broker(stream, **broker_options)
        broker._protocol.set_root(root_factory(broker))
        async with broker:
            await broker.wait_closed()
    except Exception as exc:
        # One connection's failure (handshake refused, a bug in a root
        # factory) must not stop the server or its other connections.
        logger.info("rpc: connection failed: %s: %s", type(exc).__name__, exc,
                    exc_info=not isinstance(exc, OSError | trio.BrokenResourceError)
                    and logger.isEnabledFor(logging.DEBUG))
        await trio.aclose_forcefully(stream)


def _remove_stale_socket(path: str) -> None:
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    os.unlink(path)


async def serve_unix(
    path: str | os.PathLike[str],
    root_factory: RootFactory,
    *,
    authorize: Authorizer | None = None,
    mode: int | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    **broker_options: Any,
) -> NoReturn:
    """Serve RPC on a UNIX socket at ``path`` until cancelled.

    A socket already at ``path`` is replaced (any other kind of file is an
    error); ``mode`` is applied to the new socket before it listens. The
    socket file is removed on exit. ``authorize(credentials)`` is called for
    each accepted connection with the peer's `PeerCredentials` (pid, uid,
    gid, from ``SO_PEERCRED``) before a byte is read or written; if it
    returns false (or raises), the connection is closed at once and the
    refusal logged. It may be a plain or an async function.
    ``task_status.started`` receives ``path`` once the socket listens.
    """
    path = os.fspath(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _remove_stale_socket(path)
        await sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen()
        inode = os.stat(path).st_ino
    except BaseException:
        sock.close()
        raise

    async def handle(stream: trio.SocketStream) -> None:
        if authorize is not None:
            credentials = peer_credentials(stream.socket)
            try:
                allowed = authorize(credentials)
                if inspect.isawaitable(allowed):
                    allowed = await allowed
            except Exception:
                logger.exception("rpc: authorize hook failed; refusing the peer")
                allowed = False
            if not allowed:
                logger.warning("rpc: refused peer %s on %s", credentials, path)
                await trio.aclose_forcefully(stream)
                return
        await _serve_connection(stream, root_factory, broker_options)

    try:
        task_status.started(path)
        await trio.serve_listeners(handle, [trio.SocketListener(sock)])
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                os.unlink(path)


@contextlib.asynccontextmanager
async def _connected(stream: trio.abc.Stream, root: Referenceable | None,
                     broker_options: dict[str, Any]) -> AsyncIterator[Broker]:
    try:
        broker = Broker(stream, root, **broker_options)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    async with broker:
        yield broker


@contextlib.asynccontextmanager
async def connect_unix(path: str | os.PathLike[str], *, root: Referenceable | None = None,
                       **broker_options: Any) -> AsyncIterator[Broker]:
    """Connect to a UNIX socket; yield the `Broker`, offering ``root`` to the peer.

    Check the server with ``broker.peer_credentials()`` before trusting it.
    """
    stream = await trio.open_unix_socket(os.fspath(path))
    async with _connected(stream, root, broker_options) as broker:
        yield broker


async def serve_tcp(
    port: int,
    root_factory: RootFactory,
    *,
    host: str | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    **broker_options: Any,
) -> NoReturn:
    """Serve RPC over TCP until cancelled; ``task_status.started`` gets the listeners.

    ``port`` 0 picks a free port (read it from the listeners' sockets).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        await _serve_connection(stream, root_factory, broker_options)

    task_status.started(listeners)
    await trio.serve_listeners(handle, listeners)


@contextlib.asynccontextmanager
async def connect_tcp(host: str, port: int, *, root: Referenceable | None = None,
                      **broker_options: Any) -> AsyncIterator[Broker]:
    """Connect over TCP; yield the `Broker`."""
    stream = await trio.open_tcp_stream(host, port)
    async with _connected(stream, root, broker_options) as broker:
        yield broker


async def serve_tls(
    port: int,
    root_factory: RootFactory,
    ssl_context: ssl.SSLContext,
    *,
    host: str | None = None,
    task_status: trio.TaskStatus[list[trio.SSLListener]] = trio.TASK_STATUS_IGNORED,
    **broker_options: Any,
) -> NoReturn:
    """Serve RPC over TLS on TCP until cancelled; ``task_status.started`` gets the listeners."""
    listeners = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host)

    async def handle(stream: trio.SSLStream) -> None:
        await _serve_connection(stream, root_factory, broker_options)

    task_status.started(listeners)
    await trio.serve_listeners(handle, listeners)


@contextlib.asynccontextmanager
async def connect_tls(host: str, port: int, ssl_context: ssl.SSLContext | None = None, *,
                      root: Referenceable | None = None,
                      **broker_options: Any) -> AsyncIterator[Broker]:
    """Connect over TLS (``ssl_context`` defaults to the system's trust); yield the `Broker`."""
    stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl_context)
    async with _connected(stream, root, broker_options) as broker:
        yield broker
