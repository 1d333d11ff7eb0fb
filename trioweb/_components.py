"""``Componentized``: one object kept per key, as Twisted's ``Componentized`` keeps
components (without zope's interfaces and adapters: the key is any object,
usually a class). A session and a resource tree's registry are such objects."""

from __future__ import annotations

from typing import Any

__all__ = ["Componentized"]


class Componentized:
    def __init__(self) -> None:
        self._components: dict[Any, Any] = {}

    def getComponent(self, interface: Any, default: Any = None) -> Any:
        """The component kept for ``interface``, or ``default``."""
        return self._components.get(interface, default)

    def setComponent(self, interfaceClass: Any, component: Any) -> None:
        self._components[interfaceClass] = component

    def removeComponent(self, component: Any) -> None:
        """Forget ``component`` under every key it is kept for."""
        for key in [k for k, v in self._components.items() if v is component]:
            del self._components[key]
