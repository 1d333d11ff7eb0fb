"""The ``trioweb`` options of the distributed mode: ``--user`` and ``--personal``.

``--user`` makes the root a ``UserDirectory``: ``/`` lists the users who
publish, ``/~alice/`` and ``/users/alice/`` reach alice's personal server or
her ``public_html``, with at most ``--max-user-requests`` of her requests
waiting on her server at once (4 times as many queue for up to 10 s). The
front serves ``public_html`` as plain files only (``PublicFile``): no script
runs, no script's source is shown, no dotfile is served.

``--personal`` publishes the chosen tree (``--path``, ``--class``,
``--resource-script``; by default ``~/public_html``) to a front server over
``unix:~/.trioweb-pb`` (mode 0666, locked), accepting only the peers
``--allow-peer`` names plus root, the user's own uid and ``www-data``.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

import click

from trioweb.distrib import MAX_IN_FLIGHT, QUEUED_PER_SLOT, UserDirectory
from trioweb.resource import Resource
from trioweb.script import ResourceScript
from trioweb.static import ASISProcessor, File, PublicFile
from trioweb.twcgi import CGIScript

PERSONAL_SOCKET = "~/.trioweb-pb"
PERSONAL_LOG = "~/.trioweb.log"


def distrib_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    options = [
        click.option("-u", "--user", "user_mode", is_flag=True,
                     help="Front server: / lists users, /~NAME/ and /users/NAME/ serve their sites."),
        click.option("--personal", is_flag=True,
                     help="Personal server: publish the tree (default ~/public_html) to a --user front "
                          "over unix:~/.trioweb-pb."),
        click.option("--allow-peer", multiple=True, metavar="USER",
                     help="With --personal: also accept connections from this user (repeatable; root, "
                          "yourself and www-data always may)."),
        click.option("--backend-timeout", type=float, default=60.0, show_default=True,
                     help="With --user: seconds a personal server has to start answering (504 beyond)."),
        click.option("--max-user-requests", type=click.IntRange(min=1), default=MAX_IN_FLIGHT, show_default=True,
                     metavar="N",
                     help="With --user: requests one user's personal server may have waiting for their "
                          "response head; beyond, up to 4 x N wait in line up to 10 s, the rest get 503."),
        click.option("--min-uid", type=int, default=1000, show_default=True,
                     help="With --user: the lowest uid that counts as a user."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@dataclass(frozen=True)
class PersonalSettings:
    allowed_uids: frozenset[int]
    log_path: str


def user_root(options: dict[str, Any]) -> Resource | None:
    """The front's root for ``--user`` (None without it); removes the front's options."""
    user_mode = options.pop("user_mode")
    backend_timeout = options.pop("backend_timeout")
    max_user_requests = options.pop("max_user_requests")
    min_uid = options.pop("min_uid")
    if not user_mode:
        return None
    return UserDirectory(public_html=PublicFile, min_uid=min_uid, backend_timeout=backend_timeout,
                         max_in_flight=max_user_requests, max_queued=QUEUED_PER_SLOT * max_user_requests)


def personal_settings(options: dict[str, Any]) -> PersonalSettings | None:
    """The settings for ``--personal`` (None without it); removes its options."""
    personal = options.pop("personal")
    peers = options.pop("allow_peer")
    if not personal:
        if peers:
            raise click.UsageError("--allow-peer can only be used with --personal.")
        return None
    allowed = {0, os.getuid()}
    for name in ("www-data", *peers):
        try:
            allowed.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            if name != "www-data":
                raise click.BadParameter(f"no such user {name!r}", param_hint="--allow-peer") from None
    return PersonalSettings(frozenset(allowed), os.path.expanduser(PERSONAL_LOG))


def default_personal_root() -> Resource:
    """``~/public_html`` with .rpy and .cgi scripts and .asis files, as ``--path`` would serve it."""
    path = os.path.expanduser("~/public_html")
    if not os.path.isdir(path):
        raise click.UsageError(f"{path} does not exist: create it, or give --path, --class or --resource-script.")
    root = File(path)
    root.processors = {".rpy": ResourceScript, ".asis": ASISProcessor, ".cgi": CGIScript}
    return root
