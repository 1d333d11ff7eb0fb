"""The ``trioweb`` options that serve a Python application: ``--wsgi`` and ``--asgi``.

``--wsgi MODULE.NAME`` (Twisted's spelling) or ``--wsgi MODULE:NAME``
(gunicorn's) serves a WSGI application with ``trioweb.wsgi.WSGIResource``,
in at most ``--wsgi-threads`` worker threads; ``--asgi MODULE:NAME`` serves
an ASGI application with ``trioweb.asgi.ASGIResource``, whose lifespan
startup runs before serving and shutdown after (a failed startup ends the
command with status 1). A name that cannot be loaded is a usage error
(status 2): "No such WSGI application: ...".

The current directory is put first on ``sys.path`` (``put_cwd_on_path``), as
``python -m`` does, so that ``trioweb --wsgi app:app`` and ``--class`` find a
module next to where the command is run.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import trio

from trioweb.asgi import ASGIResource, LifespanError
from trioweb.resource import Resource
from trioweb.wsgi import DEFAULT_THREADS, WSGIResource


def app_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--wsgi", metavar="MODULE.NAME", help="Serve this WSGI application (MODULE:NAME also works)."),
        click.option("--wsgi-threads", type=click.IntRange(min=1), metavar="N",
                     help=f"Worker threads the WSGI application runs in at most [default: {DEFAULT_THREADS}]."),
        click.option("--asgi", metavar="MODULE:NAME", help="Serve this ASGI application (MODULE.NAME also works)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def put_cwd_on_path() -> None:
    """Let ``--class``, ``--wsgi`` and ``--asgi`` import modules of the current directory."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def app_root(options: dict[str, Any]) -> Resource | None:
    """The root chosen by these options (None if neither --wsgi nor --asgi).

    Removes this module's options from ``options``.
    """
    wsgi = options.pop("wsgi")
    threads = options.pop("wsgi_threads")
    asgi = options.pop("asgi")
    if threads is not None and wsgi is None:
        raise click.UsageError("--wsgi-threads can only be used with --wsgi.")
    if wsgi is not None and asgi is not None:
        raise click.UsageError("--wsgi and --asgi choose the root: give one of them.")
    if wsgi is not None:
        limiter = trio.CapacityLimiter(threads or DEFAULT_THREADS)
        return WSGIResource(_application(wsgi, "WSGI"), limiter=limiter)
    if asgi is not None:
        return ASGIResource(_application(asgi, "ASGI"))
    return None


def _application(name: str, kind: str) -> Any:
    """The object ``MODULE:NAME`` or ``MODULE.NAME`` names; a usage error if there is none."""
    module_name, colon, attribute = name.partition(":")
    if not colon:
        module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        raise click.UsageError(f"No such {kind} application: {name!r} (wanted MODULE.NAME or MODULE:NAME)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"No such {kind} application: {name!r} ({exc})") from None
    application: Any = module
    for part in attribute.split("."):
        application = getattr(application, part, None)
        if application is None:
            raise click.UsageError(f"No such {kind} application: {name!r} ({module_name} has no {attribute!r})")
    if not callable(application):
        raise click.UsageError(f"No such {kind} application: {name!r} is not callable")
    return application


def with_lifespan(root: Resource | None, serve: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``serve``, between the lifespan startup and shutdown of an ASGI root."""
    if not isinstance(root, ASGIResource):
        return serve

    async def serve_the_started_application() -> None:
        try:
            await root.run_with_lifespan(serve)
        except LifespanError as exc:
            raise click.ClickException(f"the ASGI application failed to start: {exc}") from None

    return serve_the_started_application
