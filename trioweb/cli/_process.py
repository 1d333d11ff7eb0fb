"""How ``trioweb`` runs as a process: privileges, open-file limit, pidfile, signals.

``run_site`` and ``run_personal`` open the listeners (before privileges are
dropped, so that a port below 1024 can be bound), write the pidfile, and
serve until SIGINT, SIGTERM or SIGQUIT; then the listeners close at once and
requests in flight get the drain timeout to finish.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import resource
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial

import click
import trio

from trioweb._version import __version__
from trioweb.distrib import ResourcePublisher, serve_publisher
from trioweb.endpoints import Endpoint, UNIXEndpoint, open_listeners
from trioweb.server import Server, Site

log = logging.getLogger("trioweb")


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


@contextmanager
def _pidfile(path: str | None) -> Iterator[None]:
    if path:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass


async def _serve_until_signal(
    serve: Callable[..., Awaitable[None]], stop: Callable[[], None], what: str
) -> None:
    """Run ``serve`` (started with task_status) until it returns; the first
    SIGINT, SIGTERM or SIGQUIT (nginx's graceful stop) calls ``stop``, which
    must make ``serve`` return."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGQUIT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("got %s: stopping", signal.Signals(signum).name)
                    stop()
                    return

            async def run(*, task_status: trio.TaskStatus[None]) -> None:
                await serve(task_status=task_status)
                nursery.cancel_scope.cancel()  # stopped (and drained)

            nursery.start_soon(stop_on_signal)
            await nursery.start(run)
            log.info("trioweb %s %s", __version__, what)


async def run_site(
    site: Site,
    endpoints: list[Endpoint],
    *,
    pidfile: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> None:
    """Serve ``site`` on ``endpoints`` until SIGINT/SIGTERM, then stop gracefully."""
    async with open_listeners(endpoints) as listeners:
        drop_privileges(uid, gid)
        with _pidfile(pidfile):
            server = Server(site, listeners)
            await _serve_until_signal(server.serve, server.stop,
                                      "serving on " + ", ".join(map(_describe, endpoints)))


async def run_personal(
    site: Site,
    endpoints: list[Endpoint],
    allowed_uids: frozenset[int],
    *,
    pidfile: str | None = None,
) -> None:
    """Publish ``site`` to front servers on ``endpoints`` until SIGINT/SIGTERM."""
    async with open_listeners(endpoints) as listeners:
        with _pidfile(pidfile):
            stopped = trio.Event()

            async def serve(*, task_status: trio.TaskStatus[None]) -> None:
                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(serve_publisher, ResourcePublisher(site), listeners,
                                                allowed_uids=allowed_uids))
                    task_status.started()
                    await stopped.wait()
                    nursery.cancel_scope.cancel()

            await _serve_until_signal(serve, stopped.set,
                                      "publishing to front servers on " + ", ".join(map(_describe, endpoints)))


def _describe(endpoint: Endpoint) -> str:
    if isinstance(endpoint, UNIXEndpoint):
        return f"unix:{endpoint.path}"
    return f"{type(endpoint).__name__[:3].lower()}:{endpoint.interface or '*'}:{endpoint.port}"
