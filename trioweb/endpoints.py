"""Endpoint strings: where to listen (``tcp:8080``, ``unix:/path:mode=660``,
``ssl:8443:...``) → listeners, and where to connect (``unix:/path``,
``tcp:host:port``).

The syntax is Twisted's strports: fields separated by ``:``, positional then
``key=value``; a literal ``:`` or ``=`` inside a value is escaped with ``\\``
(``tcp:8080:interface=\\:\\:1``). An IPv6 interface may also be written in
brackets (``interface=[::1]``).

- ``tcp:PORT[:interface=ADDR][:backlog=N]``
- ``unix:PATH[:mode=OCTAL][:lockfile=0|1][:backlog=N]`` (``wantPID`` is
  accepted as another name for ``lockfile``, as Twisted's guide uses it)
- ``ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem][:interface=ADDR]
  [:extraCertChain=CHAIN.pem][:dhParameters=DH.pem][:sni=DIR][:tls=intermediate|modern]
  [:caCerts=CA.pem]`` (the profile, SNI and reloads are ``trioweb.tls``'s;
  with ``caCerts`` a client must present a certificate that file vouches for)
- ``systemd:index=N[:domain=INET|INET6|UNIX]`` or ``systemd:name=NAME``: a
  socket systemd opened for us (socket activation, ``LISTEN_FDS``), by its
  position or its ``FileDescriptorName``; ``inherited_endpoints()`` lists
  them all.

Listening endpoints also take ``proxy=1``: each connection starts with a
PROXY protocol header (v1 or v2, HAProxy's) naming the real client.

and for connecting (``parse_client_endpoint``, as a ``ResourceSubscription``
names its personal server):

- ``unix:PATH`` (or ``unix:path=PATH``)
- ``tcp:HOST:PORT`` (or ``tcp:host=HOST:port=PORT``)
- ``ssl:HOST:PORT[:sha256=HEX]``: TLS, the server's certificate pinned by
  the SHA-256 of its DER form (64 hex digits, with or without ``\\:``-escaped
  colons), or, without a pin, checked by whoever connects (a CA)

UNIX sockets are locked by default, like Twisted's: the owner holds an
``fcntl.flock`` on ``PATH.lock``, a file naming its pid (for messages only).
The kernel drops the lock when the process dies, however it dies, so a
server killed by SIGKILL can be restarted at once (even before its parent
reaps it) and a pid left in the file by a crash, maybe reused after a reboot,
means nothing. A held lock makes the start fail with a clear error naming
the owner's pid; a socket left by a dead process is replaced; a socket that
still answers without anyone holding the lock (another program's) is never
replaced; a path that is not a socket is never removed. The symlink lock of
older versions is replaced (a live old server is found answering on its
socket). ``open_listeners`` is an async context manager that removes the
socket and its lock on the way out.

Any malformed string raises ``EndpointError`` naming it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import socket as stdlib_socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from trioweb.http import ProxyProtocolListener
from trioweb.tls import PROFILES, CertificateStore, TLSError

__all__ = [
    "ClientEndpoint",
    "Endpoint",
    "EndpointError",
    "SSLClientEndpoint",
    "SSLEndpoint",
    "SystemdEndpoint",
    "TCPClientEndpoint",
    "TCPEndpoint",
    "UNIXClientEndpoint",
    "UNIXEndpoint",
    "adopt_listeners",
    "certificate_store",
    "inherited_endpoints",
    "open_listeners",
    "parse_client_endpoint",
    "parse_endpoint",
    "systemd_family",
]


class EndpointError(ValueError):
    """An endpoint string is malformed, or its socket cannot be opened."""


@dataclass(frozen=True)
class TCPEndpoint:
    port: int
    interface: str = ""
    backlog: int = 1024
    proxy: bool = False


@dataclass(frozen=True)
class UNIXEndpoint:
    path: str
    mode: int = 0o666
    lockfile: bool = True
    backlog: int = 1024
    proxy: bool = False


@dataclass(frozen=True)
class SSLEndpoint:
    port: int
    private_key: str
    cert_key: str
    interface: str = ""
    backlog: int = 1024
    proxy: bool = False
    extra_cert_chain: str | None = None
    dh_parameters: str | None = None
    sni: str | None = None
    tls: str = "intermediate"
    ca_certs: str | None = None


@dataclass(frozen=True)
class SystemdEndpoint:
    index: int = 0
    domain: str | None = None
    name: str | None = None
    proxy: bool = False


Endpoint = TCPEndpoint | UNIXEndpoint | SSLEndpoint | SystemdEndpoint


@dataclass(frozen=True)
class UNIXClientEndpoint:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TCPClientEndpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp:{self.host}:{self.port}"


@dataclass(frozen=True)
class SSLClientEndpoint:
    host: str
    port: int
    sha256: bytes | None = None  # the server certificate's digest (DER), if pinned

    def __str__(self) -> str:
        return f"ssl:{self.host}:{self.port}"


ClientEndpoint = UNIXClientEndpoint | TCPClientEndpoint | SSLClientEndpoint


def _split(description: str) -> list[str]:
    """Split at unescaped ``:``, keeping ``\\``-escaped characters literally."""
    fields, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _parse_fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    # Bracketed IPv6 literals may hold unescaped colons.
    protected = description
    for start in range(len(protected)):
        if protected.startswith("[", start):
            end = protected.find("]", start)
            if end != -1:
                inner = protected[start + 1 : end].replace(":", "\\:")
                protected = protected[:start] + inner + protected[end + 1 :]
                break
    kind, *rest = _split(protected)
    positional: list[str] = []
    options: dict[str, str] = {}
    for field in rest:
        key, sep, value = field.partition("=")
        if sep:
            if key in options:
                raise EndpointError(f"endpoint {description!r}: {key} given twice")
            options[key] = value
        elif options:
            raise EndpointError(f"endpoint {description!r}: positional value {field!r} after key=value")
        else:
            positional.append(field)
    return kind, positional, options


def _int(description: str, name: str, value: str, base: int = 10) -> int:
    try:
        number = int(value, base)
    except ValueError:
        raise EndpointError(f"endpoint {description!r}: {name} must be a number, not {value!r}") from None
    if number < 0:
        raise EndpointError(f"endpoint {description!r}: {name} must not be negative")
    return number


def parse_endpoint(description: str) -> Endpoint:
    """Parse one endpoint string; ``EndpointError`` if it is malformed."""
    kind, positional, options = _parse_fields(description)
    kind = kind.lower()

    def take(name: str, default: str | None = None) -> str | None:
        return options.pop(name, default)

    backlog = _int(description, "backlog", take("backlog", "1024") or "1024")
    proxy_text = take("proxy", "0")
    if proxy_text not in ("0", "1"):
        raise EndpointError(f"endpoint {description!r}: proxy must be 0 or 1")
    proxy = proxy_text == "1"
    if kind in ("tcp", "ssl"):
        port_text = take("port")
        if port_text is None and positional:
            port_text = positional.pop(0)
        if port_text is None:
            raise EndpointError(f"endpoint {description!r}: no port")
        port = _int(description, "port", port_text)
        if port > 65535:
            raise EndpointError(f"endpoint {description!r}: port {port} is out of range")
        interface = take("interface", "") or ""
        if kind == "tcp":
            endpoint: Endpoint = TCPEndpoint(port, interface, backlog, proxy)
        else:
            key = take("privateKey")
            if not key:
                raise EndpointError(f"endpoint {description!r}: ssl needs privateKey=FILE")
            profile = take("tls", "intermediate") or "intermediate"
            if profile not in PROFILES:
                raise EndpointError(f"endpoint {description!r}: tls must be one of {', '.join(PROFILES)}")
            endpoint = SSLEndpoint(port, key, take("certKey", key) or key, interface, backlog, proxy,
                                   extra_cert_chain=take("extraCertChain"), dh_parameters=take("dhParameters"),
                                   sni=take("sni"), tls=profile, ca_certs=take("caCerts"))
    elif kind == "unix":
        path = take("address")
        if path is None and positional:
            path = positional.pop(0)
        if not path:
            raise EndpointError(f"endpoint {description!r}: no socket path")
        mode = _int(description, "mode", take("mode", "666") or "666", 8)
        lock_text = take("lockfile", take("wantPID", "1"))
        if lock_text not in ("0", "1"):
            raise EndpointError(f"endpoint {description!r}: lockfile must be 0 or 1")
        endpoint = UNIXEndpoint(os.path.expanduser(path), mode, lock_text == "1", backlog, proxy)
    elif kind == "systemd":
        name = take("name")
        index = _int(description, "index", take("index", "0") or "0")
        domain = take("domain")
        if domain is not None and domain.upper() not in _DOMAINS:
            raise EndpointError(f"endpoint {description!r}: domain must be INET, INET6 or UNIX")
        endpoint = SystemdEndpoint(index, domain and domain.upper(), name, proxy)
    else:
        raise EndpointError(f"endpoint {description!r}: unknown kind {kind!r} (tcp, unix, ssl or systemd)")
    if positional or options:
        extra = positional + [f"{k}={v}" for k, v in options.items()]
        raise EndpointError(f"endpoint {description!r}: unexpected {', '.join(extra)}")
    return endpoint


def parse_client_endpoint(description: str) -> ClientEndpoint:
    """Parse an endpoint string to connect to; ``EndpointError`` if it is malformed."""
    kind, positional, options = _parse_fields(description)
    kind = kind.lower()
    if kind == "unix":
        names = ["path"]
    elif kind in ("tcp", "ssl"):
        names = ["host", "port"]
    else:
        raise EndpointError(f"endpoint {description!r}: unknown kind {kind!r} (unix, tcp or ssl)")
    pin = options.pop("sha256", None) if kind == "ssl" else None
    values = {name: options.pop(name, None) for name in names}
    for name in names:
        if values[name] is None and positional:
            values[name] = positional.pop(0)
    if positional or options:
        extra = positional + [f"{k}={v}" for k, v in options.items()]
        raise EndpointError(f"endpoint {description!r}: unexpected {', '.join(extra)}")
    missing = [name for name in names if not values[name]]
    if missing:
        raise EndpointError(f"endpoint {description!r}: no {missing[0]}")
    if kind == "unix":
        return UNIXClientEndpoint(os.path.expanduser(values["path"] or ""))
    port = _int(description, "port", values["port"] or "")
    if port > 65535:
        raise EndpointError(f"endpoint {description!r}: port {port} is out of range")
    if kind == "ssl":
        return SSLClientEndpoint(values["host"] or "", port, None if pin is None else _digest(description, pin))
    return TCPClientEndpoint(values["host"] or "", port)


def _digest(description: str, text: str) -> bytes:
    """A SHA-256 digest written in hex (``openssl x509 -fingerprint -sha256``'s colons allowed)."""
    try:
        digest = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise EndpointError(f"endpoint {description!r}: sha256 must be 64 hex digits (a SHA-256 digest)")
    return digest


# -- opening ------------------------------------------------------------------------


async def _tcp_listeners(endpoint: TCPEndpoint | SSLEndpoint) -> list[trio.SocketListener]:
    host = endpoint.interface or None
    try:
        return await trio.open_tcp_listeners(endpoint.port, host=host, backlog=endpoint.backlog)
    except OSError as exc:
        where = f"{endpoint.interface or '*'}:{endpoint.port}"
        raise EndpointError(f"cannot listen on {where}: {exc.strerror or exc}") from exc


def _socket_answers(path: str) -> bool:
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _lock_owner(fd: int) -> str:
    """`` (pid N)`` from a lock file, for messages; empty if it names none."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _take_lock(path: str) -> int:
    """Hold an exclusive ``flock`` on ``path.lock``, which names our pid; its fd."""
    lock = path + ".lock"
    for _ in range(3):
        try:
            if stat.S_ISLNK(os.lstat(lock).st_mode):
                os.unlink(lock)  # an older version's lock: a live owner still answers on the socket
        except FileNotFoundError:
            pass
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise EndpointError(f"cannot open the lock {lock}: {exc.strerror or exc}") from None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise EndpointError(f"{lock} exists and is not a lock file; remove it by hand")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EndpointError(
                    f"another server{_lock_owner(fd)} is already listening on {path} (it holds {lock})") from None
            # Its last owner may have removed the file between our open and flock:
            # then the lock we hold is on a file no one else will look at. Again.
            try:
                current = os.lstat(lock)
            except FileNotFoundError:
                current = None
            if current is None or (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise
    raise EndpointError(f"cannot take the lock {lock}")


def _release_lock(path: str, fd: int) -> None:
    """Remove ``path.lock`` while still holding it, then let go."""
    try:
        _remove(path + ".lock")
    finally:
        os.close(fd)


def _clear_stale_socket(path: str, locked: bool) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise EndpointError(f"{path} exists and is not a socket; not removing it")
    if _socket_answers(path):
        if locked:
            raise EndpointError(f"a server is already listening on {path} without holding {path}.lock "
                                f"(another program?); stop it, or listen elsewhere")
        raise EndpointError(f"a server is already listening on {path}")
    os.unlink(path)


async def _unix_listener(endpoint: UNIXEndpoint) -> tuple[trio.SocketListener, int | None]:
    """The listener, and the fd of its lock (held until closed), if it has one."""
    path = endpoint.path
    lock = _take_lock(path) if endpoint.lockfile else None
    try:
        _clear_stale_socket(path, endpoint.lockfile)
        sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            # bind, chmod, then listen: no connection is accepted before the mode is right
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
            await sock.bind(path)
            os.chmod(path, endpoint.mode)
            sock.listen(endpoint.backlog)
        except OSError as exc:
            sock.close()
            raise EndpointError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    except BaseException:
        if lock is not None:
            _release_lock(path, lock)
        raise
    return trio.SocketListener(sock), lock


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def certificate_store(endpoint: SSLEndpoint) -> CertificateStore:
    """The certificates of an ``ssl:`` endpoint (``EndpointError`` if a file is bad)."""
    try:
        return CertificateStore(endpoint.cert_key, endpoint.private_key, chain=endpoint.extra_cert_chain,
                                dh_params=endpoint.dh_parameters, sni_dir=endpoint.sni, profile=endpoint.tls,
                                client_ca=endpoint.ca_certs)
    except TLSError as exc:
        raise EndpointError(f"cannot load the TLS key or certificate: {exc}") from None


_DOMAINS = {"INET": stdlib_socket.AF_INET, "INET6": stdlib_socket.AF_INET6, "UNIX": stdlib_socket.AF_UNIX}
SD_LISTEN_FDS_START = 3


@functools.cache
def _listen_fds() -> list[str]:
    """The names of the sockets systemd passed to this process (empty if none),
    read once (see ``inherited_endpoints``)."""
    count = os.environ.get("LISTEN_FDS", "")
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not count.isdigit():
        return []
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    return [names[i] if i < len(names) else "unknown" for i in range(int(count))]


def inherited_endpoints(*, unset_environment: bool = False) -> list[Endpoint]:
    """One ``systemd:`` endpoint per socket systemd passed us (socket activation).

    With ``unset_environment`` (``sd_listen_fds``'s flag) the variables are
    removed, so that the programs we start (CGI scripts) do not take the
    sockets for theirs; ``systemd:`` endpoints still open, from what was read.
    """
    endpoints: list[Endpoint] = [SystemdEndpoint(index) for index in range(len(_listen_fds()))]
    if unset_environment:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    return endpoints


def systemd_family(endpoint: SystemdEndpoint) -> int | None:
    """The address family (``socket.AF_INET``...) of the socket systemd passed
    for ``endpoint``; None if it passed none such (opening it will say why)."""
    names = _listen_fds()
    if endpoint.name is not None:
        if endpoint.name not in names:
            return None
        index = names.index(endpoint.name)
    elif endpoint.index < len(names):
        index = endpoint.index
    else:
        return None
    sock = stdlib_socket.socket(fileno=SD_LISTEN_FDS_START + index)
    try:
        return int(sock.family)
    finally:
        sock.detach()


def _systemd_listener(endpoint: SystemdEndpoint, taken: set[int]) -> trio.SocketListener:
    names = _listen_fds()
    if not names:
        raise EndpointError("systemd: endpoint, but systemd passed no sockets (LISTEN_FDS/LISTEN_PID)")
    index = endpoint.index
    if endpoint.name is not None:
        if endpoint.name not in names:
            raise EndpointError(f"systemd passed no socket named {endpoint.name!r} (it named {', '.join(names)})")
        index = names.index(endpoint.name)
    if index >= len(names):
        raise EndpointError(f"systemd: index {index} is out of range: systemd passed {len(names)} socket(s)")
    if index in taken:
        raise EndpointError(f"systemd socket {index} is named twice in the listeners")
    taken.add(index)
    sock = stdlib_socket.socket(fileno=SD_LISTEN_FDS_START + index)
    wanted = _DOMAINS.get(endpoint.domain or "")
    if wanted is not None and sock.family != wanted:
        sock.detach()
        raise EndpointError(f"systemd socket {index} is {sock.family.name}, not AF_{endpoint.domain}")
    if sock.type != stdlib_socket.SOCK_STREAM:
        sock.detach()
        raise EndpointError(f"systemd socket {index} is not a stream socket")
    os.set_inheritable(sock.fileno(), False)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def _serving(endpoint: Endpoint, plain: trio.SocketListener,
             certificates: dict[SSLEndpoint, CertificateStore] | None) -> trio.abc.Listener[Any]:
    """``plain`` as ``endpoint`` serves it: behind a PROXY header, under TLS."""
    wrapped: trio.abc.Listener[Any] = ProxyProtocolListener(plain) if endpoint.proxy else plain
    if isinstance(endpoint, SSLEndpoint):
        store = (certificates or {}).get(endpoint) or certificate_store(endpoint)
        return trio.SSLListener(wrapped, store.listener_context, https_compatible=True)
    return wrapped


def adopt_listeners(endpoints: list[Endpoint], fds: list[list[int]], *,
                    certificates: dict[SSLEndpoint, CertificateStore] | None = None) -> list[trio.abc.Listener[Any]]:
    """Listeners on sockets another process opened for ``endpoints`` and passed
    us (``fds[i]`` are endpoint ``i``'s, a ``--workers`` supervisor's): wrapped
    as ``open_listeners`` wraps them, but closing them neither removes a UNIX
    socket nor releases its lock, which stay the opener's."""
    if len(fds) != len(endpoints):
        raise EndpointError(f"{len(fds)} groups of sockets were passed for {len(endpoints)} endpoints")
    listeners: list[trio.abc.Listener[Any]] = []
    for endpoint, group in zip(endpoints, fds, strict=True):
        for fd in group:
            sock = stdlib_socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
            listeners.append(_serving(endpoint, trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                                      certificates))
    return listeners


@asynccontextmanager
async def open_listeners(
    endpoints: list[Endpoint], *, certificates: dict[SSLEndpoint, CertificateStore] | None = None
) -> AsyncIterator[list[trio.abc.Listener[Any]]]:
    """Open every endpoint (all or none); on exit close them and remove UNIX sockets and locks.

    ``ssl:`` listeners serve the stores of ``certificates`` (made here for an
    endpoint it lacks): reloading a store changes what they serve. A
    listener of a ``proxy=1`` endpoint is wrapped in ``ProxyProtocolListener``.
    """
    listeners: list[trio.abc.Listener[Any]] = []
    unix_paths: list[tuple[str, int | None]] = []  # each socket, and its lock's fd
    systemd_taken: set[int] = set()
    try:
        for endpoint in endpoints:
            opened: list[trio.SocketListener] = []
            if isinstance(endpoint, UNIXEndpoint):
                unix_listener, lock = await _unix_listener(endpoint)
                opened.append(unix_listener)
                unix_paths.append((endpoint.path, lock))
            elif isinstance(endpoint, SystemdEndpoint):
                opened.append(_systemd_listener(endpoint, systemd_taken))
            else:
                opened.extend(await _tcp_listeners(endpoint))
            for plain in opened:
                try:
                    listeners.append(_serving(endpoint, plain, certificates))
                except BaseException:
                    await plain.aclose()
                    raise
        yield listeners
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()
        for path, lock in unix_paths:
            _remove(path)
            if lock is not None:
                _release_lock(path, lock)
