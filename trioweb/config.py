"""Python configuration files: ``trioweb --config FILE.py`` (or ``-y``), and ``load``.

A configuration file is ordinary Python that uses trioweb's public API, the
way a Twisted ``.tac`` file used Twisted's. It runs with ``__file__`` set
(its absolute path) and ``__name__`` set to ``"__trioweb_config__"`` (so an
``if __name__ == "__main__":`` block does not run), and nothing else
predefined. What it leaves behind defines the site:

- ``resource``: a ``Resource``, the root (as in an ``.rpy`` file); the
  ``trioweb`` command wraps it in a ``Site`` built from its options; or
- ``site``: a ``Site``, when the file sets the site's own settings (limits,
  access log, tracebacks, headers); it may define both when ``site`` serves
  ``resource``;
- ``listen`` (optional): a list of endpoint strings (``"tcp:80"``,
  ``"unix:/run/web.sock:mode=660"``); ``--listen`` adds to them;
- ``uid``, ``gid`` (optional): a user and group, by name or number, to run as
  once the listeners are open.

``load(path)`` runs the file and checks what it defined. Every problem (the
file cannot be read, a syntax error, an exception while it runs, nothing or
the wrong kind of thing defined, a malformed endpoint, an unknown user) is a
``ConfigError`` whose one-line message starts with the file's name, and the
line when the fault is on one: ``site.py:12: NameError: name 'roo' is not
defined``. The command prints it and exits with status 2.

Reloading (the contract for a server that re-reads its file, on SIGHUP)
----------------------------------------------------------------------
``load`` has no effect on the running process beyond running the file (and
what the file itself does, such as importing modules, which Python imports
once per process): it opens no socket and changes no privilege. Each call
runs the file afresh and returns a new ``Config`` holding a new tree, so a
server can load the file again, switch new requests to the new
``Config.resource`` (or ``Config.site``) and let requests in flight finish on
the old one. If the new load raises ``ConfigError``, the old tree stays in
service. ``listen``, ``uid`` and ``gid`` take effect at start only: a reload
that changes them needs a restart, which a reloader should say.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trioweb.endpoints import EndpointError, parse_endpoint
from trioweb.resource import Resource
from trioweb.server import Site

__all__ = ["Config", "ConfigError", "load"]

# What the file runs as: not "__main__", so that a file that is also a script
# does not start its own server when loaded.
CONFIG_MODULE_NAME = "__trioweb_config__"


class ConfigError(Exception):
    """A configuration file cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Config:
    """What a configuration file defined (see the module docstring)."""

    path: str
    resource: Resource
    site: Site | None
    listen: tuple[str, ...]
    uid: int | None
    gid: int | None


def load(path: str | os.PathLike[str]) -> Config:
    """Run the configuration file at ``path`` and return what it defines.

    Raises ``ConfigError`` (a one-line message naming the file, and the line
    when there is one) if the file cannot be read, does not compile, raises,
    or defines neither ``resource`` nor ``site``. Safe to call again on the
    same file: each call builds a new tree (see "Reloading" above).
    """
    path = os.path.abspath(path)
    namespace = _run(path)
    root, site = _root_and_site(path, namespace)
    return Config(
        path=path,
        resource=root,
        site=site,
        listen=_listen(path, namespace.get("listen", ())),
        uid=_account(path, "uid", namespace.get("uid"), lambda name: pwd.getpwnam(name).pw_uid),
        gid=_account(path, "gid", namespace.get("gid"), lambda name: grp.getgrnam(name).gr_gid),
    )


def _run(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except ValueError as exc:  # a NUL byte, for instance
        raise ConfigError(f"{path}: cannot compile the configuration file: {exc}") from None
    namespace: dict[str, Any] = {"__file__": path, "__name__": CONFIG_MODULE_NAME}
    directory = os.path.dirname(path)
    if directory not in sys.path:  # modules next to the file import, as next to a script
        sys.path.insert(0, directory)
    try:
        exec(code, namespace)
    except (Exception, SystemExit) as exc:
        raise ConfigError(f"{_where(path, exc)}: {type(exc).__name__}: {_one_line(exc)}") from exc
    return namespace


def _where(path: str, exc: BaseException) -> str:
    """``path:line`` of the innermost frame of the file in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.filename == path:  # a syntax error in exec'd code of its own
        line = exc.lineno
    return f"{path}:{line}" if line else path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or "(no message)"


def _root_and_site(path: str, namespace: dict[str, Any]) -> tuple[Resource, Site | None]:
    root = namespace.get("resource")
    site = namespace.get("site")
    if site is not None and not isinstance(site, Site):
        raise ConfigError(f"{path}: 'site' must be a trioweb.server.Site, not {type(site).__name__}")
    if root is not None and not _is_resource(root):
        raise ConfigError(f"{path}: 'resource' must be a trioweb Resource, not {type(root).__name__}")
    if site is not None:
        if root is not None and root is not site.resource:
            raise ConfigError(f"{path}: defines both 'resource' and 'site', and the site serves another "
                              "resource: define one of them")
        return site.resource, site
    if root is not None:
        return root, None
    hint = ""
    if "application" in namespace:
        hint = " ('application' is twistd's: see docs/porting.md, '.tac files')"
    raise ConfigError(f"{path}: defines neither 'resource' (the root Resource) nor 'site' (a Site); "
                      f"it must define one of them{hint}")


def _is_resource(value: Any) -> bool:
    """A Resource, or anything that can stand for one (``render`` and ``getChildWithDefault``)."""
    return isinstance(value, Resource) or (
        callable(getattr(value, "render", None)) and callable(getattr(value, "getChildWithDefault", None)))


def _listen(path: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: 'listen' must be a list of endpoint strings such as ['tcp:8080'], "
                          f"not {value!r}")
    for description in value:
        try:
            parse_endpoint(description)
        except EndpointError as exc:
            raise ConfigError(f"{path}: 'listen': {exc}") from None
    return tuple(value)


def _account(path: str, name: str, value: Any, lookup: Callable[[str], int]) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str) and value:
        try:
            return lookup(value)
        except KeyError:
            kind = "user" if name == "uid" else "group"
            raise ConfigError(f"{path}: '{name}': no such {kind} {value!r}") from None
    raise ConfigError(f"{path}: '{name}' must be a name or a number, not {value!r}")
