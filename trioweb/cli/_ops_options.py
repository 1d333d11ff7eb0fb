"""The ``trioweb`` options an administrator runs it with: logs, proxies in front, health checks.

- ``--access-log-format``: ``combined`` (default), ``common``, ``twisted``,
  ``json``, a text one with ``+duration`` (see ``trioweb._accesslog``).
- ``--log-level`` and ``--error-log FILE``: the server's own log (stderr by
  default). When stderr is systemd's journal (``$JOURNAL_STREAM`` names it)
  lines carry no timestamp: the journal adds its own.
- ``--proxy-headers`` and ``--forwarded-allow-ips``: believe ``Forwarded``
  and ``X-Forwarded-*`` from those peers (``trioweb._forwarded``).
- ``--health-path PATH``: ``200 ok`` while serving, ``503`` once a stop
  signal came, out of the access log unless ``--health-log``;
  ``--health-grace SECONDS`` keeps serving that long after the signal, so
  that load balancers see the 503 before the listeners close.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from trioweb._accesslog import check_format
from trioweb.cli._process import log_opened
from trioweb.cli._reload import ReopenableFileHandler
from trioweb.http import Handler, HTTPConnection, RequestHead
from trioweb.resource import Resource
from trioweb.server import Request, Site, TrustedProxies

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_TRUSTED = "127.0.0.1,::1,unix"


def _check_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        check_format(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def ops_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--access-log-format", default="combined", show_default=True, callback=_check_format,
                     metavar="FORMAT",
                     help="combined, common, twisted (the client address quoted), json; "
                          "combined+duration etc. add the duration in microseconds."),
        click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
                     help="The least severe server log message written."),
        click.option("--error-log", metavar="FILE",
                     help="Write the server log (errors, starts and stops) here instead of stderr."),
        click.option("--proxy-headers", is_flag=True,
                     help="Believe Forwarded and X-Forwarded-For/-Proto/-Host/-Port from the peers "
                          "--forwarded-allow-ips names."),
        click.option("--forwarded-allow-ips", default=DEFAULT_TRUSTED, show_default=True, metavar="LIST",
                     help="Comma-separated addresses, CIDR networks, 'unix' (UNIX-socket peers) or '*'."),
        click.option("--health-path", metavar="PATH",
                     help="Answer 200 'ok' here while serving, 503 while stopping (not logged)."),
        click.option("--health-log", is_flag=True, help="Write health checks to the access log too."),
        click.option("--health-grace", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     metavar="SECONDS",
                     help="On SIGTERM, go on serving this long with the health check failing (503), "
                          "so that load balancers stop sending, then stop."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _journal_is_stderr() -> bool:
    """Whether stderr is the journal's stream (systemd sets ``JOURNAL_STREAM=dev:inode``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def configure_logging(options: dict[str, Any], personal_log: str | None, tag: str = "") -> list[ReopenableFileHandler]:
    """Set up the server log, each message after ``tag`` (``worker 1: ``);
    the file handlers SIGHUP and SIGUSR1 reopen."""
    level = getattr(logging, options["log_level"].upper())
    stamped = logging.Formatter(f"%(asctime)s %(name)s %(levelname)s {tag}%(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    files: list[ReopenableFileHandler] = []
    for path in (options["error_log"], personal_log):
        if path:
            handler = log_opened(path, ReopenableFileHandler)
            handler.setFormatter(stamped)
            root.addHandler(handler)
            files.append(handler)
    if not options["error_log"]:
        console = logging.StreamHandler(sys.stderr)
        journal = _journal_is_stderr()
        console.setFormatter(logging.Formatter(f"%(name)s %(levelname)s {tag}%(message)s") if journal else stamped)
        root.addHandler(console)
    return files


def trusted_proxies(options: dict[str, Any]) -> TrustedProxies | None:
    if not options["proxy_headers"]:
        return None
    try:
        return TrustedProxies(options["forwarded_allow_ips"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--forwarded-allow-ips") from None


class HealthCheck(Resource):
    """``200 ok`` while ``draining()`` is false, ``503 draining`` after."""

    isLeaf = True

    def __init__(self, draining: Callable[[], bool]) -> None:
        super().__init__()
        self.draining = draining

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"cache-control", b"no-store")
        if self.draining():
            request.setResponseCode(503)
            return b"draining\n"
        return b"ok\n"

    render_HEAD = render_GET


def with_health_check(options: dict[str, Any], draining: Callable[[], bool]) -> Callable[[Site], Handler]:
    """How a Site is put in service: its own ``handle``, or, with ``--health-path``,
    a handler that answers that path itself first."""
    path = options["health_path"]
    if not path:
        return lambda site: site.handle
    if not path.startswith("/"):
        raise click.BadParameter("must start with /", param_hint="--health-path")
    target = path.encode("utf-8")
    health = HealthCheck(draining)

    def handler_for(site: Site) -> Handler:
        checks = Site(health, limits=site.limits, headers=site.extra_headers, server_header=site.server_header)
        if options["health_log"]:
            checks.access_log = site.access_log
        ordinary = site.handle

        def handle(connection: HTTPConnection, head: RequestHead) -> Awaitable[None] | None:
            if head.target == target or head.target.partition(b"?")[0] == target:
                return checks.handle(connection, head)
            return ordinary(connection, head)

        return handle

    return handler_for
