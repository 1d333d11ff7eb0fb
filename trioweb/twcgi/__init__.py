"""CGI (RFC 3875): ``CGIScript``, ``CGIDirectory``, ``FilteredScript``, ``PHPScript``.

Twisted's ``twisted.web.twcgi`` names, so ``from twisted.web import twcgi``
ports by changing the import:

- ``CGIScript(filename, registry=None)``: a leaf that runs ``filename`` for
  every request reaching it or a path below it (``/x.cgi/extra`` gives
  ``PATH_INFO=/extra``). The file must exist (404) and be executable (403:
  its source is never shown). A name starting with ``nph-`` marks a
  non-parsed-header script, whose output starts with its own status line;
- ``FilteredScript``: runs ``filter`` with the script's path as argument
  (``class PerlScript(FilteredScript): filter = "/usr/bin/perl"``), so the
  script need not be executable;
- ``PerlScript``: the guide's ``FilteredScript`` for ``/usr/bin/perl``;
- ``PHPScript``: runs ``php-cgi`` as it expects (``REDIRECT_STATUS``,
  ``SCRIPT_FILENAME``, no command-line arguments from the query: that was
  CVE-2012-1823);
- ``CGIDirectory(path)``: its children are scripts and subdirectories;
  the directory itself is 404 (no listing).

A script that its group or others may change (a group- or world-writable
file or directory), or a setuid or setgid one, is refused with 403 and a
log line, as suEXEC refuses them (Twisted runs them).

A query without ``=`` (an old ``ISINDEX`` search) becomes the script's
command-line arguments, split on ``+``, as RFC 3875 §4.4 says and Twisted
does; never for PHP.

How scripts run (timeout, concurrency limit, the environment they see)
is a ``CGISettings``: the one given to a resource, else the server's
default, set with ``configure()`` (the ``trioweb`` command's ``--cgi-*``
options do). The environment is built in ``trioweb.twcgi._environ``, the
process's life in ``trioweb.twcgi._process``, the output's header block is
read by ``trioweb.twcgi._output``; each module's docstring says how.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from trioweb._fs import Registry, segment_name
from trioweb.http import BodyTimeout, BodyTooLarge, ParseError
from trioweb.resource import ForbiddenResource, NoResource, Resource, render_error
from trioweb.twcgi._environ import DEFAULT_PASS_ENV, cgi_environment
from trioweb.twcgi._output import MalformedOutput, OutputParser, ScriptHead
from trioweb.twcgi._process import CGISettings, ScriptFailed, StderrLog, answer_body_error, run_script, spool_body

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = [
    "DEFAULT_PASS_ENV",
    "CGIDirectory",
    "CGIScript",
    "CGISettings",
    "FilteredScript",
    "MalformedOutput",
    "OutputParser",
    "PHPScript",
    "PerlScript",
    "ScriptFailed",
    "ScriptHead",
    "StderrLog",
    "configure",
    "default_settings",
]

log = logging.getLogger("trioweb.twcgi")

_default = CGISettings()


def configure(settings: CGISettings) -> None:
    """Make ``settings`` this server's default for every CGI resource that has none of its own."""
    global _default
    _default = settings


def default_settings() -> CGISettings:
    """The server's default ``CGISettings`` (see ``configure``)."""
    return _default


class CGIScript(Resource):
    """Runs a CGI script for each request; see the module docstring."""

    isLeaf = True
    stream_request_body = True  # the body goes to the script's stdin as it arrives

    def __init__(self, filename: str, registry: Registry | None = None, *,
                 settings: CGISettings | None = None) -> None:
        super().__init__()
        self.filename = os.path.abspath(filename)
        self.registry = registry
        self.settings = settings

    def render(self, request: Request) -> Any:
        if any(b"\x00" in segment for segment in request.postpath):
            return NoResource().render(request)
        problem = self.cannot_run()
        if problem is not None:
            return problem.render(request)
        settings = self.settings or _default
        if not settings.slots.take():
            request.setHeader(b"retry-after", b"5")
            return render_error(request, 503, "Service Unavailable",
                                "Too many scripts are running: try again shortly.")
        return self._run(request, settings)

    def cannot_run(self) -> Resource | None:
        """Why this script cannot be run (an error resource), None if it can."""
        problem = unsafe_script(self.filename)
        if problem is not None:
            return problem
        if not os.access(self.filename, os.X_OK):
            return ForbiddenResource("This script is not executable.")
        return None

    def command(self, request: Request) -> list[str]:
        """The script's command line: itself, then the ISINDEX search words."""
        return [self.filename, *isindex_arguments(request.uri)]

    def environment(self, request: Request, content_length: int | None,
                    settings: CGISettings) -> dict[bytes, bytes]:
        """The script's environment (RFC 3875; see ``trioweb.twcgi._environ``)."""
        return cgi_environment(request, self.filename, content_length, settings.pass_env)

    async def _run(self, request: Request, settings: CGISettings) -> None:
        try:
            body = None
            length = request.declared_body_size
            if request.has_body and length is None:
                try:
                    body = await spool_body(request)
                except (BodyTooLarge, BodyTimeout, ParseError) as exc:
                    answer_body_error(request, exc)
                    return
                body.seek(0, os.SEEK_END)
                length = body.tell()
                body.seek(0)
            env = self.environment(request, length if request.has_body else None, settings)
            nph = os.path.basename(self.filename).startswith("nph-")
            await run_script(request, self.command(request), env, os.path.dirname(self.filename), settings,
                             nph=nph, body=body)
        finally:
            settings.slots.give_back()


