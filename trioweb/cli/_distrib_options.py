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
``--allow-peer`` names plus root, the user's own uid and ``www-data``, at
most ``--max-peer-connections`` connections per peer uid, each closed after
``--peer-idle-timeout`` seconds with nothing in flight. It hides dotfiles
(any path segment starting with ``.``: ``.htpasswd``, ``.env``, ``.git/``),
as the front's ``public_html`` does, unless ``--show-dotfiles``. It needs a
home it can write to (its socket and log live there): without one, it says
so and exits 2.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from trioweb.distrib import MAX_IN_FLIGHT, QUEUED_PER_SLOT, UserDirectory
from trioweb.distrib.publisher import IDLE_TIMEOUT, MAX_PER_PEER
from trioweb.resource import NoResource, Resource
from trioweb.script import ResourceScript
from trioweb.static import ASISProcessor, File, PublicFile
from trioweb.twcgi import CGIScript

if TYPE_CHECKING:
    from trioweb._request import Request

PERSONAL_SOCKET = "~/.trioweb-pb"
PERSONAL_LOG = "~/.trioweb.log"


class SetupError(click.ClickException):
    """Something the administrator or user must fix before the server can run:
    one line naming the path and the fix, exit status 2 (as for a usage error)."""

    exit_code = 2


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
        click.option("--show-dotfiles", is_flag=True,
                     help="With --personal: serve paths with a segment starting with '.' (hidden by default)."),
        click.option("--max-peer-connections", type=click.IntRange(min=1), default=MAX_PER_PEER,
                     show_default=True, metavar="N",
                     help="With --personal: connections one peer uid (over TLS: one address) may have open "
                          "at once."),
        click.option("--peer-idle-timeout", type=click.FloatRange(min=0, min_open=True), default=IDLE_TIMEOUT,
                     show_default=True, metavar="SECONDS",
                     help="With --personal: close a connection with nothing in flight for this long."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@dataclass(frozen=True)
class PersonalSettings:
    allowed_uids: frozenset[int]
    log_path: str
    show_dotfiles: bool
    max_peer_connections: int
    peer_idle_timeout: float


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
    show_dotfiles = options.pop("show_dotfiles")
    max_peer_connections = options.pop("max_peer_connections")
    peer_idle_timeout = options.pop("peer_idle_timeout")
    if not personal:
        if peers or show_dotfiles:
            raise click.UsageError(f"{'--allow-peer' if peers else '--show-dotfiles'} can only be used with "
                                   "--personal.")
        return None
    _check_home()
    allowed = {0, os.getuid()}
    for name in ("www-data", *peers):
        try:
            allowed.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            if name != "www-data":
                raise click.BadParameter(f"no such user {name!r}", param_hint="--allow-peer") from None
    return PersonalSettings(frozenset(allowed), os.path.expanduser(PERSONAL_LOG), show_dotfiles,
                            max_peer_connections, peer_idle_timeout)


def _check_home() -> None:
    """A personal server keeps its socket and log in its home: it must be a directory we can write to."""
    home = os.path.expanduser("~")
    if home == "~" or not os.path.isabs(home):
        raise SetupError("--personal needs a home directory, and HOME is not set: set HOME, or give the account one")
    if not os.path.isdir(home):
        raise SetupError(f"--personal keeps its socket and log in your home, and {home} does not exist: create it "
                         f"(or set HOME to a directory of yours)")
    if not os.access(home, os.W_OK | os.X_OK):
        raise SetupError(f"--personal keeps its socket and log in your home, and {home} is not writable by you: "
                         f"fix its owner or mode (or set HOME to a directory of yours)")


class HideDotfiles(Resource):
    """A personal server's root: any request whose path has a segment starting
    with ``.`` (``.htpasswd``, ``.env``, ``.git/config``) is 404, whatever
    resource would serve it; everything else goes to ``root``."""

    def __init__(self, root: Resource) -> None:
        super().__init__()
        self.root = root

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if path.startswith(b".") or any(segment.startswith(b".") for segment in request.postpath):
            return NoResource()
        if self.root.isLeaf:  # it takes the whole path: put the segment back
            request.postpath.insert(0, request.prepath.pop())
            return self.root
        return self.root.getChildWithDefault(path, request)

    def render(self, request: Request) -> Any:
        return self.root.render(request)


def default_personal_root() -> Resource:
    """``~/public_html`` with .rpy and .cgi scripts and .asis files, as ``--path`` would serve it."""
    path = os.path.expanduser("~/public_html")
    if not os.path.isdir(path):
        raise click.UsageError(f"{path} does not exist: create it, or give --path, --class or --resource-script.")
    root = File(path)
    root.processors = {".rpy": ResourceScript, ".asis": ASISProcessor, ".cgi": CGIScript}
    return root
