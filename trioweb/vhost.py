"""``NameVirtualHost``: one Site, several sites chosen by the Host header;
``VHostMonsterResource``: a site behind a reverse proxy that knows its public name.

``addHost(name, resource)`` maps a host name (case-insensitive, without a
port) to a resource; ``default`` answers hosts not in the map (otherwise a
404 that names the host, escaped: CVE-2022-39348 came from echoing it raw).

``VHostMonsterResource``, mounted at ``/vhost.rpy`` say, takes requests for
``/vhost.rpy/<http|https>/<host[:port]>/<rest>`` (a reverse proxy in front
forwards to such paths) and serves ``/<rest>`` from the Site's root as if
the client had asked ``<scheme>://<host[:port]>/<rest>`` directly:
``isSecure()``, ``getHost()``, ``getRequestHostname()``, ``prePathURL()``
and so every redirect show the public address (``Request.setHost``). The
port defaults to the scheme's: 443 for https, 80 for http (Twisted uses 80
for both). A scheme other than these two is 404, a malformed host 400.

``UserNameVirtualHost(default, tail)`` serves ``<user>.<tail>`` (say
``alice.example.com``) from the resource the user directory gives for that
name, as if it were mounted at that host's root; every other host goes to
``default``. The users come from ``users`` (by default ``default`` itself):
anything with ``user_resource(name: bytes) -> Resource``, which
``distrib.UserDirectory`` has (this module does not import it: a kind knows no
other kind). The host is checked strictly before any account is looked up:
exactly one label in front of the tail, a possible user name (``[a-z_][a-z0-9_-]*``:
no dot, no ``%``, no capital letter; a browser always sends host names in
lower case), no trailing dot; the port is ignored. Anything else under the
tail is the same 404 as an unknown user's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from trioweb.resource import ErrorPage, NoResource, Resource

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["NameVirtualHost", "UserNameVirtualHost", "VHostMonsterResource"]


class NameVirtualHost(Resource):
    """Chooses the resource tree by the request's host name."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: dict[bytes, Resource] = {}
        self.default: Resource | None = None

    def addHost(self, name: bytes | str, resrc: Resource) -> None:
        self.hosts[_host_key(name)] = resrc

    def removeHost(self, name: bytes | str) -> None:
        del self.hosts[_host_key(name)]

    def _resource_for(self, request: Request) -> Resource:
        host = request.getRequestHostname().lower()
        found = self.hosts.get(host, self.default)
        if found is None:
            return NoResource(f"host {host.decode('latin-1')!r} not in vhost map")
        return found

    def render(self, request: Request) -> Any:
        return self._resource_for(request).render(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _child_of(self._resource_for(request), path, request)


def _child_of(resource: Resource, path: bytes, request: Request) -> Resource:
    """What ``resource`` serves for ``path``, as if it were the root."""
    if resource.isLeaf:
        # A leaf gets the whole path, this segment included.
        request.postpath.insert(0, request.prepath.pop())
        return resource
    return resource.getChildWithDefault(path, request)


def _host_key(name: bytes | str) -> bytes:
    raw = name.encode("idna") if isinstance(name, str) else name
    return raw.lower()


# A label that can name an account (the user directory applies the same rule, and more).
_USER_LABEL = re.compile(rb"[a-z_][a-z0-9_-]{0,31}\Z")


class UserNameVirtualHost(Resource):
    """``<user>.<tail>`` served by that user's site, other hosts by ``default``;
    see the module docstring."""

    def __init__(self, default: Resource, tail: bytes | str, users: Any = None) -> None:
        super().__init__()
        self.default = default
        self.tail = _host_key(tail).strip(b".")
        if not self.tail:
            raise ValueError("the tail of the users' host names is empty")
        self.users: Any = users if users is not None else default

    def _resource_for(self, request: Request) -> Resource:
        host = request.getRequestHostname()
        folded = host.lower()
        dotted = b"." + self.tail
        if folded.endswith(b"."):  # a trailing dot: another origin to browsers; no user's under the tail
            if folded[:-1] == self.tail or folded[:-1].endswith(dotted):
                return NoResource()
            return self.default
        if not folded.endswith(dotted):
            return self.default
        label = host[: -len(dotted)]
        if not _USER_LABEL.match(label):
            return NoResource()  # two labels, "..", "%", capitals, an empty label
        resource: Resource = self.users.user_resource(label)
        return resource

    def render(self, request: Request) -> Any:
        return self._resource_for(request).render(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _child_of(self._resource_for(request), path, request)


# A host name or an IPv4 address, or a bracketed IPv6 address; an optional port.
_PUBLIC_HOST = re.compile(rb"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                          rb"(?::(?P<port>[0-9]{1,5}))?\Z")


class VHostMonsterResource(Resource):
    """Serves ``<scheme>/<host[:port]>/<rest>`` as ``<rest>`` on that public address; see the module docstring."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path not in (b"http", b"https"):
            return NoResource("The first segment after the VHostMonster is the scheme: http or https.")
        return _PublicHost(secure=path == b"https")

    def render(self, request: Request) -> bytes:
        return NoResource("Add the scheme and the public host: .../http/www.example.com/").render(request)


class _PublicHost(Resource):
    def __init__(self, secure: bool) -> None:
        super().__init__()
        self.secure = secure

    def getChild(self, path: bytes, request: Request) -> Resource:
        found = _PUBLIC_HOST.match(path)
        port = int(found["port"]) if found and found["port"] else (443 if self.secure else 80)
        if found is None or not 0 < port < 65536:
            return ErrorPage(400, "Bad Request", "The public host after the VHostMonster's scheme is malformed.")
        request.setHost(found["host"].lower(), port, self.secure)
        # The rest of the path, as the client sent it (still quoted), becomes the whole path.
        raw = request.path[1:].split(b"/")
        rest = b"/" + b"/".join(raw[len(raw) - len(request.postpath):])
        query = request.uri.partition(b"?")[2]
        request.path = rest
        request.uri = rest + b"?" + query if query else rest
        request.prepath = []
        return request.site.getResourceFor(request)

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)
