"""How ``trioweb`` runs as a process: privileges, open-file limit, pidfile, signals.

``run_site`` and ``run_personal`` install their signal receiver, take the
pidfile, open the listeners (both before privileges are dropped, so that a
port below 1024 can be bound and the pidfile written where only root may
write), tell systemd they are ready, and serve until SIGINT, SIGTERM or
SIGQUIT. The receiver comes first: a stop signal sent the moment a client
can connect is held until serving starts, then stops the server cleanly,
instead of meeting the default action (a KeyboardInterrupt, a core dump).
On a stop signal the listeners close at once and requests in flight get the
drain timeout to finish; on its own TCP sockets a lone server first holds
new connections out (the socket filter a ``--workers`` supervisor uses) and
answers what is queued, which closing would reset. A personal server drains the same way: calls in
flight finish, each front connection is closed as soon as it has none.
SIGHUP reloads and SIGUSR1 reopens the logs (``_reload``).

The pidfile is held with an ``flock`` for the process's life: a second
instance given the same pidfile refuses to start (exit 2) instead of
overwriting it, and a pidfile left by a crash is simply taken over. With
``--uid`` it is made over to that user, so that it can still be removed at
exit (or, where the directory does not let that user remove it, emptied).
"""

from __future__ import annotations

import ctypes
import fcntl
import grp
import logging
import os
import pwd
import resource
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import click
import trio

from trioweb._version import __version__
from trioweb.cli import _systemd
from trioweb.cli._distrib_options import PersonalSettings, SetupError
from trioweb.cli._reload import HANDLED_SIGNALS, Reloader, handle_signals
from trioweb.distrib import PublisherServer, ResourcePublisher
from trioweb.endpoints import Endpoint, SSLEndpoint, SystemdEndpoint, UNIXEndpoint, adopt_listeners, open_listeners
from trioweb.http import Handler, socket_listener_of
from trioweb.server import Server, Site
from trioweb.tls import CertificateStore

log = logging.getLogger("trioweb")
T = TypeVar("T")


