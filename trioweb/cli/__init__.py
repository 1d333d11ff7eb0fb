"""The ``trioweb`` command: ``twistd web``'s options, in the foreground, on trio.

It turns options into a root resource and a Site, opens the listeners,
drops privileges if asked, and serves until SIGINT or SIGTERM; then it
closes the listeners at once, lets requests in flight finish within the
drain timeout, and exits 0.
"""

from __future__ import annotations

import grp
import importlib
import logging
import os
import pwd
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import click
import trio

from trioweb.cli._distrib_options import (
    PERSONAL_SOCKET,
    default_personal_root,
    distrib_options,
    personal_settings,
    user_root,
)
from trioweb.cli._static_options import static_options, static_root
from trioweb._version import __version__
from trioweb.distrib import ResourcePublisher, serve_publisher
from trioweb.endpoints import Endpoint, EndpointError, UNIXEndpoint, open_listeners, parse_endpoint
from trioweb.http import Limits
from trioweb.server import Server, Site
from trioweb.cli._welcome import WelcomePage

log = logging.getLogger("trioweb")

EXAMPLES = """
\b
Examples:
  trioweb                                    the built-in page on port 8080
  trioweb --listen tcp:8000:interface=127.0.0.1 --class myapp.Root
  trioweb --listen unix:/run/web.sock:mode=660 --logfile access.log
  trioweb --listen tcp:80 --uid www-data --gid www-data --class myapp.Root
  trioweb --path ~/site                      a directory, with .rpy scripts
  trioweb --user --listen tcp:80 --uid www-data   the front of a community host
  trioweb --personal --path ~/public_html    your personal server behind it
"""


def _named_object(name: str) -> Any:
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise click.BadParameter(f"{name!r} is not a dotted name (module.Name)")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {name!r}: {exc}") from None


def _parse_header(text: str) -> tuple[bytes, bytes]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not of the form 'Name: Value'")
    return name.strip().encode("utf-8"), value.strip().encode("utf-8")


def _uid(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise click.BadParameter(f"no such user {value!r}") from None


def _gid(value: str) -> int:
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


def _raise_open_file_limit(max_connections: int) -> None:
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


def limit_options(function: Any) -> Any:
    defaults = Limits()
    options = [
        click.option("--max-request-line", type=int, default=defaults.max_request_line, show_default=True,
                     help="Longest request target in bytes (414 beyond)."),
        click.option("--max-header-bytes", type=int, default=defaults.max_header_bytes, show_default=True,
                     help="Largest header block in bytes (431 beyond)."),
        click.option("--max-header-count", type=int, default=defaults.max_header_count, show_default=True,
                     help="Most header fields in a request (431 beyond)."),
        click.option("--max-body-size", type=int, default=defaults.max_body_size, show_default=True,
                     help="Default request body limit in bytes (413 beyond)."),
        click.option("--header-timeout", type=float, default=defaults.header_timeout, show_default=True,
                     help="Seconds a client has to send a whole request head (408)."),
        click.option("--body-timeout", type=float, default=defaults.body_timeout, show_default=True,
                     help="Seconds of silence allowed while a body is received (408)."),
        click.option("--keepalive-timeout", type=float, default=defaults.keepalive_timeout,
                     show_default=True, help="Seconds an idle keep-alive connection is kept."),
        click.option("--send-timeout", type=float, default=defaults.send_timeout, show_default=True,
                     help="Seconds a client may stop reading before it is dropped."),
        click.option("--max-connections", type=int, default=defaults.max_connections, show_default=True,
                     help="Open connections at most (503 beyond)."),
        click.option("--drain-timeout", type=float, default=defaults.drain_timeout, show_default=True,
                     help="Seconds requests in flight get to finish when stopping."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def limits_from(options: dict[str, Any]) -> Limits:
    return Limits(**{name: options.pop(name) for name in Limits.__dataclass_fields__ if name in options
                     and name not in ("max_requests_per_connection",)})


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", "listen", multiple=True, metavar="ENDPOINT",
              help="Where to listen (repeatable): tcp:PORT[:interface=ADDR], unix:PATH[:mode=660], "
                   "ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem. Default tcp:8080.")
@click.option("--class", "class_name", metavar="MODULE.NAME",
              help="Serve an instance of this Resource class (created with no arguments).")
@click.option("--logfile", metavar="FILE", help="Access log in the combined log format ('-' for stdout).")
@click.option("--add-header", "add_header", multiple=True, metavar="'NAME: VALUE'",
              help="Add this header to every response, errors included (repeatable).")
@click.option("--display-tracebacks", is_flag=True, help="Show tracebacks in 500 pages (for development).")
@click.option("--pidfile", metavar="FILE", help="Write the process id here while running.")
@click.option("--uid", metavar="USER", help="Run as this user after the listeners are open.")
@click.option("--gid", metavar="GROUP", help="Run as this group after the listeners are open.")
@static_options
@distrib_options
@limit_options
@click.version_option(__version__, prog_name="trioweb")
def main(**options: Any) -> None:
    """Serve a resource tree over HTTP, in the foreground, until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    limits = limits_from(options)
    personal = personal_settings(options)
    default_listen = f"unix:{PERSONAL_SOCKET}:mode=666" if personal else "tcp:8080"
    try:
        endpoints = [parse_endpoint(e) for e in (options["listen"] or (default_listen,))]
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None
    headers = [_parse_header(h) for h in options["add_header"]]
    roots = [root for root in (
        static_root(options, _named_object),
        user_root(options),
        _named_object(options["class_name"])() if options["class_name"] else None,
    ) if root is not None]
    if len(roots) > 1:
        raise click.UsageError("--class, --path, --resource-script and --user choose the root: give one of them.")
    if roots:
        root = roots[0]
    elif personal:
        root = default_personal_root()
    else:
        root = WelcomePage()
    log_path = options["logfile"] or (personal.log_path if personal else "-")
    if personal and log_path != "-":
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)  # errors go to the personal log too
    site = Site(root, limits=limits, logPath=log_path,
                displayTracebacks=options["display_tracebacks"], headers=headers)
    uid = _uid(options["uid"]) if options["uid"] else None
    gid = _gid(options["gid"]) if options["gid"] else None
    if personal and (uid is not None or gid is not None):
        raise click.UsageError("--personal runs as the user who starts it: --uid/--gid do not apply.")
    _raise_open_file_limit(limits.max_connections)
    try:
        if personal:
            trio.run(lambda: run_personal(site, endpoints, personal.allowed_uids, pidfile=options["pidfile"]))
        else:
            trio.run(lambda: run_site(site, endpoints, pidfile=options["pidfile"], uid=uid, gid=gid))
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from None
