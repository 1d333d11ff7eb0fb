"""``UserDirectory``: ``/~alice/...`` and ``/users/alice/...`` reach alice's site.

For each request the user's site is, in order:

1. her personal server, if ``~alice/.trioweb-pb`` is her socket in a safe
   home (see ``_peer_checks``; the process behind it must run as her);
2. ``~alice/public_html`` served by the front, through the resource the
   ``public_html`` factory makes (the command line gives a static File that
   executes no scripts, shows no script source and serves no dotfiles);
3. otherwise 404.

A user named in ``remote_users`` (the front's users map, see ``_remote``)
is served by her personal server on another machine instead, whether or
not she has an account here: no lookup, no home is looked at.

Only ordinary accounts exist here: a name of the usual form, uid ≥
``min_uid`` (1000), never root or ``nobody``. Every negative case (no such
user, system account, nothing published) is the same 404, so the site
cannot be used to enumerate accounts. ``/~alice`` redirects to ``/~alice/``.

Where it is mounted decides the URL forms. At the root of a site (the
``--user`` front), its children are ``~alice`` and ``users/alice``, and
``/users`` redirects to ``/users/``, which lists the users too. Mounted
anywhere else, as Twisted's guide does (``root.putChild(b"users",
UserDirectory())``, with ``RewriterResource(root, tildeToUsers)`` turning
``/~alice/`` into ``/users/alice/``), its children are the plain names
(``/users/alice/``), ``~alice`` still works, and ``/users`` redirects to
``/users/``, its index. ``user_resource(name)`` is a user's site at the root
of a host of its own (``vhost.UserNameVirtualHost`` serves ``alice.example.com``
with it).

Each user has one ``ResourceSubscription``, whichever URL form reaches it,
so one admission cap (``max_in_flight`` requests waiting on her server, a
line of ``max_queued`` for ``queue_timeout``; 503 beyond): a hung or
flooded personal server holds a bounded share of the front.

``/`` lists the users who publish, with their real names (escaped). Password
lookups and home checks run in worker threads (homes may be on slow network
file systems), never in the event loop, and at most ``lookup_timeout`` (10 s)
each: beyond, the request gets a 504 and the thread is left to finish alone.

Lookups are isolated per user (per name asked for; the index counts as one
more): at most ``lookups_per_user`` (8) run at once for one user, and a user
whose lookups have timed out while some still hang (a home on a dead NFS or
FUSE mount) is answered 504 at once, without a thread, until they end. So a
hung home holds at most ``lookups_per_user`` threads, and every other user's
lookups run as usual.

With ``max_user_rate``, each user's site takes at most that many requests a
second on average, in bursts of twice as many, whatever the URL form (and the
user's own host name); beyond, 429 with ``Retry-After`` (see ``_rate``). The
limit is checked before any lookup, for names that exist or not.

With ``user_status``, ``/~alice/.status`` (and ``.status`` on her own host)
is answered by the front, not her server: her backend's row of the status
page (``?format=prometheus`` too), to anyone; a user with nothing published
gets the same 404 as ever. (Personal servers hide dotfiles, so the name is
free.)
"""

from __future__ import annotations

import logging
import math
import os
import pwd
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import trio

from trioweb.distrib._admission import MAX_IN_FLIGHT, MAX_QUEUED, QUEUE_TIMEOUT
from trioweb.distrib._backend import BackendStatus, remote_log
from trioweb.distrib._peer_checks import PasswdEntry, check_peer_uid, check_socket_path, publishes_socket
from trioweb.distrib._rate import RateLimits
from trioweb.distrib._remote import USER_NAME as _USER_NAME
from trioweb.distrib._remote import RemoteUsers
from trioweb.distrib.status import StatusPage
from trioweb.distrib.subscription import ResourceSubscription
from trioweb.resource import NoResource, Resource, getChildForRequest, render_error
from trioweb.util import redirect_to_slash

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["LookupTooSlow", "UserDirectory"]