def uid_of(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise click.BadParameter(f"no such user {value!r}") from None


def gid_of(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise click.BadParameter(f"no such group {value!r}") from None


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become ``uid``/``gid`` for good (after the listeners are bound)."""
    if gid is not None:
        os.setgroups([gid])
        os.setgid(gid)
    if uid is not None:
        if gid is None:
            os.setgroups([pwd.getpwuid(uid).pw_gid])
            os.setgid(pwd.getpwuid(uid).pw_gid)
        os.setuid(uid)


# Linux's socket filter options, and a classic BPF program for a TCP listener
# (it sees each segment from its TCP header): drop a segment whose flags have
# SYN without ACK (a new connection: the client retries in a second, and then
# finds the port closed); let the rest through (the last ACK of a handshake
# already begun, so that it lands in the queue the workers empty).
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
DROP_NEW_CONNECTIONS = (
    (0x30, 0, 0, 13),          # ldb [13]: the flags
    (0x54, 0, 0, 0x12),        # and #(SYN | ACK)
    (0x15, 0, 1, 0x02),        # jeq #SYN: next, else skip one
    (0x06, 0, 0, 0),           # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: keep
)
# File descriptors a connection may hold at once: its socket, and a file being
# sent or the pipe of a body relayed from a personal server (two ends).
FDS_PER_CONNECTION = 3
SPARE_FDS = 64  # listeners, logs, epoll, connections to personal servers


def raise_open_file_limit(max_connections: int) -> None:
    """Raise the soft limit on open files to what ``max_connections`` needs
    (the common default of 1024 is less), as far as the hard limit allows;
    warn if that is not enough. Never lowers it."""
    wanted = max_connections * FDS_PER_CONNECTION + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open files are limited to %d (hard limit): %d connections may need %d",
                    target, max_connections, wanted)


def log_opened(path: str, opener: Callable[[str], T]) -> T:
    """``opener(path)``, which opens the log ``path``; SetupError saying what to fix if it cannot."""
    try:
        return opener(path)
    except OSError as exc:
        directory = os.path.dirname(os.path.abspath(path))
        fix = (f"create {directory} (writable by the user starting trioweb)" if not os.path.isdir(directory)
               else "fix its permissions, or choose another --logfile")
        raise SetupError(f"cannot open the log {path}: {exc.strerror}; {fix}") from None


@contextmanager
def hold_pidfile(path: str | None, uid: int | None = None, gid: int | None = None) -> Iterator[None]:
    """Hold ``path`` (see the module docstring) while running; SetupError if it cannot be."""
    if not path:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise SetupError(f"cannot write the pidfile {path}: {exc.strerror}; create its directory, writable "
                         f"by the user starting trioweb, or choose another --pidfile") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise SetupError(f"the pidfile {path} belongs to a running trioweb (pid {owner or '?'}): stop it "
                         f"first, or choose another --pidfile") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except PermissionError:  # a directory only root may change, after dropping privileges
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
        os.close(fd)


async def _serve_until_signal(
    signals: Any, serve: Callable[..., Awaitable[None]], stop: Callable[[], None], what: str, reloader: Reloader,
    grace: float = 0, companion: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``serve`` (started with task_status) until it returns, acting on
    what ``signals`` (a receiver of ``HANDLED_SIGNALS``, opened before the
    listeners) delivers meanwhile (see ``_reload``): the first SIGINT,
    SIGTERM or SIGQUIT (nginx's graceful stop) calls ``stop``, which must
    make ``serve`` return (even if called before ``serve`` has started);
    SIGHUP reloads, SIGUSR1 reopens the logs. The access log is flushed every
    second and at the end. ``companion`` (a worker's lifeline) runs beside
    once serving has started."""
    try:
        async with trio.open_nursery() as nursery:

            async def run(*, task_status: trio.TaskStatus[None]) -> None:
                await serve(task_status=task_status)
                nursery.cancel_scope.cancel()  # stopped (and drained)

            async def flush_every_second() -> None:
                while True:
                    await trio.sleep(1)
                    reloader.flush()

            nursery.start_soon(handle_signals, signals, reloader, stop, grace)
            await nursery.start(run)
            nursery.start_soon(flush_every_second)
            nursery.start_soon(_systemd.watchdog)
            if companion is not None:
                nursery.start_soon(companion)
            log.info("trioweb %s %s", __version__, what)
            _systemd.notify("READY=1", f"STATUS={what}", f"MAINPID={os.getpid()}")
    finally:
        reloader.flush()


def _filter_program(instructions: tuple[tuple[int, int, int, int], ...]) -> tuple[bytes, Any]:
    """A ``struct sock_fprog`` for ``SO_ATTACH_FILTER`` and the array it points to (keep it alive)."""

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    program = (SockFilter * len(instructions))(*(SockFilter(*instruction) for instruction in instructions))
    return bytes(SockFprog(len(instructions), ctypes.addressof(program))), program


def hold_new_connections(sock: trio.socket.SocketType) -> None:
    """Keep new connections out of a TCP listening ``sock``'s accept queue
    (what is queued stays, to be taken at the stop); other kinds: nothing."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        fprog, program = _filter_program(DROP_NEW_CONNECTIONS)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        except OSError as exc:
            log.warning("cannot hold new connections back on %s: %s", sock.getsockname(), exc)
        del program


def admit_again(sock: trio.socket.SocketType) -> None:
    """Undo ``hold_new_connections`` (a socket systemd passed outlives us)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        except OSError:
            pass


async def run_site(
    reloader: Reloader,
    endpoints: list[Endpoint],
    *,
    handler_for: Callable[[Site], Handler] = lambda site: site.handle,
    certificates: dict[SSLEndpoint, CertificateStore] | None = None,
    pidfile: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
    grace: float = 0,
    adopted: list[list[int]] | None = None,
    on_server: Callable[[Server], None] = lambda server: None,
    companion: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve the reloader's Site on ``endpoints`` until SIGINT/SIGTERM, then stop gracefully.

    ``handler_for(site)`` is how a Site is put in service (the health check
    wraps it); a reload puts the new Site in service the same way. A stop
    signal waits ``grace`` seconds before it stops (see ``handle_signals``).
    A ``--workers`` worker serves the sockets its supervisor opened
    (``adopted``: their descriptors, by endpoint) and runs ``companion``;
    ``on_server`` is given the Server (for the status page)."""
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals, hold_pidfile(pidfile, uid, gid):
        async with _listening(endpoints, certificates, adopted) as listeners:
            drop_privileges(uid, gid)
            site = reloader.site
            server = Server(site, listeners)
            server.take_backlog_at_stop = adopted is not None  # the supervisor keeps new connections out
            on_server(server)
            reloader.switch = lambda new: server.replace_site(new, handler_for(new))
            reloader.switch(site)
            stop = server.stop if adopted is not None else _holding_new_connections(server, endpoints, listeners)
            await _serve_until_signal(signals, server.serve, stop,
                                      "serving on " + ", ".join(map(describe, endpoints)), reloader, grace,
                                      companion)


def _holding_new_connections(server: Server, endpoints: list[Endpoint],
                             listeners: list[trio.abc.Listener[Any]]) -> Callable[[], None]:
    """A lone server's stop: when it listens on its own TCP sockets only, new
    connections are held out of the queues and what is queued is answered
    before the listeners close, instead of being reset (a --workers
    supervisor does the holding for its workers). Not on a UNIX socket (new
    connections would keep its queue full) nor on one systemd passed (it
    outlives us, and would keep the filter)."""

    def stop() -> None:
        sockets = [plain.socket for plain in map(socket_listener_of, listeners) if plain is not None]
        if not any(isinstance(endpoint, SystemdEndpoint) for endpoint in endpoints) and \
                all(sock.family in (socket.AF_INET, socket.AF_INET6) for sock in sockets):
            for sock in sockets:
                hold_new_connections(sock)
            server.take_backlog_at_stop = True
        server.stop()

    return stop


@asynccontextmanager
async def _listening(endpoints: list[Endpoint], certificates: dict[SSLEndpoint, CertificateStore] | None,
                     adopted: list[list[int]] | None) -> AsyncIterator[list[trio.abc.Listener[Any]]]:
    """The listeners ``run_site`` serves: opened here, or adopted from a supervisor (closed, never removed)."""
    if adopted is None:
        async with open_listeners(endpoints, certificates=certificates) as listeners:
            yield listeners
        return
    listeners = adopt_listeners(endpoints, adopted, certificates=certificates)
    try:
        yield listeners
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()


async def run_personal(
    reloader: Reloader,
    endpoints: list[Endpoint],
    settings: PersonalSettings,
    *,
    certificates: dict[SSLEndpoint, CertificateStore] | None = None,
    pidfile: str | None = None,
    idle_exit: float | None = None,
) -> None:
    """Publish the reloader's Site to front servers on ``endpoints`` until SIGINT/SIGTERM
    (or ``idle_exit`` seconds without a request), then drain. ``ssl:`` listeners
    serve ``certificates`` (which a reload reloads)."""
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals, hold_pidfile(pidfile):
        async with open_listeners(endpoints, certificates=certificates) as listeners:
            publisher = ResourcePublisher(reloader.site)

            def switch(site: Site) -> None:
                publisher.site = site

            reloader.switch = switch
            server = PublisherServer(publisher, listeners, allowed_uids=settings.allowed_uids,
                                     max_per_peer=settings.max_peer_connections,
                                     idle_timeout=settings.peer_idle_timeout,
                                     drain_timeout=reloader.site.limits.drain_timeout, idle_exit=idle_exit)
            await _serve_until_signal(signals, server.serve, server.stop,
                                      "publishing to front servers on " + ", ".join(map(describe, endpoints)),
                                      reloader)


def describe(endpoint: Endpoint) -> str:
    if isinstance(endpoint, UNIXEndpoint):
        return f"unix:{endpoint.path}"
    if isinstance(endpoint, SystemdEndpoint):
        return f"systemd:{endpoint.name if endpoint.name is not None else endpoint.index}"
    return f"{type(endpoint).__name__[:3].lower()}:{endpoint.interface or '*'}:{endpoint.port}"
