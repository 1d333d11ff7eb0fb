"""Personal servers on other machines: the users map, and TLS to them.

A front reads a users map (``--users-map FILE``), one user a line::

    # name   endpoint
    carol    ssl:host2.example.net:7001:sha256=9f86d0...
    dave     ssl:host3.example.net:7001
    erin     tcp:127.0.0.1:7002

``#`` starts a comment, blank lines are skipped. A name is an account name
of the usual form (``[a-z_][a-z0-9_-]*``, 32 characters at most); each
endpoint is ``ssl:HOST:PORT`` or ``tcp:HOST:PORT`` (``trioweb.endpoints``).
``parse_users_map`` rejects the whole file for one bad line, naming the file,
the line and what is wrong: a front keeps its old map rather than serve
half a new one.

A user in the map is served by that remote personal server, whether or not
an account of the same name exists on the front's machine (the map wins: on
hosts that share accounts, LDAP or NIS, every user has an account
everywhere, and the admin wrote the line to move the site). No lookup of
the account is made for her, nor any check of a home.

Over ``ssl:`` both sides authenticate before a byte of rpc is sent: the
front presents its client certificate (the personal server requires one,
``caCerts=``), and checks the server's certificate by the line's pin
(``sha256=``, the digest of its DER form, compared after the handshake) or,
without a pin, by the CA file the front was given (chain and host name).
Over ``tcp:`` nothing is encrypted or authenticated: the admin must allow it
explicitly, for tests on loopback.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass

import trio

from trioweb.distrib._peer_checks import Refused
from trioweb.endpoints import ClientEndpoint, EndpointError, SSLClientEndpoint, TCPClientEndpoint, parse_client_endpoint

__all__ = ["USER_NAME", "RemoteUsers", "UsersMapError", "open_tcp", "open_tls", "parse_users_map"]

USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")


class UsersMapError(ValueError):
    """A users map cannot be used; the message names the file and line."""


def parse_users_map(text: str, source: str) -> dict[str, ClientEndpoint]:
    """The users of a map (see the module docstring), by name; ``UsersMapError`` for any bad line."""
    users: dict[str, ClientEndpoint] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{source}, line {number}"
        if len(fields) != 2:
            raise UsersMapError(f"{where}: expected 'NAME ENDPOINT' (such as 'carol ssl:host:7001'), "
                                f"got {len(fields)} fields")
        name, description = fields
        if not USER_NAME.match(name):
            raise UsersMapError(f"{where}: {name!r} is not a user name (lowercase letters, digits, '_' and '-')")
        if name in users:
            raise UsersMapError(f"{where}: {name} is in the map twice")
        try:
            endpoint = parse_client_endpoint(description)
        except EndpointError as exc:
            raise UsersMapError(f"{where}: {exc}") from None
        if not isinstance(endpoint, (SSLClientEndpoint, TCPClientEndpoint)):
            raise UsersMapError(f"{where}: {description!r}: a remote personal server is ssl:HOST:PORT "
                                f"(or tcp:HOST:PORT)")
        users[name] = endpoint
    return users


@dataclass(frozen=True)
class RemoteUsers:
    """The users whose personal servers are elsewhere, and how to reach them.

    ``pinned`` is the context for ``ssl:`` lines with a pin (the front's
    client certificate, no check of its own), ``verified`` the one for lines
    without (the server's chain and host name checked against a CA); either
    may be None only if no line needs it (``check`` says so).
    """

    endpoints: dict[str, ClientEndpoint]
    pinned: ssl.SSLContext | None = None
    verified: ssl.SSLContext | None = None
    allow_tcp: bool = False

    def check(self, source: str) -> None:
        """``UsersMapError`` unless every line can be served as the front is set up."""
        for name, endpoint in self.endpoints.items():
            if isinstance(endpoint, TCPClientEndpoint) and not self.allow_tcp:
                raise UsersMapError(f"{source}: {name} is served over plain tcp: (no encryption, no "
                                    f"authentication); use ssl:, or allow it with --insecure-tcp-backends "
                                    f"(for tests on loopback only)")
            if isinstance(endpoint, SSLClientEndpoint) and self.context_for(endpoint) is None:
                missing = ("a client certificate (--backend-cert, --backend-key)" if self.pinned is None
                           else "a sha256= pin or --backend-ca")
                raise UsersMapError(f"{source}: {name} is served over ssl:, which needs {missing}")

    def context_for(self, endpoint: ClientEndpoint) -> ssl.SSLContext | None:
        """The TLS context to reach ``endpoint`` with (None: plain tcp, or none fits)."""
        if not isinstance(endpoint, SSLClientEndpoint):
            return None
        return self.pinned if endpoint.sha256 is not None else self.verified


async def open_tcp(endpoint: SSLClientEndpoint | TCPClientEndpoint) -> trio.SocketStream:
    """A TCP connection to ``endpoint``. Refused by every address it has (no
    one listening: a server restarting), it raises ``ConnectionRefusedError``,
    which the backend retries soon, rather than trio's plain ``OSError``."""
    try:
        return await trio.open_tcp_stream(endpoint.host, endpoint.port)
    except OSError as exc:
        attempts = exc.__cause__
        if isinstance(attempts, ExceptionGroup) and all(
                isinstance(one, ConnectionRefusedError) for one in attempts.exceptions):
            raise ConnectionRefusedError(f"connection to {endpoint.host}:{endpoint.port} refused") from exc
        raise


async def open_tls(endpoint: SSLClientEndpoint, context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    """A TLS stream to ``endpoint``, its handshake done and the server's
    certificate checked (the context's CA, or the endpoint's pin: ``Refused``
    on a mismatch). The caller bounds the time it takes."""
    if endpoint.sha256 is None and context.verify_mode != ssl.CERT_REQUIRED:
        raise Refused(f"nothing would check the certificate of {endpoint}: it needs a pin or a CA")
    plain = await open_tcp(endpoint)
    stream = trio.SSLStream(plain, context, server_hostname=endpoint.host if context.check_hostname else None)
    try:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:  # its cause says why (trio's own message is empty)
            raise Refused(f"TLS handshake with {endpoint} failed: {exc.__cause__ or exc}") from exc
        if endpoint.sha256 is not None:
            der = stream.getpeercert(binary_form=True)
            found = hashlib.sha256(der).digest() if der else b""
            if found != endpoint.sha256:
                raise Refused(f"the certificate of {endpoint} has the SHA-256 {found.hex() or '(none)'}, "
                              f"not the pinned {endpoint.sha256.hex()}")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
