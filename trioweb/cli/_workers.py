"""``--workers N``: a supervisor process and N worker processes sharing its listeners.

Theory of operation. The supervisor opens every listener once (as root, so
that ``--uid`` workers can serve port 80), takes the pidfile, and starts N
workers: the same ``trioweb`` command with the same options, run with
``TRIOWEB_WORKER`` in its environment (the endpoints, the numbers of the
listening sockets it inherits, its index, and its end of a "lifeline"
socket pair). A worker adopts the sockets instead of binding
(``endpoints.adopt_listeners``), builds its Site, drops privileges as a lone
server does, and says "ready" on the lifeline. All workers accept from the
same sockets, so the kernel keeps one accept queue per listener: a worker
that dies loses the connections it had open, none of those still queued
(``SO_REUSEPORT`` gives each process its own queue, reset when that process
exits; docs/operations.md has the figures that chose this).

The supervisor restarts a worker that exits, after a pause that doubles
(0.1 s to 30 s) while workers keep dying within 10 s of their start; each
exit is logged with its status. A worker that fails before it is ready at
the first start (a bad ``--path``, a config file that raises) stops the
whole server with its exit status: the error is on stderr, from the worker.

Signals: SIGHUP and SIGUSR1 are passed to every ready worker (a worker still
starting gets the SIGHUP when ready: it may have read the old configuration),
and the supervisor reopens its own log files. SIGTERM, SIGINT and SIGQUIT
stop: with ``--health-grace`` the workers are told first (health checks
fail, they keep serving) and the grace is the supervisor's; then the
supervisor stops new connections from entering the queues (a socket filter
that drops SYNs on TCP listeners: clients retry and then find the port
closed; the path removed on UNIX ones), and tells the workers to stop. Each
worker accepts and answers what is already queued, drains, and exits; the
supervisor waits (a worker still there ``--drain-timeout`` + 10 s later is
killed), and exits 0 (a socket systemd passed loses its filter first: it
outlives us).
If the supervisor itself dies, each worker sees its lifeline close
and stops gracefully.

A worker knows itself only: its index, pid, connections and requests
(``ServingProcess``); the status page shows the row of the worker that
answers the request.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import click
import trio

from trioweb._version import __version__
from trioweb.cli import _systemd
from trioweb.cli._process import admit_again, describe, hold_new_connections, hold_pidfile
from trioweb.cli._reload import HANDLED_SIGNALS, STOP_SIGNALS, ReopenableFileHandler
from trioweb.cli._units import command_path
from trioweb.distrib import WorkerStatus
from trioweb.endpoints import (
    Endpoint,
    SSLEndpoint,
    SystemdEndpoint,
    TCPEndpoint,
    UNIXEndpoint,
    open_listeners,
)
from trioweb.http import socket_listener_of
from trioweb.server import Server
from trioweb.tls import CertificateStore

log = logging.getLogger("trioweb")

WORKER_ENVIRONMENT = "TRIOWEB_WORKER"
MAX_WORKERS = 256
FIRST_DELAY = 0.1  # seconds before restarting a worker that died
MAX_DELAY = 30.0
STABLE_AFTER = 10.0  # a worker that ran this long resets the delay
KILL_AFTER_DRAIN = 10.0  # beyond the drain timeout, a stopping worker is killed

_ENDPOINT_KINDS: dict[str, type[Any]] = {kind.__name__: kind for kind in
                                         (TCPEndpoint, UNIXEndpoint, SSLEndpoint, SystemdEndpoint)}


def workers_option(function: Any) -> Any:
    """Add ``--workers`` to a click command."""
    return click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=1, show_default=True,
                        metavar="N",
                        help="Serve with N worker processes sharing the listeners, under a supervisor that "
                             "restarts them and passes signals on (a site or a --user front).")(function)


@dataclass
class ServingProcess:
    """What one serving process knows of itself, for the status page."""

    index: int = 0
    count: int = 1
    started_at: float = field(default_factory=time.time)
    server: Server | None = None

    def serving(self, server: Server) -> None:
        self.server = server

    def status(self) -> list[WorkerStatus]:
        server = self.server
        return [WorkerStatus(self.index, self.count, os.getpid(), self.started_at,
                             len(server.connections) if server else 0, server.accepted if server else 0,
                             server.requests_served() if server else 0)]


@dataclass(frozen=True)
class WorkerRole:
    """What a worker's supervisor told it (``TRIOWEB_WORKER``)."""

    index: int
    count: int
    endpoints: list[Endpoint]
    fds: list[list[int]]
    lifeline: int

    async def keep_lifeline(self) -> None:
        """Say "ready" to the supervisor, then stop this worker if the supervisor goes away."""
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=self.lifeline))
        with sock:
            await sock.send(b"r")
            while await sock.recv(64):
                pass
        log.warning("the supervisor is gone: stopping")
        for _ in range(2):  # the second one cuts a --health-grace short
            os.kill(os.getpid(), signal.SIGTERM)


