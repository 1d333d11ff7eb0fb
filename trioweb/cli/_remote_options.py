"""The ``trioweb`` options of personal servers on other machines.

On the front (``--user``):

- ``--users-map FILE`` names the users whose sites are served by a
  personal server elsewhere (``NAME ssl:HOST:PORT[:sha256=HEX]``, one a
  line; see ``trioweb.distrib._remote``). The map wins over a local account
  of the same name. It is read at start (a bad line: a message naming it,
  exit 2) and again on every SIGHUP, with the certificates below (a bad
  line, or a file that cannot be read: the reload fails, the old map and
  certificates keep serving, and the log says why).
- ``--backend-cert FILE`` and ``--backend-key FILE`` (default: the same
  file): the client certificate the front presents to them.
- ``--backend-ca FILE``: the CA (or certificates) that vouch for the
  personal servers of ``ssl:`` lines without a ``sha256=`` pin; the host
  name of the line must be in the certificate.

On a personal server (``--personal``), an ``ssl:`` listener must name the
certificates that vouch for the front with ``caCerts=FILE`` (the front's
own certificate pins it; a CA accepts every certificate it signed).

``--insecure-tcp-backends`` allows plain ``tcp:`` between the two (lines
of the map on a front, ``--listen tcp:`` or a TCP socket passed by systemd
on a personal server): nothing is
encrypted, and a personal server on TCP accepts anyone who can connect. For
tests on loopback only; without it, either is refused at start (exit 2).
"""

from __future__ import annotations

import socket
from typing import Any

import click

from trioweb.cli._distrib_options import SetupError
from trioweb.distrib import RemoteUsers, UserDirectory, UsersMapError, parse_users_map
from trioweb.endpoints import Endpoint, SSLEndpoint, SystemdEndpoint, TCPEndpoint, systemd_family
from trioweb.resource import Resource
from trioweb.tls import TLSError, client_context


def remote_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--users-map", type=click.Path(dir_okay=False), metavar="FILE",
                     help="With --user: lines 'NAME ssl:HOST:PORT[:sha256=HEX]' for users whose personal servers "
                          "are on other machines (reloaded on SIGHUP)."),
        click.option("--backend-cert", type=click.Path(dir_okay=False), metavar="FILE",
                     help="With --users-map: the client certificate the front presents to remote personal servers."),
        click.option("--backend-key", type=click.Path(dir_okay=False), metavar="FILE",
                     help="The key of --backend-cert (default: in the same file)."),
        click.option("--backend-ca", type=click.Path(dir_okay=False), metavar="FILE",
                     help="With --users-map: the CA that signs remote personal servers' certificates (for ssl: "
                          "lines without sha256=)."),
        click.option("--insecure-tcp-backends", is_flag=True,
                     help="Allow plain tcp: between a front and personal servers (no encryption, no "
                          "authentication): for tests on loopback only."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class RemoteOptions:
    """What these options add to a front (each Site it builds) or check on a
    personal server; made once from the options, which it removes."""

    def __init__(self, options: dict[str, Any], *, personal: bool) -> None:
        self.users_map: str | None = options.pop("users_map")
        self.cert: str | None = options.pop("backend_cert")
        self.key: str | None = options.pop("backend_key") or self.cert
        self.ca: str | None = options.pop("backend_ca")
        self.allow_tcp: bool = options.pop("insecure_tcp_backends")
        self.personal = personal
        front = bool(options.get("user_mode"))
        for given, name in ((self.users_map, "--users-map"), (self.cert, "--backend-cert"),
                            (self.ca, "--backend-ca")):
            if given and not front:
                raise click.UsageError(f"{name} can only be used with --user.")
        if self.key and not self.cert:
            raise click.UsageError("--backend-key needs --backend-cert.")
        if (self.cert or self.ca) and not self.users_map:
            raise click.UsageError("--backend-cert and --backend-ca are for the servers of --users-map.")
        if self.allow_tcp and not (front or personal):
            raise click.UsageError("--insecure-tcp-backends can only be used with --user or --personal.")

    def check_listeners(self, endpoints: list[Endpoint]) -> None:
        """A personal server listens on TCP only over TLS with client
        certificates, unless plain TCP is allowed; SetupError otherwise."""
        if not self.personal:
            return
        for endpoint in endpoints:
            if isinstance(endpoint, SSLEndpoint) and endpoint.ca_certs is None:
                raise SetupError(f"--personal on ssl:{endpoint.port} must check the front's certificate: add "
                                 f":caCerts=FILE (the front's certificate, or the CA that signed it)")
            if self.allow_tcp:
                continue
            if isinstance(endpoint, TCPEndpoint):
                where = f"tcp:{endpoint.port}"
            elif isinstance(endpoint, SystemdEndpoint) and systemd_family(endpoint) in (socket.AF_INET,
                                                                                       socket.AF_INET6):
                where = "a TCP socket from systemd"
            else:
                continue
            raise SetupError(f"--personal on {where} would serve anyone who can connect, unencrypted: listen on "
                             f"ssl:PORT:privateKey=...:caCerts=FILE, or add --insecure-tcp-backends (for tests on "
                             f"loopback only)")

    def apply(self, directory: Resource | None) -> Resource | None:
        """Give ``directory`` the users map, read now with its certificates
        (SetupError, naming the file, if one cannot be used)."""
        if directory is None or self.users_map is None:
            return directory
        assert isinstance(directory, UserDirectory)
        try:
            with open(self.users_map, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"cannot read the users map {self.users_map}: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
        try:
            pinned = verified = None
            if self.cert is not None:
                assert self.key is not None
                pinned = client_context(self.cert, self.key)
                if self.ca is not None:
                    verified = client_context(self.cert, self.key, ca=self.ca)
            remote = RemoteUsers(parse_users_map(text, self.users_map), pinned, verified, self.allow_tcp)
            remote.check(self.users_map)
        except (UsersMapError, TLSError) as exc:
            raise SetupError(str(exc)) from None
        directory.remote_users = remote
        return directory
