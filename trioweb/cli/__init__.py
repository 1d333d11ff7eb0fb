"""The ``trioweb`` command: ``twistd web``'s options, in the foreground, on trio.

It turns options into a root resource and a Site, opens the listeners,
drops privileges if asked, and serves until SIGINT or SIGTERM; then it
closes the listeners at once, lets requests in flight finish within the
drain timeout, and exits 0. SIGHUP rebuilds the Site from the same options
and the configuration file, loaded afresh (``_build_site``, through ``_reload.Reloader``), reloads certificates and
reopens logs; SIGUSR1 reopens logs. See docs/operations.md.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from typing import Any

import click
import trio

from trioweb._accesslog import AccessLog
from trioweb._version import __version__
from trioweb.cli._app_options import app_options, app_root, put_cwd_on_path, with_lifespan
from trioweb.cli._cgi_options import cgi_options, configure_cgi
from trioweb.cli._config_options import check_site_options, config_from, config_options
from trioweb.cli._distrib_options import (
    PERSONAL_SOCKET,
    HideDotfiles,
    default_personal_root,
    distrib_options,
    personal_settings,
    user_root,
)
from trioweb.cli._gzip_options import gzip_options, gzip_root
from trioweb.cli._header_options import header_options, server_header_from
from trioweb.cli._hosting_options import HostingOptions, hosting_options
from trioweb.cli._limit_options import limit_options, limits_from
from trioweb.cli._ops_options import configure_logging, ops_options, trusted_proxies, with_health_check
from trioweb.cli._process import gid_of, log_opened, raise_open_file_limit, run_personal, run_site, uid_of
from trioweb.cli._reload import Reloader
from trioweb.cli._remote_options import RemoteOptions, remote_options
from trioweb.cli._static_options import static_options, static_root
from trioweb.cli._twistd_options import apply_twistd_options, twistd_options
from trioweb.cli._units import command_path, install_units
from trioweb.cli._welcome import WelcomePage
from trioweb.cli._workers import ServingProcess, check_workers, supervise, worker_role, workers_option
from trioweb.config import Config, load
from trioweb.endpoints import EndpointError, SSLEndpoint, certificate_store, inherited_endpoints, parse_endpoint
from trioweb.resource import Resource
from trioweb.server import Site, TrustedProxies

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
  trioweb --config site.py                   what a Python configuration file defines
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


def _build_site(options: dict[str, Any], personal: Any, limits: Any, headers: list[tuple[bytes, bytes]],
                server_header: bytes, proxies: TrustedProxies | None, config: Config | None,
                app: Resource | None, front: HostingOptions, remote: RemoteOptions) -> Site:
    """The Site the options and the configuration file describe: called at
    start and again on every SIGHUP (with the file loaded afresh). The
    reloader gives it the access log it keeps open. ``app`` (``--wsgi``,
    ``--asgi``) is made once: a reload serves the same application, whose
    ASGI lifespan spans the whole run."""
    if config and config.site:
        if personal and not personal.show_dotfiles:
            config.site.resource = HideDotfiles(config.site.resource)
        return config.site
    roots = [root for root in (
        static_root(options, _named_object),
        front.root(remote.apply(user_root(options))),
        _named_object(options["class_name"])() if options["class_name"] else None,
        config.resource if config else None,
        app,
    ) if root is not None]
    if len(roots) > 1:
        raise click.UsageError("--class, --path, --resource-script, --user, --wsgi, --asgi and --config choose the "
                               "root: give one of them.")
    if roots:
        root = roots[0]
    elif personal:
        root = default_personal_root()
    else:
        root = WelcomePage()
    if personal and not personal.show_dotfiles:
        root = HideDotfiles(root)
    root = gzip_root(options, root)
    return Site(root, limits=limits, displayTracebacks=options["display_tracebacks"], headers=headers,
                server_header=server_header, proxies=proxies)


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"],
                                                  "auto_envvar_prefix": "TRIOWEB"})
@click.option("--listen", "listen", multiple=True, metavar="ENDPOINT",
              help="Where to listen (repeatable): tcp:PORT[:interface=ADDR], unix:PATH[:mode=660], "
                   "ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem, systemd:index=0; any with :proxy=1 "
                   "for the PROXY protocol. Default tcp:8080, or the sockets systemd passed.")
@click.option("--class", "class_name", metavar="MODULE.NAME",
              help="Serve an instance of this Resource class (created with no arguments).")
@click.option("-l", "--logfile", metavar="FILE", help="Access log ('-' for stdout); see --access-log-format.")
@click.option("--add-header", "add_header", multiple=True, metavar="'NAME: VALUE'",
              help="Add this header to every response, errors included (repeatable).")
@click.option("--display-tracebacks", is_flag=True, help="Show tracebacks in 500 pages (for development).")
@click.option("--pidfile", metavar="FILE", help="Write the process id here while running.")
@click.option("--uid", metavar="USER", help="Run as this user after the listeners are open.")
@click.option("--gid", metavar="GROUP", help="Run as this group after the listeners are open.")
@workers_option
@static_options
@app_options
@distrib_options
@hosting_options
@remote_options
@limit_options
@ops_options
@config_options
@twistd_options
@gzip_options
@cgi_options
@header_options
@click.version_option(__version__, prog_name="trioweb")
def main(**options: Any) -> None:
    """Serve a resource tree over HTTP, in the foreground, until SIGINT or SIGTERM.

    SIGHUP reloads (the tree, certificates, log files), SIGUSR1 reopens the
    log files. Every option may also come from the environment as
    TRIOWEB_<OPTION> (TRIOWEB_LISTEN="tcp:80 tcp:81" for repeated ones)."""
    started_in = os.getcwd()  # where workers start (and apply --rundir again)
    role = worker_role()  # a --workers supervisor started us
    workers = 1 if role else options.pop("workers")
    options.pop("workers", None)
    if role:
        options["pidfile"] = None  # the supervisor's
    deprecated_listen = apply_twistd_options(options)  # first: --umask and --rundir apply to what follows
    put_cwd_on_path()  # after --rundir: the directory the server runs in
    config = config_from(options)
    if config:
        check_site_options(config)
    limits = limits_from(options)
    configure_cgi(options)
    personal = personal_settings(options)
    front = HostingOptions(options, personal=personal is not None)
    remote = RemoteOptions(options, personal=personal is not None)
    check_workers(workers, personal is not None)
    if front.install_units:
        tree = os.path.abspath(options["path"]) if options["path"] else None
        click.echo(install_units(command_path(), tree, front.idle_exit))
        return
    log_path = options["logfile"] or (personal.log_path if personal else "-")
    error_logs = configure_logging(options, log_path if personal and log_path != "-" else None,  # errors too
                                   tag=f"worker {role.index}: " if role else "")
    default_listen = [parse_endpoint(f"unix:{PERSONAL_SOCKET}:mode=666" if personal else "tcp:8080")]
    inherited = inherited_endpoints(unset_environment=True)  # systemd's sockets are ours, not our children's
    try:
        listen = [*(config.listen if config else ()), *options["listen"], *deprecated_listen]
        endpoints = [parse_endpoint(e) for e in listen] or inherited or default_listen
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None
    if role:
        endpoints = role.endpoints  # the supervisor's (it may have had systemd's sockets)
    remote.check_listeners(endpoints)
    try:
        certificates = {e: certificate_store(e) for e in endpoints if isinstance(e, SSLEndpoint)}
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from None
    uid = uid_of(options["uid"]) if options["uid"] else (config.uid if config else None)
    gid = gid_of(options["gid"]) if options["gid"] else (config.gid if config else None)
    if workers > 1:
        try:
            status = trio.run(lambda: supervise(
                workers, endpoints, certificates=certificates, pidfile=options["pidfile"], uid=uid, gid=gid,
                cwd=started_in, grace=options["health_grace"], drain_timeout=limits.drain_timeout))
        except EndpointError as exc:
            raise click.ClickException(str(exc)) from None
        raise SystemExit(status)
    if role and log_path == "-":
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # whole lines, shared with others
    try:
        if config and config.site:
            access_log = config.site.access_log  # the file's Site has settled its log
        else:
            access_log = log_opened(log_path, lambda path: AccessLog.open(path, options["access_log_format"]))
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from None
    headers = [_parse_header(h) for h in options["add_header"]]
    proxies = trusted_proxies(options)
    server_header = server_header_from(options)
    loaded = [config]  # the file as loaded at start; each reload loads it afresh
    app = app_root(options)

    def build_site() -> Site:
        current = loaded.pop() if loaded else (load(config.path) if config else None)
        return _build_site(dict(options), personal, limits, headers, server_header, proxies, current, app,
                           front, remote)

    reloader = Reloader(build_site, access_log=access_log, error_logs=error_logs,
                        certificates=list(certificates.values()))
    if personal and (uid is not None or gid is not None):
        raise click.UsageError("--personal runs as the user who starts it: --uid/--gid (and a config file's uid/gid) "
                               "do not apply.")
    raise_open_file_limit(reloader.site.limits.max_connections)
    try:
        if personal:
            trio.run(with_lifespan(app, lambda: run_personal(reloader, endpoints, personal, certificates=certificates,
                                                             pidfile=options["pidfile"], idle_exit=front.idle_exit)))
        else:
            process = ServingProcess(role.index, role.count) if role else ServingProcess()
            handler_for = front.with_status_page(with_health_check(options, lambda: reloader.draining), process.status)
            # A worker's grace ends when its supervisor says (a second stop signal), after it held new
            # connections back.
            grace = math.inf if role and options["health_grace"] > 0 else options["health_grace"]
            trio.run(with_lifespan(app, lambda: run_site(
                reloader, endpoints, handler_for=handler_for, certificates=certificates, pidfile=options["pidfile"],
                uid=uid, gid=gid, grace=grace, adopted=role.fds if role else None, on_server=process.serving,
                companion=role.keep_lifeline if role else None)))
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if access_log is not None:
            access_log.close()
