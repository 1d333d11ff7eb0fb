"""Objects passed by value: `Copyable`, `RemoteCopy` and their registry.

A copy travels as a registered name and a state. The sender asks the object
for its state (`Copyable.getStateToCopy`); the receiver looks the name up in
its registry, makes an instance of the class registered there without calling
``__init__``, and hands it the state (`RemoteCopy.setCopyableState`). Only
names registered on the receiving side can be instantiated: an unknown name
is a protocol error, never a class looked up by the peer's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

# name -> class made on receipt; class -> name used when sending.
_classes_by_name: dict[str, type[RemoteCopy]] = {}
_names_by_class: dict[type, str] = {}


class Copyable:
    """Base class of objects that are sent by value, under a registered name.

    The state is what `getStateToCopy` returns: by default a copy of the
    instance ``__dict__`` (plus ``args`` for exceptions), which must itself be
    sendable (plain data, references, other copies). Only the exact class
    registered with `register_copyable` is sent: a subclass needs its own
    registration.
    """

    def getStateToCopy(self) -> Any:
        """The state sent to the peer; override to choose what crosses."""
        state = dict(vars(self))
        if isinstance(self, BaseException):
            state["args"] = list(self.args)
        return state


class RemoteCopy:
    """Base class of the objects a received copy becomes.

    Instances are created without calling ``__init__``; `setCopyableState`
    then receives the sender's state. An exception it raises is a protocol
    error: the connection closes with the reason logged.
    """

    def setCopyableState(self, state: Any) -> None:
        """Take the state sent by the peer; by default update ``__dict__``."""
        if not isinstance(state, dict):
            raise TypeError(f"expected a map as the state, got {type(state).__name__}")
        state = dict(state)
        if isinstance(self, BaseException) and "args" in state:
            self.args = tuple(state.pop("args"))
        self.__dict__.update(state)


def register_copyable(name: str, cls: T) -> T:
    """Register ``cls`` under ``name`` for sending, receiving or both; return ``cls``.

    If ``cls`` is a `Copyable`, its instances are sent as copies named
    ``name``. If it is a `RemoteCopy`, a copy named ``name`` arriving from a
    peer becomes an instance of ``cls``. A class is usually both; the two
    sides may register different classes under one name. Registering a name
    or a class twice with different partners is an error.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a copyable name must be a non-empty str")
    if not (issubclass(cls, Copyable) or issubclass(cls, RemoteCopy)):
        raise TypeError(f"{cls.__qualname__} is neither Copyable nor RemoteCopy")
    if issubclass(cls, RemoteCopy):
        known = _classes_by_name.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"copyable name {name!r} is already registered to {known.__qualname__}")
        _classes_by_name[name] = cls
    if issubclass(cls, Copyable):
        known_name = _names_by_class.get(cls)
        if known_name is not None and known_name != name:
            raise ValueError(f"{cls.__qualname__} is already registered as {known_name!r}")
        _names_by_class[cls] = name
    return cls


def copyable(name: str) -> Callable[[T], T]:
    """Class decorator form of `register_copyable`."""

    def decorate(cls: T) -> T:
        return register_copyable(name, cls)

    return decorate


def copy_name(cls: type) -> str | None:
    """The name instances of exactly ``cls`` are sent under, or None."""
    return _names_by_class.get(cls)


def make_copy(name: str, state: Any) -> RemoteCopy:
    """Build the local object for a received copy; KeyError if the name is unknown."""
    cls = _classes_by_name[name]
    instance = cls.__new__(cls)
    instance.setCopyableState(state)
    return instance
