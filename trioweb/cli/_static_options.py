"""The ``trioweb`` options that serve files: ``--path`` and ``--resource-script``.

``--path DIR`` serves ``DIR`` with ``static.File``, running ``.rpy`` files as
resource scripts and ``.cgi`` files as CGI scripts (``twcgi.CGIScript``, as
Twisted's ``--path`` does), and ``.asis`` files as they are; ``--index``,
``--mime-type``, ``--ignore-ext``, ``--allow-ignore-ext``, ``--processor``
and ``--follow-symlinks`` tune that File and so need ``--path``.
``--resource-script FILE`` serves what one .rpy builds, run per request.
A usage error names the option that is misplaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from trioweb.resource import Resource
from trioweb.script import ResourceScript, ResourceScriptWrapper
from trioweb.static import ASISProcessor, File
from trioweb.twcgi import CGIScript

_FILE_OPTIONS = ("index", "mime_type", "ignore_ext", "allow_ignore_ext", "processor", "follow_symlinks")


def static_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--path", metavar="DIR", help="Serve the files below DIR (.rpy, .cgi and .asis files are run)."),
        click.option("-i", "--index", multiple=True, metavar="NAME",
                     help="Index file name for directories (repeatable; replaces index, index.html, "
                          "index.htm, index.rpy)."),
        click.option("-m", "--mime-type", metavar="TYPE", help="Content type of files with an unknown extension "
                                                         "[default: text/html]."),
        click.option("--ignore-ext", multiple=True, metavar="EXT",
                     help="Let a request for 'foo' find 'foo.EXT' (repeatable, tried in order)."),
        click.option("--allow-ignore-ext", is_flag=True, help="Let a request for 'foo' find 'foo.<any extension>'."),
        click.option("--processor", multiple=True, metavar=".EXT=MODULE.NAME",
                     help="Serve files ending in .EXT with this resource factory, called as "
                          "factory(path, registry) (repeatable)."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Serve symlinks that lead out of --path DIR (by default they are 404)."),
        click.option("--resource-script", metavar="FILE.rpy",
                     help="Serve the resource that this resource script builds (run per request)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def static_root(options: dict[str, Any], load: Callable[[str], Any]) -> Resource | None:
    """The root chosen by these options (None if neither --path nor --resource-script).

    Removes this module's options from ``options``; ``load`` turns a dotted
    name into the object it names.
    """
    path = options.pop("path")
    script = options.pop("resource_script")
    tuning = {name: options.pop(name) for name in _FILE_OPTIONS}
    if path is None:
        used = [name for name, value in tuning.items() if value]
        if used:
            raise click.UsageError(f"--{used[0].replace('_', '-')} can only be used with --path.")
    if path is not None and script is not None:
        raise click.UsageError("--path and --resource-script choose the root: give one of them.")
    if script is not None:
        if not os.path.isfile(script):
            raise click.BadParameter(f"no such file {script!r}", param_hint="--resource-script")
        return ResourceScriptWrapper(os.path.abspath(script))
    if path is None:
        return None
    if not os.path.exists(path):
        raise click.BadParameter(f"no such file or directory {path!r}", param_hint="--path")
    root = File(os.path.abspath(path))
    root.processors = {".rpy": ResourceScript, ".asis": ASISProcessor, ".cgi": CGIScript}
    for spec in tuning["processor"]:
        ext, sep, name = spec.partition("=")
        if not sep or not ext.startswith(".") or not name:
            raise click.BadParameter(f"{spec!r} is not of the form .EXT=MODULE.NAME", param_hint="--processor")
        root.processors[ext] = load(name)
    if tuning["index"]:
        root.indexNames = list(tuning["index"])
    if tuning["mime_type"]:
        root.defaultType = tuning["mime_type"]
    for ext in tuning["ignore_ext"]:
        root.ignoreExt(ext)
    if tuning["allow_ignore_ext"]:
        root.ignoreExt("*")
    root.follow_symlinks = tuning["follow_symlinks"]
    return root
