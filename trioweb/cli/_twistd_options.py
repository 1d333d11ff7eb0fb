"""``twistd web`` and ``twistd`` options kept so that a Twisted command line still runs.

- ``--https PORT`` (with ``-c/--certificate``, ``-k/--privkey``, both
  ``server.pem`` by default) and ``-p/--port ENDPOINT``, deprecated in
  Twisted, still work: each adds a listener, with a warning giving the
  ``--listen`` string to use instead;
- ``--notracebacks``, a no-op already in Twisted, is accepted with a warning;
- ``-n/--nodaemon`` is accepted and does nothing: trioweb always runs in the
  foreground (run it under systemd or another supervisor);
- ``--umask MODE`` sets the umask, and ``-d/--rundir DIR`` the working
  directory, before anything is opened or loaded, as twistd does.

docs/cli.md has the table of every twistd option and what became of it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

log = logging.getLogger("trioweb")


def _octal(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal mode such as 022", param_hint="--umask") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is not an octal mode such as 022", param_hint="--umask")
    return mode


def twistd_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("--https", "https_port", metavar="PORT",
                     help="Deprecated (as in twistd web): use --listen ssl:PORT:privateKey=KEY:certKey=CERT."),
        click.option("-c", "--certificate", metavar="FILE", default="server.pem", show_default=True,
                     help="Deprecated: the certificate for --https."),
        click.option("-k", "--privkey", metavar="FILE", default="server.pem", show_default=True,
                     help="Deprecated: the private key for --https."),
        click.option("-p", "--port", "old_ports", multiple=True, metavar="ENDPOINT",
                     help="Deprecated (as in twistd web): use --listen."),
        click.option("--notracebacks", is_flag=True,
                     help="Deprecated, does nothing (tracebacks are shown only with --display-tracebacks)."),
        click.option("-n", "--nodaemon", is_flag=True,
                     help="Accepted for twistd's sake: trioweb always runs in the foreground."),
        click.option("--umask", metavar="MODE", help="Set the umask (octal, e.g. 022) before opening anything."),
        click.option("-d", "--rundir", metavar="DIR",
                     help="Change to this directory before loading or opening anything (as twistd)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def apply_twistd_options(options: dict[str, Any]) -> list[str]:
    """Apply ``--umask`` and ``--rundir``; return the endpoint strings the
    deprecated port options ask for (warning about each). Removes this
    module's options."""
    https_port = options.pop("https_port")
    certificate = options.pop("certificate")
    privkey = options.pop("privkey")
    old_ports = options.pop("old_ports")
    umask = _octal(options.pop("umask"))
    rundir = options.pop("rundir")
    options.pop("nodaemon")
    if options.pop("notracebacks"):
        log.warning("--notracebacks is deprecated and does nothing: tracebacks are only shown in error "
                    "pages with --display-tracebacks")
    context = click.get_current_context()
    if https_port is None and any(
            context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
            for name in ("certificate", "privkey")):
        log.warning("-c/--certificate and -k/--privkey only apply to --https: ignored")
    if umask is not None:
        os.umask(umask)
    if rundir is not None:
        try:
            os.chdir(rundir)
        except OSError as exc:
            raise click.BadParameter(f"cannot change to {rundir!r}: {exc.strerror}",
                                     param_hint="--rundir") from None
    listen = []
    for port in old_ports:
        log.warning("--port is deprecated: use --listen %s", port)
        listen.append(port)
    if https_port is not None:
        if not https_port.isdigit():
            raise click.BadParameter(f"{https_port!r} is not a port number", param_hint="--https")
        endpoint = f"ssl:{https_port}:privateKey={_escaped(privkey)}:certKey={_escaped(certificate)}"
        log.warning("--https is deprecated: use --listen %s", endpoint)
        listen.append(endpoint)
    return listen


def _escaped(path: str) -> str:
    """A file name as an endpoint field (``:`` and ``=`` escaped)."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
