"""``NameVirtualHost``: one Site, several sites chosen by the Host header.

``addHost(name, resource)`` maps a host name (case-insensitive, without a
port) to a resource; ``default`` answers hosts not in the map (otherwise a
404 that names the host, escaped: CVE-2022-39348 came from echoing it raw).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trioweb.resource import NoResource, Resource

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["NameVirtualHost"]


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
        resource = self._resource_for(request)
        if resource.isLeaf:
            # A leaf gets the whole path, this segment included.
            request.postpath.insert(0, request.prepath.pop())
            return resource
        return resource.getChildWithDefault(path, request)


def _host_key(name: bytes | str) -> bytes:
    raw = name.encode("idna") if isinstance(name, str) else name
    return raw.lower()
