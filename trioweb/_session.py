"""Sessions: ``Session``, the session store, and the cookie that names a session.

A client's session is found by a cookie: ``request.getSession()`` looks the
cookie's id up in ``site.sessions`` and, if it names no live session, makes
a new one (``site.makeSession()``) and sets the cookie. An unknown, expired
or malformed id is never an error: it just gets a new session.

The cookie keeps Twisted's name (``TWISTED_SESSION``, or
``TWISTED_SECURE_SESSION`` on TLS, joined with the site path by ``_``) and
adds what Twisted's lacks: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` on
TLS, and a ``Path`` confined to the site's mount point (``/~alice/`` for a
personal server behind a front) instead of ``/``. Ids are 256 bits from
``secrets`` (64 hex digits).

Theory of operation
-------------------
No timer is kept per session. The store keeps its sessions in the order
they were last touched (a touch moves a session to the end), so:

- expiry is a *sweep*: at most once per ``sweep_interval`` seconds, on a
  session access, sessions are expired from the least recently touched end
  until one that is still live is met (with one timeout for all, touch
  order is expiry order). A session is also checked when it is looked up,
  so an expired one is never handed out between sweeps, even one given a
  longer ``sessionTimeout`` of its own that holds the sweep up;
- the table is bounded: past ``max_sessions``, the least recently touched
  session is expired to make room, so a client that never sends the cookie
  back cannot grow the table beyond the cap, however many requests it makes;
- expiring runs the session's ``notifyOnExpire`` callbacks, whatever the
  cause (``expire()``, the timeout, the cap). An exception in a callback is
  logged and the others still run.

``SessionStore`` is the interface the Site needs of a store (get, set and
expire by id); ``MemorySessionStore`` is the default. A store shared by
several processes would keep serialisable session state behind the same
interface (see docs/sessions.md); none is built yet.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote_from_bytes

from trioweb._components import Componentized

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["MemorySessionStore", "Session", "SessionStore", "SiteSessions", "session_for"]

log = logging.getLogger("trioweb.server")

DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_SWEEP_INTERVAL = 60.0
# What a cookie name (an HTTP token) may hold besides letters and digits, less "%".
_TOKEN_PUNCTUATION = "!#$&'*+-.^_`|~"


class Session(Componentized):
    """A client's session with a site: attributes of your own, plus Twisted's API.

    ``uid`` (bytes), ``site``, ``lastModified`` (the store's clock at the
    last ``touch()``), ``sessionTimeout`` (seconds idle before it expires;
    900, Twisted's, and may be set per class or per session). Store what
    you need as attributes (``session.cart = ...``) or as components
    (``getComponent``/``setComponent``, keyed by a class or any object).
    """

    sessionTimeout: float = 900
    secure = False  # made for the secure cookie: never found by the plain one

    def __init__(self, site: Any, uid: bytes, reactor: Any = None) -> None:
        # ``reactor`` is accepted for code written for Twisted, and unused.
        super().__init__()
        self.site = site
        self.uid = uid
        self.expireCallbacks: list[Callable[[], Any]] = []
        self.expired = False
        self.lastModified = 0.0
        self.touch()

    def touch(self) -> None:
        """Mark the session as used now: its timeout starts again."""
        self.site.sessions.touch(self)

    def expire(self) -> None:
        """End the session: remove it from the site and run the ``notifyOnExpire`` callbacks."""
        self.site.sessions.expire(self.uid)

    def notifyOnExpire(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the session expires, whatever the cause."""
        self.expireCallbacks.append(callback)

    def _run_expire_callbacks(self) -> None:
        self.expired = True
        callbacks, self.expireCallbacks = self.expireCallbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a notifyOnExpire callback of session %r failed", self.uid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uid[:8]!r}...>"


class SessionStore(Protocol):
    """What a Site needs of the place its sessions are kept."""

    def get(self, uid: bytes) -> Session | None:
        """The live session ``uid``, or None (unknown or expired: it is expired now)."""

    def set(self, uid: bytes, session: Session) -> None:
        """Keep ``session`` under ``uid``, touched now."""

    def expire(self, uid: bytes) -> None:
        """Remove session ``uid`` (if kept) and run its expire callbacks."""

    def touch(self, session: Session) -> None:
        """Mark ``session`` as used now."""

    def __len__(self) -> int: ...


class MemorySessionStore:
    """The sessions of one process, in memory, bounded (see the theory of operation).

    It is also a read-only mapping ``uid → Session`` (``site.sessions[uid]``,
    ``uid in site.sessions``, ``len``, iteration), as Twisted's dict is.
    ``clock`` is the time source (seconds, monotonic).
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS, *,
                 sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.sweep_interval = sweep_interval
        self.clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._next_sweep = clock() + sweep_interval

    def get(self, uid: bytes) -> Session | None:
        self._sweep_if_due()
        session = self._sessions.get(uid)
        if session is not None and self.clock() - session.lastModified >= session.sessionTimeout:
            self.expire(uid)
            return None
        return session

    def set(self, uid: bytes, session: Session) -> None:
        self._sweep_if_due()
        while len(self._sessions) >= self.max_sessions and uid not in self._sessions:
            self.expire(next(iter(self._sessions)))  # the least recently touched
        self._sessions[uid] = session
        self.touch(session)

    def expire(self, uid: bytes) -> None:
        session = self._sessions.pop(uid, None)
        if session is not None:
            session._run_expire_callbacks()

    def touch(self, session: Session) -> None:
        session.lastModified = self.clock()
        if session.uid in self._sessions:
            self._sessions.move_to_end(session.uid)

    def sweep(self) -> None:
        """Expire the sessions idle past their timeout, from the least recently touched."""
        now = self.clock()
        self._next_sweep = now + self.sweep_interval
        while self._sessions:
            uid, session = next(iter(self._sessions.items()))
            if now - session.lastModified < session.sessionTimeout:
                return
            self.expire(uid)

    def _sweep_if_due(self) -> None:
        if self.clock() >= self._next_sweep:
            self.sweep()

    def __getitem__(self, uid: bytes) -> Session:
        return self._sessions[uid]

    def __contains__(self, uid: object) -> bool:
        return uid in self._sessions

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._sessions))

    def __len__(self) -> int:
        return len(self._sessions)


class SiteSessions:
    """The Site's side of sessions (mixed into ``Site``), with Twisted's names.

    Class attributes a Site (or a subclass) may change: ``sessionFactory``
    (the ``Session`` class to make), ``max_sessions`` (the cap of the default
    store), ``sessionCookieName`` (replaces ``TWISTED_SESSION``; the secure
    variant gets ``_SECURE`` added), ``sessionCookieSameSite``. Assign
    ``site.sessions`` a store of your own before the first request to use it.
    """

    sessionFactory: Callable[..., Session] = Session
    max_sessions = DEFAULT_MAX_SESSIONS
    sessionCookieName: bytes | None = None
    sessionCookieSameSite: str | None = "lax"
    _sessions: SessionStore | None = None

    @property
    def sessions(self) -> SessionStore:
        if self._sessions is None:
            self._sessions = MemorySessionStore(self.max_sessions)
        return self._sessions

    @sessions.setter
    def sessions(self, store: SessionStore) -> None:
        self._sessions = store

    def makeSession(self) -> Session:
        """A new session, kept in ``sessions``, with a fresh 256-bit id."""
        uid = secrets.token_hex(32).encode("ascii")
        session = self.sessionFactory(self, uid)
        self.sessions.set(uid, session)
        return session

    def getSession(self, uid: bytes) -> Session:
        """The live session ``uid``; KeyError if there is none (as in Twisted)."""
        session = self.sessions.get(uid)
        if session is None:
            raise KeyError(uid)
        return session


def cookie_name(base: bytes, sitepath: list[bytes]) -> bytes:
    """``base`` joined with the site path by ``_``, as Twisted names it; any
    byte a cookie name cannot hold is percent-encoded."""
    return quote_from_bytes(b"_".join([base, *sitepath]), safe=_TOKEN_PUNCTUATION).encode("ascii")


def session_for(request: Request, forceNotSecure: bool = False) -> Session:
    """``request.getSession()``: the session its cookie names, or a new one with its cookie set."""
    site = request.site
    secure = request.isSecure() and not forceNotSecure
    # ``request.session`` is the session matching the request's security (as
    # in Twisted); an insecure one asked for on a secure request is kept apart.
    attribute = "session" if secure == request.isSecure() else "_insecure_session"
    known = getattr(request, attribute)
    if known is not None and not known.expired:
        known.touch()
        return known
    base = site.sessionCookieName or b"TWISTED_SESSION"
    if secure:
        base = b"TWISTED_SECURE_SESSION" if site.sessionCookieName is None else base + b"_SECURE"
    name = cookie_name(base, request.sitepath)
    uid = request.getCookie(name)
    session = site.sessions.get(uid) if uid else None
    if session is None or session.secure != secure:  # a secure session is never had over plain HTTP
        if request.startedWriting:
            log.warning("%r: getSession() made a session after the response head was sent; "
                        "its cookie cannot reach the client", request)
        session = site.makeSession()
        session.secure = secure
        path = b"/" + b"".join(quote_from_bytes(segment, safe="").encode("ascii") + b"/"
                               for segment in request.sitepath)
        request.addCookie(name, session.uid, path=path, secure=secure, httpOnly=True,
                          sameSite=site.sessionCookieSameSite)
    else:
        session.touch()
    setattr(request, attribute, session)
    return session