log = logging.getLogger("trioweb.distrib")
NOBODY_UID = 65534
# How long a password lookup or a look at a home may take (LDAP, NFS) before
# the request gets a 504; the worker thread is abandoned (see _Lookups).
LOOKUP_TIMEOUT = 10.0
LOOKUPS_PER_USER = 8
INDEX = b""  # the key of the index's lookups among the users'


class _Lookups:
    """The lookups of one user in worker threads: a limiter (released when a
    thread really ends, abandoned or not) and how many were abandoned."""

    __slots__ = ("abandoned", "limiter")

    def __init__(self, most: int) -> None:
        self.limiter = trio.CapacityLimiter(most)
        self.abandoned = 0

    def stuck(self) -> bool:
        """Some lookup timed out and threads of this user still run."""
        if self.limiter.borrowed_tokens == 0:
            self.abandoned = 0
        return self.abandoned > 0

    def idle(self) -> bool:
        return self.limiter.borrowed_tokens == 0 and self.limiter.statistics().tasks_waiting == 0


class UserDirectory(Resource):
    """The root of a front server: the user index and every user's site."""

    userDirName = "public_html"
    userSocketName = ".trioweb-pb"

    def __init__(
        self,
        userDatabase: Any = None,  # anything with pwd's getpwnam and getpwall (tests inject one)
        *,
        public_html: Callable[[str], Resource] | None = None,
        min_uid: int = 1000,
        backend_timeout: float = 60.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        queue_timeout: float = QUEUE_TIMEOUT,
        max_queued: int = MAX_QUEUED,
        lookup_timeout: float = LOOKUP_TIMEOUT,
        lookups_per_user: int = LOOKUPS_PER_USER,
        max_user_rate: float | None = None,
        user_status: bool = False,
        remote_users: RemoteUsers | None = None,
    ) -> None:
        super().__init__()
        self.remote_users = remote_users
        self._pwd = userDatabase if userDatabase is not None else pwd
        self.public_html = public_html
        self.min_uid = min_uid
        self.backend_timeout = backend_timeout
        # Per user (each user's subscription has its own), see ResourceSubscription.
        self.max_in_flight = max_in_flight
        self.queue_timeout = queue_timeout
        self.max_queued = max_queued
        self._subscriptions: dict[str, ResourceSubscription] = {}
        self.lookup_timeout = lookup_timeout
        self.lookups_per_user = lookups_per_user
        self._lookups: dict[bytes, _Lookups] = {}  # by user name; entries leave when idle
        self.user_status = user_status  # /~alice/.status: her backend's row, for anyone
        self.rate_limits: RateLimits | None = None
        if max_user_rate is not None:
            self.limit_rate(max_user_rate)
        self.putChild(b"users", _UserMap(self))

    def limit_rate(self, rate: float) -> None:
        """At most ``rate`` requests a second per user, in bursts of twice that (429 beyond)."""
        self.rate_limits = RateLimits(rate, max(1, round(2 * rate)))

    async def off_loop(self, request: Request, key: bytes, function: Callable[[], Any]) -> Any:
        """``function()`` in a worker thread (it blocks on the user database or
        on homes), as one of the lookups of user ``key``; ``LookupTooSlow``
        after ``lookup_timeout`` seconds, or at once while that user's lookups hang."""
        lookups = self._lookups.get(key)
        if lookups is None:
            lookups = self._lookups[key] = _Lookups(self.lookups_per_user)
        if lookups.stuck():
            remote_log.warning(("lookups", key), "504 for %s: lookups for %r still hang past %g s",
                               request.uri.decode("latin-1"), key.decode("ascii"), self.lookup_timeout)
            raise LookupTooSlow
        try:
            with trio.fail_after(self.lookup_timeout):
                return await trio.to_thread.run_sync(function, limiter=lookups.limiter, abandon_on_cancel=True)
        except trio.TooSlowError:
            if lookups.limiter.borrowed_tokens:
                lookups.abandoned += 1
            remote_log.warning(("lookups", key), "504 for %s: user lookups took over %g s",
                               request.uri.decode("latin-1"), self.lookup_timeout)
            raise LookupTooSlow from None
        finally:
            if lookups.idle() and self._lookups.get(key) is lookups:
                del self._lookups[key]

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self
        if path.startswith(b"~"):
            return _UserSite(self, path[1:])
        if path and len(request.prepath) > 1:  # mounted below the root: children are plain names
            return _UserSite(self, path)
        return NoResource()

    def user_resource(self, name: bytes) -> Resource:
        """The site of user ``name`` as the root of a host of its own
        (``vhost.UserNameVirtualHost``: ``alice.example.com``), or the same 404
        as ``/~name/`` if there is none."""
        return _UserSite(self, name)

    # -- users -----------------------------------------------------------------

    def _is_ordinary(self, user: PasswdEntry) -> bool:
        return (
            user.pw_uid >= self.min_uid
            and user.pw_uid != NOBODY_UID
            and user.pw_name != "nobody"
            and bool(_USER_NAME.match(user.pw_name))
        )

    def lookup(self, name: bytes) -> PasswdEntry | None:
        """The account named ``name`` if it is an ordinary one (blocking)."""
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not _USER_NAME.match(text):
            return None  # also refuses NUL, "/", "..": nothing odd reaches getpwnam
        try:
            user = self._pwd.getpwnam(text)
        except KeyError:
            return None
        return user if self._is_ordinary(user) else None

    def socket_path(self, user: PasswdEntry) -> str:
        return os.path.join(user.pw_dir, self.userSocketName)

    def site_for(self, user: PasswdEntry) -> Resource | None:
        """What serves ``user`` right now (blocking: stats the home)."""
        path = self.socket_path(user)
        if publishes_socket(path, user):
            subscription = self._subscriptions.get(user.pw_name)
            if subscription is None:
                subscription = ResourceSubscription(
                    "unix", path, backend_timeout=self.backend_timeout,
                    before_connect=lambda: check_socket_path(path, user),
                    check_peer=lambda creds: check_peer_uid(-1 if creds is None else creds.uid, user, path),
                    cookie_prefixes=(b"/~%s/" % user.pw_name.encode(), b"/users/%s/" % user.pw_name.encode()),
                    max_in_flight=self.max_in_flight, queue_timeout=self.queue_timeout, max_queued=self.max_queued,
                )
                # One per user, so one admission cap per user: two lookups racing in
                # their worker threads keep the first one made (setdefault is atomic).
                subscription = self._subscriptions.setdefault(user.pw_name, subscription)
            return subscription
        directory = os.path.join(user.pw_dir, self.userDirName)
        if self.public_html is not None and os.path.isdir(directory):
            return self.public_html(directory)
        return None

    def remote_site(self, name: str) -> ResourceSubscription | None:
        """The subscription to ``name``'s personal server on another machine, if the users map names her."""
        endpoint = None if self.remote_users is None else self.remote_users.endpoints.get(name)
        if endpoint is None:
            return None
        assert self.remote_users is not None
        subscription = self._subscriptions.get(name)
        if subscription is None:
            subscription = self._subscriptions.setdefault(name, ResourceSubscription(
                endpoint, backend_timeout=self.backend_timeout, tls=self.remote_users.context_for(endpoint),
                cookie_prefixes=(b"/~%s/" % name.encode(), b"/users/%s/" % name.encode()),
                max_in_flight=self.max_in_flight, queue_timeout=self.queue_timeout, max_queued=self.max_queued,
            ))
        return subscription

    def backends(self) -> dict[str, BackendStatus]:
        """The front's view of each user's personal server it has tried, by user name."""
        return {name: subscription.status for name, subscription in self._subscriptions.items()}

    def publishers(self) -> list[tuple[str, str]]:
        """(name, real name) of every user who publishes, sorted (blocking);
        every user of the users map publishes, under her name."""
        remote = set() if self.remote_users is None else set(self.remote_users.endpoints)
        found = [(name, name) for name in remote]
        for user in self._pwd.getpwall():
            if not self._is_ordinary(user) or user.pw_name in remote:
                continue
            publishes = publishes_socket(self.socket_path(user), user) or (
                self.public_html is not None and os.path.isdir(os.path.join(user.pw_dir, self.userDirName)))
            if publishes:
                real_name = (user.pw_gecos or "").split(",")[0] or user.pw_name
                found.append((user.pw_name, real_name))
        return sorted(found)

    # -- the index ---------------------------------------------------------------

    async def render_GET(self, request: Request) -> bytes:
        # At the root, links are ~alice/; mounted (/users/), plain names.
        return await self.render_index(request, "~" if len(request.prepath) <= 1 else "")

    async def render_index(self, request: Request, link_prefix: str) -> bytes:
        """The list of users who publish, linked as ``link_prefix + name + "/"``;
        reached without its trailing slash, a redirect to it."""
        if request.prepath and request.prepath[-1] != b"":
            return redirect_to_slash(request)  # /users → /users/: the relative links need it
        try:
            users = await self.off_loop(request, INDEX, self.publishers)
        except LookupTooSlow:
            return _too_slow(request)
        items = "".join(
            f'<li><a href="{link_prefix}{quote(name)}/">{escape(real)}</a> <span>~{escape(name)}</span></li>'
            for name, real in users
        ) or "<li>No one publishes a site here yet.</li>"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Users</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
            "span{color:#777}</style></head>"
            f"<body><h1>Users</h1><ul>{items}</ul></body></html>\n"
        ).encode()


