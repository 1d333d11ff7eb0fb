"""The ``trioweb`` options of a community host beyond ``--user`` and ``--personal``.

``--user-domain example.com`` serves ``alice.example.com`` from alice's site
(her personal server, or her ``public_html``) through
``vhost.UserNameVirtualHost``, with the ``UserDirectory`` of ``--user`` as
both the users and the default: ``/~alice/`` on any other host name still
works, so both forms run at once.

``--status-path PATH`` answers that path itself, before the tree, with a
``distrib.StatusPage`` of the ``UserDirectory``'s backends (HTML, or
Prometheus text with ``?format=prometheus``), for the clients
``--status-allow`` names (loopback and UNIX-socket peers by default); others
get a 404. Off by default. ``--user-status`` adds each user's own row at
``/~NAME/.status``, for anyone.

``--max-user-rate N`` limits each user's site to N requests a second on
average, in bursts of 2 x N (``UserDirectory.limit_rate``): 429 beyond.

``--idle-exit SECONDS`` (with ``--personal``) stops the personal server
gracefully once it has had no request for that long: started by socket
activation (systemd, or ``systemd-socket-activate``), it costs no memory
while its user's site is idle, and the next connection starts it again.
``--install-units`` writes the systemd user units that do that (``_units``).

The wiring lives here, in the face: ``trioweb.vhost`` and
``trioweb.distrib`` are two resource kinds, which know nothing of each
other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import click

from trioweb.distrib import BackendStatus, StatusPage, UserDirectory, WorkerStatus
from trioweb.http import Handler, HTTPConnection, RequestHead
from trioweb.resource import Resource
from trioweb.server import Site, TrustedProxies
from trioweb.vhost import UserNameVirtualHost

LOOPBACK = "127.0.0.1,::1,unix"

# One label of a host name (the domain is checked label by label).
_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _check_domain(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        domain = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise click.BadParameter(f"{value!r} is not a domain name") from None
    labels = domain.split(".")
    if not all(label and set(label) <= _LABEL_CHARACTERS and not label.startswith("-") and not label.endswith("-")
               and len(label) <= 63 for label in labels):
        raise click.BadParameter(f"{value!r} is not a domain name (such as example.com)")
    return domain


def hosting_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--user-domain", callback=_check_domain, metavar="DOMAIN",
                     help="With --user: serve NAME.DOMAIN from user NAME's site too (her own origin)."),
        click.option("--status-path", metavar="PATH",
                     help="With --user: the backends' status here (HTML; ?format=prometheus for Prometheus), "
                          "for --status-allow clients only."),
        click.option("--status-allow", default=LOOPBACK, show_default=True, metavar="LIST",
                     help="Who may see --status-path: comma-separated addresses, CIDR networks, 'unix' or '*'."),
        click.option("--user-status", is_flag=True,
                     help="With --user: /~NAME/.status shows NAME's own backend's status row (to anyone)."),
        click.option("--max-user-rate", type=click.FloatRange(min=0, min_open=True), metavar="N",
                     help="With --user: requests a second one user's site may get on average (bursts of 2 x N); "
                          "beyond, 429 with Retry-After."),
        click.option("--idle-exit", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="With --personal: exit (drained) after this long without a request; for a server "
                          "started by socket activation."),
        click.option("--install-units", is_flag=True,
                     help="With --personal: write systemd user units that start it on demand (socket "
                          "activation, --idle-exit, default 300 s), say how to enable them, and exit."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class HostingOptions:
    """What these options add to a ``--user`` front (applied to each Site the
    front builds, at start and on every reload) or to a personal server; made
    once from the options, which it removes."""

    def __init__(self, options: dict[str, Any], personal: bool) -> None:
        self.idle_exit: float | None = options.pop("idle_exit")
        self.install_units: bool = options.pop("install_units")
        for given, name in ((self.idle_exit is not None, "--idle-exit"), (self.install_units, "--install-units")):
            if given and not personal:
                raise click.UsageError(f"{name} can only be used with --personal.")
        self.user_domain: str | None = options.pop("user_domain")
        self.status_path: str | None = options.pop("status_path")
        self.max_user_rate: float | None = options.pop("max_user_rate")
        self.user_status: bool = options.pop("user_status")
        allow = options.pop("status_allow")
        if self.status_path is not None and not self.status_path.startswith("/"):
            raise click.BadParameter("must start with /", param_hint="--status-path")
        try:
            self.status_allow = TrustedProxies(allow)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--status-allow") from None
        self.directory: UserDirectory | None = None  # of the Site built last

    def root(self, directory: Resource | None) -> Resource | None:
        """The front's root made of the ``UserDirectory`` of ``--user`` (None without it)."""
        if directory is None:
            for given, name in ((self.user_domain, "--user-domain"), (self.status_path, "--status-path"),
                                (self.max_user_rate, "--max-user-rate"), (self.user_status, "--user-status")):
                if given:
                    raise click.UsageError(f"{name} can only be used with --user.")
            return None
        assert isinstance(directory, UserDirectory)
        if self.max_user_rate is not None:
            directory.limit_rate(self.max_user_rate)
        directory.user_status = self.user_status
        self.directory = directory
        if self.user_domain:
            return UserNameVirtualHost(directory, self.user_domain)
        return directory

    def backends(self) -> dict[str, BackendStatus]:
        return self.directory.backends() if self.directory is not None else {}

    def with_status_page(self, handler_for: Callable[[Site], Handler],
                         workers: Callable[[], list[WorkerStatus]] = lambda: []) -> Callable[[Site], Handler]:
        """How a Site is put in service: as ``handler_for`` does, or, with
        ``--status-path``, with that path answered by the status page first
        (with the serving process's row from ``workers``)."""
        if not self.status_path:
            return handler_for
        target = self.status_path.encode("utf-8")
        page = StatusPage(self.backends, self.status_allow, workers)

        def with_status(site: Site) -> Handler:
            status = Site(page, limits=site.limits, headers=site.extra_headers, server_header=site.server_header,
                          proxies=site.proxies)
            status.access_log = site.access_log
            ordinary = handler_for(site)

            def handle(connection: HTTPConnection, head: RequestHead) -> Awaitable[None] | None:
                if head.target.partition(b"?")[0] == target:
                    return status.handle(connection, head)
                return ordinary(connection, head)

            return handle

        return with_status
