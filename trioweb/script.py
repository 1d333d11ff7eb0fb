"""Resource scripts: ``.rpy`` files that build the resource answering a request.

A resource script is Python source executed with these globals:

- ``__file__``: the script's path;
- ``registry``: the ``static.Registry`` shared by the ``File`` tree the
  script was found in (one object per key across requests, as in the guide's
  Counter example);
- ``cache()``: keep the resource this run builds and skip later runs
  (``recache()`` makes this run's resource the kept one even if one was kept);
- ``resource``: what the script must set. A script that does not set it is
  answered with a 500 page saying so.

The script runs again for every request unless it calls ``cache()``, so edits
show on reload. It runs while the request is being routed; an exception it
raises (or its resource raises) is answered like any other with the Site's
500 page (details only with ``displayTracebacks``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from trioweb._fs import Registry, segment_name
from trioweb.resource import ErrorPage, NoResource, Resource

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = [
    "AlreadyCached",
    "ResourceScript",
    "ResourceScriptDirectory",
    "ResourceScriptWrapper",
    "noRsrc",
    "rpyNoResource",
]

rpyNoResource = (
    'You forgot to assign to the variable "resource" in your script. '
    "For more information, read the documentation."
)
noRsrc = ErrorPage(500, "Whoops! Internal Error", rpyNoResource)


class AlreadyCached(Exception):
    """Raised by ``cache()`` to stop a script whose resource is already kept."""


class CacheScanner:
    """The ``cache``/``recache`` functions a script gets, bound to its path."""

    def __init__(self, path: str, registry: Registry) -> None:
        self.path = path
        self.registry = registry
        self.doCache = False

    def cache(self) -> None:
        cached = self.registry.getCachedPath(self.path)
        if cached is not None:
            raise AlreadyCached(cached)
        self.recache()

    def recache(self) -> None:
        self.doCache = True


def ResourceScript(path: str, registry: Registry) -> Resource:
    """Run the script at ``path`` and return the resource it sets (a ``processors`` entry)."""
    scanner = CacheScanner(path, registry)
    namespace: dict[str, Any] = {
        "__file__": path,
        "resource": noRsrc,
        "registry": registry,
        "cache": scanner.cache,
        "recache": scanner.recache,
    }
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    try:
        exec(code, namespace)
    except AlreadyCached as cached:
        return cached.args[0]
    resource = namespace["resource"]
    if not (hasattr(resource, "render") and hasattr(resource, "getChildWithDefault")):
        raise TypeError(f"{path}: 'resource' is a {type(resource).__name__}, not a Resource")
    if scanner.doCache and resource is not noRsrc:
        registry.cachePath(path, resource)
    return resource


class ResourceScriptWrapper(Resource):
    """Runs the script at ``path`` for every request that reaches it (``--resource-script``).

    A leaf resource from the script answers every path below this one; a
    non-leaf one is traversed as usual.
    """

    def __init__(self, path: str, registry: Registry | None = None) -> None:
        super().__init__()
        self.path = path
        self.registry = registry if registry is not None else Registry()

    def render(self, request: Request) -> Any:
        return ResourceScript(self.path, self.registry).render(request)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        resource = ResourceScript(self.path, self.registry)
        if resource.isLeaf:
            request.postpath.insert(0, request.prepath.pop())
            return resource
        return resource.getChildWithDefault(path, request)


class ResourceScriptDirectory(Resource):
    """A directory of resource scripts: ``/x`` runs ``x``, subdirectories nest; itself 404."""

    def __init__(self, pathname: str, registry: Registry | None = None) -> None:
        super().__init__()
        self.path = pathname
        self.registry = registry if registry is not None else Registry()

    def getChild(self, path: bytes, request: Request) -> Resource:
        name = segment_name(path)
        if not name:
            return NoResource()
        child = os.path.join(self.path, name)
        if os.path.isdir(child):
            return ResourceScriptDirectory(child, self.registry)
        if os.path.isfile(child):
            return ResourceScript(child, self.registry)
        return NoResource()

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)
