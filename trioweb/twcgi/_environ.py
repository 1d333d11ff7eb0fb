"""The environment a CGI script runs with (RFC 3875 §4.1), built from a request.

What the script gets, and why:

- the meta-variables of RFC 3875: ``GATEWAY_INTERFACE``, ``SERVER_SOFTWARE``,
  ``SERVER_NAME`` and ``SERVER_PORT`` (from the Host the client asked for, as
  Twisted does; our own address without one), ``SERVER_PROTOCOL``,
  ``REQUEST_METHOD``, ``SCRIPT_NAME`` (the public URL path of the script:
  ``/~alice/cgi-bin/x.cgi`` behind a front), ``SCRIPT_FILENAME``,
  ``PATH_INFO`` and ``PATH_TRANSLATED`` for a path below the script,
  ``QUERY_STRING`` (always, maybe empty), ``REMOTE_ADDR``/``REMOTE_PORT``,
  ``CONTENT_TYPE``/``CONTENT_LENGTH`` for a body, ``HTTPS=on`` over TLS,
  ``REQUEST_URI``;
- ``HTTP_<NAME>`` for each request header (values of a repeated header
  joined with ``, ``), except: ``Proxy`` (httpoxy: a client must not be able
  to set ``HTTP_PROXY``, nor ``PROXY`` as Twisted does), names holding an
  underscore (``X_Forwarded`` would pose as ``X-Forwarded``: nginx and
  gunicorn drop them too), and the body's Content-Type/Content-Length
  (passed as their own variables);
- from the server's own environment only the names in the allowlist
  (``PATH``, ``LANG``... see ``DEFAULT_PASS_ENV``), never all of it:
  secrets in the server's environment stay there. ``PATH`` is set to a safe
  default when the server has none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from trioweb._version import __version__
from trioweb.address import UNIXAddress

if TYPE_CHECKING:
    from trioweb._request import Request

DEFAULT_PASS_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
SAFE_PATH = b"/usr/local/bin:/usr/bin:/bin"
SERVER_SOFTWARE = b"trioweb/" + __version__.encode("ascii")

# Request headers that never become HTTP_* variables (see the module docstring).
_NOT_PASSED = frozenset({b"proxy", b"content-type", b"content-length"})

Environment = dict[bytes, bytes]


def cgi_environment(request: Request, filename: str, content_length: int | None,
                    pass_env: Iterable[str] = DEFAULT_PASS_ENV) -> Environment:
    """The environment for running ``filename`` to answer ``request``.

    ``content_length`` is the body's size (None without a body).
    """
    env: Environment = {}
    for name in pass_env:
        value = os.environb.get(os.fsencode(name))
        if value is not None:
            env[os.fsencode(name)] = value
    env.setdefault(b"PATH", SAFE_PATH)
    for field, values in request.requestHeaders.getAllRawHeaders():
        if field in _NOT_PASSED or b"_" in field:
            continue
        env[b"HTTP_" + field.upper().replace(b"-", b"_")] = b", ".join(values)
    script_name = b"/" + b"/".join(request.prepath)
    path_info = b"/" + b"/".join(request.postpath) if request.postpath else b""
    server_name, server_port = _server_name_and_port(request)
    env.update({
        b"GATEWAY_INTERFACE": b"CGI/1.1",
        b"SERVER_SOFTWARE": SERVER_SOFTWARE,
        b"SERVER_NAME": server_name,
        b"SERVER_PORT": server_port,
        b"SERVER_PROTOCOL": request.clientproto,
        b"REQUEST_METHOD": request.method,
        b"REQUEST_URI": request.uri,
        b"SCRIPT_NAME": script_name,
        b"SCRIPT_FILENAME": os.fsencode(filename),
        b"QUERY_STRING": request.uri.partition(b"?")[2],
    })
    if path_info:
        env[b"PATH_INFO"] = path_info
        env[b"PATH_TRANSLATED"] = os.fsencode(document_root(filename, request.prepath)) + path_info
    client = request.getClientAddress()
    if not isinstance(client, UNIXAddress):
        env[b"REMOTE_ADDR"] = client.host.encode("ascii")
        env[b"REMOTE_PORT"] = str(client.port).encode("ascii")
    if request.isSecure():
        env[b"HTTPS"] = b"on"
    if content_length is not None:
        env[b"CONTENT_LENGTH"] = str(content_length).encode("ascii")
        content_type = request.requestHeaders.last_value(b"content-type")
        if content_type is not None:
            env[b"CONTENT_TYPE"] = content_type
    return env


def _server_name_and_port(request: Request) -> tuple[bytes, bytes]:
    host = request.getHost()
    own_port = b"" if isinstance(host, UNIXAddress) else str(host.port).encode("ascii")
    header = request.host_header
    if not header:
        return request.getRequestHostname(), own_port
    name, port = header, b""
    if header.startswith(b"["):  # an IPv6 literal
        close = header.find(b"]")
        name, port = header[: close + 1], header[close + 2:] if header[close + 1: close + 2] == b":" else b""
    elif b":" in header:
        name, _, port = header.rpartition(b":")
    if not port.isdigit():
        port = b"443" if request.isSecure() else b"80"
    return name.lower(), port


def document_root(filename: str, prepath: list[bytes]) -> str:
    """The directory the script's URL path is mapped onto: ``filename`` less
    the trailing segments it shares with the URL path (``/srv/site`` for
    ``/srv/site/cgi-bin/x.cgi`` served as ``/~alice/cgi-bin/x.cgi``). At
    least the script's own directory."""
    parts = filename.split("/")
    shared = 0
    segments = [os.fsdecode(s) for s in prepath]
    while shared < min(len(parts) - 1, len(segments)) and parts[-1 - shared] == segments[-1 - shared]:
        shared += 1
    return "/".join(parts[: len(parts) - max(shared, 1)]) or "/"