def worker_role() -> WorkerRole | None:
    """This process's role if a supervisor started it (and out of the
    environment, so that CGI scripts do not see it); None otherwise."""
    text = os.environ.pop(WORKER_ENVIRONMENT, None)
    if text is None:
        return None
    try:
        given = json.loads(text)
        endpoints = [_ENDPOINT_KINDS[kind](**fields) for kind, fields in given["endpoints"]]
        return WorkerRole(int(given["index"]), int(given["count"]), endpoints,
                          [[int(fd) for fd in group] for group in given["fds"]], int(given["lifeline"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise click.UsageError(f"{WORKER_ENVIRONMENT} is set by a --workers supervisor, and this one is not "
                               f"its: {exc}") from None


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class WorkerFailed(Exception):
    def __init__(self, index: int, returncode: int) -> None:
        super().__init__(f"worker {index} {_exit_status(returncode)} before it was ready")
        self.returncode = returncode


class _Worker:
    """One running worker process, as its supervisor sees it."""

    def __init__(self, process: trio.Process, lifeline: trio.socket.SocketType) -> None:
        self.process = process
        self.lifeline = lifeline
        self.ready = False
        self.reload_pending = False

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass


class Supervisor:
    """Runs ``count`` workers on the listening sockets ``groups`` (one list per endpoint)."""

    def __init__(self, count: int, endpoints: list[Endpoint], groups: list[list[trio.socket.SocketType]],
                 *, cwd: str, grace: float, drain_timeout: float) -> None:
        self.count = count
        self.endpoints = endpoints
        self.groups = groups
        self.cwd = cwd
        self.grace = grace
        self.drain_timeout = drain_timeout
        self.workers: list[_Worker | None] = [None] * count
        self.restarts = [0] * count
        self.stopping = False
        self.all_ready = trio.Event()
        self.failure: WorkerFailed | None = None
        self._environment = {name: value for name, value in os.environ.items()
                             if name not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        fds = [[sock.fileno() for sock in group] for group in self.groups]
        role = {"index": index, "count": self.count, "fds": fds, "lifeline": theirs.fileno(),
                "endpoints": [(type(e).__name__, asdict(e)) for e in self.endpoints]}
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, command_path(), *sys.argv[1:]], cwd=self.cwd,
                env={**self._environment, WORKER_ENVIRONMENT: json.dumps(role)},
                pass_fds=[fd for group in fds for fd in group] + [theirs.fileno()])
        finally:
            theirs.close()
        return _Worker(process, trio.socket.from_stdlib_socket(ours))

    async def keep_running(self, index: int) -> None:
        """Run worker ``index`` until the stop, starting it again whenever it exits."""
        delay = FIRST_DELAY
        first = True
        while True:
            started = time.monotonic()
            worker = self.workers[index] = await self._spawn(index)
            with worker.lifeline:
                if await worker.lifeline.recv(1):
                    worker.ready = True
                    if worker.reload_pending:
                        worker.signal(signal.SIGHUP)
                    if first:
                        self._count_ready()
                returncode = await worker.process.wait()
            if self.stopping:
                return
            if not worker.ready and first:
                self.failure = WorkerFailed(index, returncode)
                self.all_ready.set()
                return
            first = False
            ran = time.monotonic() - started
            pause = FIRST_DELAY if ran >= STABLE_AFTER else delay
            delay = min(pause * 2, MAX_DELAY)
            self.restarts[index] += 1
            log.error("worker %d (pid %d) %s after %.1f s; starting it again in %.1f s (restart %d)",
                      index, worker.process.pid, _exit_status(returncode), ran, pause, self.restarts[index])
            await trio.sleep(pause)
            if self.stopping:
                return

    def _count_ready(self) -> None:
        if all(worker is not None and worker.ready for worker in self.workers):
            self.all_ready.set()

    def signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker is not None:
                worker.signal(signum)

    def pass_on(self, signum: int) -> None:
        """SIGHUP or SIGUSR1 to the ready workers; a starting worker gets SIGHUP once ready."""
        for worker in self.workers:
            if worker is None:
                continue
            if worker.ready:
                worker.signal(signum)
            elif signum == signal.SIGHUP:
                worker.reload_pending = True

    async def stop(self, signals: Any, name: str) -> None:
        """The stop (module docstring); returns once every worker has exited."""
        if self.grace > 0:
            log.info("got %s: workers' health checks fail, stopping in %g s", name, self.grace)
            self.signal_all(signal.SIGTERM)
            with trio.move_on_after(self.grace):
                async for again in signals:
                    if again in STOP_SIGNALS:
                        break
        log.info("got %s: stopping the workers", name)
        self.stopping = True
        for endpoint, group in zip(self.endpoints, self.groups, strict=True):
            for sock in group:
                hold_new_connections(sock)
            if isinstance(endpoint, UNIXEndpoint):
                try:
                    os.unlink(endpoint.path)
                except OSError:
                    pass
        self.signal_all(signal.SIGTERM)


async def supervise(count: int, endpoints: list[Endpoint], *, certificates: dict[SSLEndpoint, CertificateStore],
                    pidfile: str | None, uid: int | None, gid: int | None, cwd: str, grace: float,
                    drain_timeout: float) -> int:
    """Open the listeners, run ``count`` workers on them until a stop signal; the exit status."""
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals, hold_pidfile(pidfile, uid, gid):
        async with AsyncExitStack() as stack:
            groups: list[list[trio.socket.SocketType]] = []
            for endpoint in endpoints:
                listeners = await stack.enter_async_context(open_listeners([endpoint], certificates=certificates))
                groups.append([_plain_socket(listener) for listener in listeners])
            supervisor = Supervisor(count, endpoints, groups, cwd=cwd, grace=grace, drain_timeout=drain_timeout)
            try:
                async with trio.open_nursery() as nursery:
                    for index in range(count):
                        nursery.start_soon(supervisor.keep_running, index)
                    await _run(supervisor, signals, nursery, endpoints)
            finally:
                # A socket systemd passed outlives us: it goes back clean (what is queued
                # then waits for the next start). Ours close with the filter on.
                for endpoint, group in zip(endpoints, groups, strict=True):
                    if isinstance(endpoint, SystemdEndpoint):
                        for sock in group:
                            admit_again(sock)
            if supervisor.failure is not None:
                log.error("%s: stopping", supervisor.failure)
                return 2 if supervisor.failure.returncode == 2 else 1
    return 0


def _plain_socket(listener: trio.abc.Listener[Any]) -> trio.socket.SocketType:
    plain = socket_listener_of(listener)
    assert plain is not None, listener
    return plain.socket


async def _run(supervisor: Supervisor, signals: Any, nursery: trio.Nursery, endpoints: list[Endpoint]) -> None:
    """Wait for the workers to be ready, act on signals, stop; cancel ``nursery`` at the end."""
    await supervisor.all_ready.wait()
    if supervisor.failure is not None:
        supervisor.stopping = True
        supervisor.signal_all(signal.SIGTERM)
        await _reap(supervisor, nursery)
        return
    what = f"supervising {supervisor.count} workers serving on " + ", ".join(map(describe, endpoints))
    log.info("trioweb %s %s", __version__, what)
    _systemd.notify("READY=1", f"STATUS={what}", f"MAINPID={os.getpid()}")
    nursery.start_soon(_systemd.watchdog)
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum in STOP_SIGNALS:
            _systemd.notify("STOPPING=1")
            await supervisor.stop(signals, name)
            break
        if signum in (signal.SIGHUP, signal.SIGUSR1):
            log.info("got %s: passing it on to the workers", name)
            _reopen(logging.getLogger().handlers)
            supervisor.pass_on(signum)
        else:
            log.warning("got %s: ignored", name)
    await _reap(supervisor, nursery)


async def _reap(supervisor: Supervisor, nursery: trio.Nursery) -> None:
    """Wait for every worker to exit (killing those still there after the drain), then end."""
    with trio.move_on_after(supervisor.drain_timeout + KILL_AFTER_DRAIN):
        for worker in supervisor.workers:
            if worker is not None:
                await worker.process.wait()
    for worker in supervisor.workers:
        if worker is not None and worker.process.returncode is None:
            log.error("worker (pid %d) still running after the drain timeout: killing it", worker.process.pid)
            worker.signal(signal.SIGKILL)
    nursery.cancel_scope.cancel()


def _reopen(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        if isinstance(handler, ReopenableFileHandler):
            try:
                handler.reopen()
            except OSError as exc:
                log.error("cannot reopen %s: %s", handler.baseFilename, exc)


def check_workers(count: int, personal: bool) -> None:
    """Usage errors of ``--workers``."""
    if count > 1 and personal:
        raise click.UsageError("--workers serves a site or a --user front with several processes; a personal "
                               "server (--personal) serves one user from one process: leave --workers out.")