class FilteredScript(CGIScript):
    """A script run by an interpreter: ``filter`` with the script's path as argument."""

    filter = "/usr/bin/cat"

    def cannot_run(self) -> Resource | None:
        return unsafe_script(self.filename)  # run by the filter: it need not be executable

    def command(self, request: Request) -> list[str]:
        return [self.filter, self.filename, *isindex_arguments(request.uri)]


class PerlScript(FilteredScript):
    """A Perl script run by ``perl`` (the guide's own example class, ready made)."""

    filter = "/usr/bin/perl"


class PHPScript(FilteredScript):
    """A PHP page run by ``php-cgi`` (Debian's ``php-cgi`` package)."""

    filter = "/usr/bin/php-cgi"

    def command(self, request: Request) -> list[str]:
        return [self.filter]  # php-cgi finds the script in SCRIPT_FILENAME; never argv from the query

    def environment(self, request: Request, content_length: int | None,
                    settings: CGISettings) -> dict[bytes, bytes]:
        env = super().environment(request, content_length, settings)
        env[b"REDIRECT_STATUS"] = b"200"  # php-cgi's force_redirect: it was run by a server
        return env


class CGIDirectory(Resource):
    """A directory of CGI scripts: ``/x`` runs ``x``, subdirectories nest; itself 404."""

    script = CGIScript

    def __init__(self, pathname: str, registry: Registry | None = None, *,
                 settings: CGISettings | None = None) -> None:
        super().__init__()
        self.path = os.path.abspath(pathname)
        self.registry = registry
        self.settings = settings

    def getChild(self, path: bytes, request: Request) -> Resource:
        name = segment_name(path)
        if name == "":
            return self  # a trailing slash: the directory itself
        if name is None or name.startswith("."):
            return NoResource("File not found.")
        child = os.path.join(self.path, name)
        if os.path.isdir(child):
            return type(self)(child, self.registry, settings=self.settings)
        if os.path.isfile(child):
            return self.script(child, self.registry, settings=self.settings)
        return NoResource("File not found.")

    def render(self, request: Request) -> bytes:
        return NoResource("CGI directories do not support directory listing.").render(request)


# Permission bits that let someone other than the owner change what runs
# (suEXEC refuses the same), or that change who it runs as.
_UNSAFE_MODE = stat.S_IWGRP | stat.S_IWOTH | stat.S_ISUID | stat.S_ISGID


def unsafe_script(filename: str) -> Resource | None:
    """404 if ``filename`` is not a regular file; 403 (and a log line) if it
    or its directory is writable by its group or by others, or the script is
    setuid or setgid, as suEXEC refuses them; None if it may run."""
    try:
        info = os.stat(filename)
        directory = os.stat(os.path.dirname(filename))
    except OSError:
        return NoResource("File not found.")
    if not stat.S_ISREG(info.st_mode):
        return NoResource("File not found.")
    if info.st_mode & _UNSAFE_MODE or directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.error("CGI %s refused: it or its directory is writable by others than its owner, or it is "
                  "setuid/setgid (modes %o, %o)", filename, info.st_mode & 0o7777, directory.st_mode & 0o7777)
        return ForbiddenResource("This script may not be run.")
    return None


def isindex_arguments(uri: bytes) -> list[str]:
    """The command-line arguments of an ISINDEX query (one without ``=``), else none."""
    query = uri.partition(b"?")[2]
    if not query or b"=" in query:
        return []
    words = [os.fsdecode(unquote_to_bytes(word)) for word in query.split(b"+")]
    return [] if any("\x00" in word for word in words) else words
