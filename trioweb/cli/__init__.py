"""The ``trioweb`` command: ``twistd web``'s options, in the foreground, on trio.

It turns options into a root resource and a Site, opens the listeners,
drops privileges if asked, and serves until SIGINT or SIGTERM; then it
closes the listeners at once, lets requests in flight finish within the
drain timeout, and exits 0.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click
import trio

from trioweb._version import __version__
from trioweb.cli._distrib_options import (
    PERSONAL_SOCKET,
    default_personal_root,
    distrib_options,
    personal_settings,
    user_root,
)
from trioweb.cli._header_options import header_options, server_header_from
from trioweb.cli._limit_options import limit_options, limits_from
from trioweb.cli._process import gid_of, raise_open_file_limit, run_personal, run_site, uid_of
from trioweb.cli._static_options import static_options, static_root
from trioweb.cli._welcome import WelcomePage
from trioweb.endpoints import EndpointError, parse_endpoint
from trioweb.server import Site

__all__ = ["main"]

log = logging.getLogger("trioweb")

EXAMPLES = """
\b
Examples:
  trioweb                                    the built-in page on port 8080
  trioweb --listen tcp:8000:interface=127.0.0.1 --class myapp.Root
  trioweb --listen unix:/run/web.sock:mode=660 --logfile access.log
  trioweb --listen tcp:80 --uid www-data --gid www-data --class myapp.Root
  trioweb --path ~/site                      a directory, with .rpy scripts
  trioweb --user --listen tcp:80 --uid www-data   the front of a community host
  trioweb --personal --path ~/public_html    your personal server behind it
"""


def _named_object(name: str) -> Any:
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise click.BadParameter(f"{name!r} is not a dotted name (module.Name)")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {name!r}: {exc}") from None


def _parse_header(text: str) -> tuple[bytes, bytes]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not of the form 'Name: Value'")
    return name.strip().encode("utf-8"), value.strip().encode("utf-8")


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", "listen", multiple=True, metavar="ENDPOINT",
              help="Where to listen (repeatable): tcp:PORT[:interface=ADDR], unix:PATH[:mode=660], "
                   "ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem. Default tcp:8080.")
@click.option("--class", "class_name", metavar="MODULE.NAME",
              help="Serve an instance of this Resource class (created with no arguments).")
@click.option("--logfile", metavar="FILE", help="Access log in the combined log format ('-' for stdout).")
@click.option("--add-header", "add_header", multiple=True, metavar="'NAME: VALUE'",
              help="Add this header to every response, errors included (repeatable).")
@click.option("--display-tracebacks", is_flag=True, help="Show tracebacks in 500 pages (for development).")
@click.option("--pidfile", metavar="FILE", help="Write the process id here while running.")
@click.option("--uid", metavar="USER", help="Run as this user after the listeners are open.")
@click.option("--gid", metavar="GROUP", help="Run as this group after the listeners are open.")
@static_options
@distrib_options
@limit_options
@header_options
@click.version_option(__version__, prog_name="trioweb")
def main(**options: Any) -> None:
    """Serve a resource tree over HTTP, in the foreground, until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    limits = limits_from(options)
    server_header = server_header_from(options)
    personal = personal_settings(options)
    default_listen = f"unix:{PERSONAL_SOCKET}:mode=666" if personal else "tcp:8080"
    try:
        endpoints = [parse_endpoint(e) for e in (options["listen"] or (default_listen,))]
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None
    headers = [_parse_header(h) for h in options["add_header"]]
    roots = [root for root in (
        static_root(options, _named_object),
        user_root(options),
        _named_object(options["class_name"])() if options["class_name"] else None,
    ) if root is not None]
    if len(roots) > 1:
        raise click.UsageError("--class, --path, --resource-script and --user choose the root: give one of them.")
    if roots:
        root = roots[0]
    elif personal:
        root = default_personal_root()
    else:
        root = WelcomePage()
    log_path = options["logfile"] or (personal.log_path if personal else "-")
    if personal and log_path != "-":
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)  # errors go to the personal log too
    site = Site(root, limits=limits, logPath=log_path,
                displayTracebacks=options["display_tracebacks"], headers=headers, server_header=server_header)
    uid = uid_of(options["uid"]) if options["uid"] else None
    gid = gid_of(options["gid"]) if options["gid"] else None
    if personal and (uid is not None or gid is not None):
        raise click.UsageError("--personal runs as the user who starts it: --uid/--gid do not apply.")
    raise_open_file_limit(limits.max_connections)
    try:
        if personal:
            trio.run(lambda: run_personal(site, endpoints, personal.allowed_uids, pidfile=options["pidfile"]))
        else:
            trio.run(lambda: run_site(site, endpoints, pidfile=options["pidfile"], uid=uid, gid=gid))
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from None