class _UserMap(Resource):
    """``/users/``: each child is a user's site; ``/users/`` itself lists them."""

    def __init__(self, directory: UserDirectory) -> None:
        super().__init__()
        self.directory = directory

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path:
            return _UserSite(self.directory, path)
        return self if not request.postpath else NoResource()

    async def render_GET(self, request: Request) -> bytes:
        return await self.directory.render_index(request, "")


class _UserSite(Resource):
    """Finds the user's site off the event loop, then lets it answer."""

    isLeaf = True
    # The body is the user's site's to read (a personal server streams it).
    stream_request_body = True
    max_request_body = ResourceSubscription.max_request_body

    def __init__(self, directory: UserDirectory, name: bytes) -> None:
        super().__init__()
        self.directory = directory
        self.name = name

    def render(self, request: Request) -> Any:
        return self._render(request)

    async def _render(self, request: Request) -> Any:
        directory = self.directory
        request.log_fields = {"user": self.name.decode("ascii", "backslashreplace")}  # the JSON access log's

        def find() -> Resource | None:
            remote = directory.remote_site(self.name.decode("ascii"))
            if remote is not None:
                return remote
            user = directory.lookup(self.name)
            return None if user is None else directory.site_for(user)

        if not _USER_NAME.match(self.name.decode("latin-1")):
            return NoResource().render(request)  # no thread (nor key) for a name no account can have
        limits = directory.rate_limits
        if limits is not None and (wait := limits.take(self.name)) is not None:
            remote_log.info(("rate", self.name), "429 for %s: more than %g requests a second for %r",
                            request.uri.decode("latin-1"), limits.rate, self.name.decode("ascii"))
            request.setHeader(b"retry-after", b"%d" % max(1, math.ceil(wait)))
            return render_error(request, 429, "Too Many Requests",
                                "This site gets too many requests at the moment. Try again shortly.")
        try:
            site = await directory.off_loop(request, self.name, find)
        except LookupTooSlow:
            return _too_slow(request)
        if site is None:
            return NoResource().render(request)
        if directory.user_status and request.postpath == [b".status"]:
            own = directory.backends()
            name = self.name.decode("ascii")
            return StatusPage(lambda: {name: own[name]} if name in own else {}, "*").render(request)
        if not request.postpath:
            return redirect_to_slash(request)  # /~alice → /~alice/: relative links on her pages need it
        resource = getChildForRequest(site, request)
        result = resource.render(request)
        if hasattr(result, "__await__"):
            result = await result
        return result


class LookupTooSlow(Exception):
    """The user database or a home did not answer within ``lookup_timeout``."""


def _too_slow(request: Request) -> bytes:
    return render_error(request, 504, "Gateway Timeout", "The user directory is not answering. Try again later.")
