"""``Registry``: state shared by the resources of one ``File`` tree.

It lives apart from ``static`` and ``script`` so that neither resource kind
imports the other; ``static.Registry`` is the name Twisted code uses.
"""

from __future__ import annotations

from typing import Any

from trioweb.resource import Resource


class Registry:
    """State shared by the resources of one ``File`` tree (resource scripts use it).

    ``getComponent(key)``/``setComponent(key, value)`` keep one object per
    key (usually a class, as in ``registry.getComponent(Counter)``);
    ``cachePath``/``getCachedPath`` remember the resource a script built.
    """

    def __init__(self) -> None:
        self._components: dict[Any, Any] = {}
        self._path_cache: dict[str, Resource] = {}

    def getComponent(self, interface: Any, default: Any = None) -> Any:
        return self._components.get(interface, default)

    def setComponent(self, interfaceClass: Any, component: Any) -> None:
        self._components[interfaceClass] = component

    def removeComponent(self, component: Any) -> None:
        for key in [k for k, v in self._components.items() if v is component]:
            del self._components[key]

    def cachePath(self, path: str, rsrc: Resource) -> None:
        self._path_cache[path] = rsrc

    def getCachedPath(self, path: str) -> Resource | None:
        return self._path_cache.get(path)
