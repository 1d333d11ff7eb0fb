"""Sessions: request.getSession(), Session, the store's expiry and cap, the cookie."""

from __future__ import annotations

import re

import pytest

from trioweb._session import MemorySessionStore
from trioweb.resource import Resource
from trioweb.server import Session, Site
from trioweb.testing import fetch

COOKIE = re.compile(rb"^([^=]+)=([0-9a-f]{64}); Path=([^;]+)(.*)$")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ShowSession(Resource):
    """The guide's "Session basics": the id, and a child that expires it."""

    isLeaf = True

    def render_GET(self, request):
        if request.postpath == [b"expire"]:
            request.getSession().expire()
            return b"Your session has been expired."
        session = request.getSession()
        assert request.getSession() is session  # asked twice in a request: the same
        session.visits = getattr(session, "visits", 0) + 1
        return b"uid=%s visits=%d" % (session.uid, session.visits)


def set_cookie(response) -> tuple[bytes, bytes, bytes, list[bytes]]:
    [value] = response.header_list(b"set-cookie")
    name, uid, path, rest = COOKIE.match(value).groups()
    return name, uid, path, [a.strip() for a in rest.split(b";") if a.strip()]


async def test_a_new_session_gets_a_confined_http_only_cookie():
    site = Site(ShowSession())
    response = await fetch(site, b"/")
    name, uid, path, attributes = set_cookie(response)
    assert name == b"TWISTED_SESSION" and path == b"/"
    assert attributes == [b"HttpOnly", b"SameSite=Lax"]  # no Secure without TLS
    assert bytes(response.body) == b"uid=%s visits=1" % uid
    assert len(site.sessions) == 1 and site.getSession(uid).uid == uid and uid in site.sessions


async def test_the_cookie_brings_the_same_session_back_without_a_new_cookie():
    site = Site(ShowSession())
    _, uid, _, _ = set_cookie(await fetch(site, b"/"))
    again = await fetch(site, b"/", headers=[(b"cookie", b"TWISTED_SESSION=" + uid)])
    assert bytes(again.body) == b"uid=%s visits=2" % uid
    assert again.header_list(b"set-cookie") == []


@pytest.mark.parametrize("value", [b"0" * 64, b"not-hex;", b"x" * 5000, b""])
async def test_an_unknown_or_malformed_id_gets_a_new_session_not_an_error(value):
    site = Site(ShowSession())
    response = await fetch(site, b"/", headers=[(b"cookie", b"TWISTED_SESSION=" + value)])
    assert response.code == 200
    _, uid, _, _ = set_cookie(response)
    assert uid != value and bytes(response.body) == b"uid=%s visits=1" % uid


async def test_on_tls_the_secure_cookie_is_separate_and_marked_secure():
    site = Site(ShowSession())
    response = await fetch(site, b"/", secure=True)
    name, uid, _, attributes = set_cookie(response)
    assert name == b"TWISTED_SECURE_SESSION" and b"Secure" in attributes and b"HttpOnly" in attributes
    # The plain-HTTP cookie does not bring the secure session.
    plain = await fetch(site, b"/", headers=[(b"cookie", b"TWISTED_SESSION=" + uid)])
    assert set_cookie(plain)[1] != uid


async def test_force_not_secure_on_tls_is_the_plain_session_and_request_session_stays_the_secure_one():
    seen = {}

    class Both(Resource):
        isLeaf = True

        def render_GET(self, request):
            assert request.session is None  # nothing asked for yet
            secure = request.getSession()
            plain = request.getSession(forceNotSecure=True)
            seen.update(secure=secure, plain=plain, current=request.session)
            return b"ok"

    response = await fetch(Site(Both()), b"/", secure=True)
    names = sorted(COOKIE.match(v).group(1) for v in response.header_list(b"set-cookie"))
    assert names == [b"TWISTED_SECURE_SESSION", b"TWISTED_SESSION"]
    assert seen["secure"] is not seen["plain"] and seen["current"] is seen["secure"]


async def test_the_cookie_is_named_and_confined_by_the_site_path():
    class Mounted(ShowSession):
        pass

    site = Site(Resource())
    site.resource.putChild(b"~alice", Mounted())
    response = await fetch(site, b"/~alice/")
    # Traversal from a site mounted below a prefix: a forwarded request arrives with it in prepath.
    request_site = Site(ShowSession())
    head_response = await _fetch_with_prepath(request_site, [b"~alice"], b"/page")
    name, _, path, _ = set_cookie(head_response)
    assert (name, path) == (b"TWISTED_SESSION_~alice", b"/~alice/")
    name, _, path, _ = set_cookie(response)
    assert (name, path) == (b"TWISTED_SESSION", b"/")  # a child is not a site of its own
    odd = await _fetch_with_prepath(Site(ShowSession()), [b"a b=c;d"], b"/")
    name, _, path, _ = set_cookie(odd)
    assert (name, path) == (b"TWISTED_SESSION_a%20b%3Dc%3Bd", b"/a%20b%3Dc%3Bd/")


async def _fetch_with_prepath(site, prepath, target):
    from trioweb.testing import MemoryChannel, request_head

    head = request_head(b"GET", target, (), b"")
    channel = MemoryChannel(head)
    request = site.requestFactory(site, channel, head)
    request.prepath = list(prepath)
    await site.process(request)
    return channel.response


async def test_a_configured_cookie_name_and_same_site():
    site = Site(ShowSession())
    site.sessionCookieName = b"app"
    site.sessionCookieSameSite = "strict"
    name, _, _, attributes = set_cookie(await fetch(site, b"/"))
    assert name == b"app" and b"SameSite=Strict" in attributes
    name, _, _, _ = set_cookie(await fetch(site, b"/", secure=True))
    assert name == b"app_SECURE"


async def test_expire_from_a_page_ends_the_session_and_runs_callbacks():
    site = Site(ShowSession())
    _, uid, _, _ = set_cookie(await fetch(site, b"/"))
    ended = []
    site.getSession(uid).notifyOnExpire(lambda: ended.append(uid))
    response = await fetch(site, b"/expire", headers=[(b"cookie", b"TWISTED_SESSION=" + uid)])
    assert bytes(response.body) == b"Your session has been expired."
    assert ended == [uid] and uid not in site.sessions
    with pytest.raises(KeyError):
        site.getSession(uid)
    again = await fetch(site, b"/", headers=[(b"cookie", b"TWISTED_SESSION=" + uid)])
    assert set_cookie(again)[1] != uid


async def test_get_session_with_an_interface_gives_the_component():
    class Counter:
        value = 0

    class Page(Resource):
        isLeaf = True

        def render_GET(self, request):
            if request.getSession(Counter) is None:
                request.getSession().setComponent(Counter, Counter())
            counter = request.getSession(Counter)
            counter.value += 1
            return b"%d" % counter.value

    site = Site(Page())
    first = await fetch(site, b"/")
    uid = set_cookie(first)[1]
    second = await fetch(site, b"/", headers=[(b"cookie", b"TWISTED_SESSION=" + uid)])
    assert (bytes(first.body), bytes(second.body)) == (b"1", b"2")


def site_with_clock(max_sessions: int = 100, sweep_interval: float = 60.0) -> tuple[Site, Clock]:
    clock = Clock()
    site = Site(ShowSession())
    site.sessions = MemorySessionStore(max_sessions, sweep_interval=sweep_interval, clock=clock)
    return site, clock


def test_a_session_expires_after_its_timeout_idle_and_touch_delays_it():
    site, clock = site_with_clock()
    session = site.makeSession()
    assert session.sessionTimeout == 900 and len(session.uid) == 64
    ended = []
    session.notifyOnExpire(lambda: ended.append("expired"))
    clock.now += 899
    session.touch()
    clock.now += 899
    assert site.getSession(session.uid) is session  # touched 899 s ago: alive (and touched again)
    clock.now += 900
    with pytest.raises(KeyError):
        site.getSession(session.uid)
    assert ended == ["expired"] and len(site.sessions) == 0


def test_the_sweep_expires_idle_sessions_without_a_timer_and_keeps_live_ones():
    site, clock = site_with_clock(sweep_interval=60)
    idle = [site.makeSession() for _ in range(5)]
    ended = []
    for session in idle:
        session.notifyOnExpire(lambda s=session: ended.append(s.uid))
    clock.now += 800
    live = site.makeSession()
    clock.now += 200  # the first five are 1000 s idle, the last 200 s
    assert len(site.sessions) == 6  # nothing runs by itself
    site.makeSession()  # any access after the sweep interval sweeps
    assert sorted(ended) == sorted(s.uid for s in idle)
    assert live.uid in site.sessions and len(site.sessions) == 2


def test_a_shorter_timeout_of_the_guide_session_ending_example():
    class ShortSession(Session):
        sessionTimeout = 60

    site, clock = site_with_clock()
    site.sessionFactory = ShortSession
    session = site.makeSession()
    assert isinstance(session, ShortSession)
    clock.now += 61
    with pytest.raises(KeyError):
        site.getSession(session.uid)


def test_over_the_cap_the_least_recently_used_expire_first():
    site, clock = site_with_clock(max_sessions=3)
    a, b, c = (site.makeSession() for _ in range(3))
    clock.now += 1
    a.touch()  # b is now the least recently used
    ended = []
    b.notifyOnExpire(lambda: ended.append("b"))
    d = site.makeSession()
    assert ended == ["b"] and set(site.sessions) == {a.uid, c.uid, d.uid}


def test_a_million_cookieless_clients_keep_the_table_at_the_cap():
    site, _ = site_with_clock(max_sessions=1000)
    for _ in range(1_000_000):
        site.makeSession()
    assert len(site.sessions) == 1000


async def test_cookieless_requests_keep_the_table_at_the_cap():
    site = Site(ShowSession())
    site.max_sessions = 50
    for _ in range(500):
        assert (await fetch(site, b"/")).code == 200
    assert len(site.sessions) == 50


def test_a_failing_expire_callback_does_not_stop_the_others(caplog):
    site, _ = site_with_clock()
    session = site.makeSession()
    ran = []
    session.notifyOnExpire(lambda: 1 / 0)
    session.notifyOnExpire(lambda: ran.append(True))
    session.expire()
    session.expire()  # twice: nothing more happens
    assert ran == [True] and "notifyOnExpire callback" in caplog.text


def test_components_and_attributes():
    site, _ = site_with_clock()
    session = site.makeSession()
    marker = object()
    session.setComponent(int, marker)
    assert session.getComponent(int) is marker and session.getComponent(str, "none") == "none"
    session.removeComponent(marker)
    assert session.getComponent(int) is None
    session.cart = ["apple"]
    assert site.sessions[session.uid].cart == ["apple"]


def test_the_store_refuses_a_cap_below_one():
    with pytest.raises(ValueError):
        MemorySessionStore(0)


async def test_a_session_made_after_the_head_was_sent_is_logged(caplog):
    class Late(Resource):
        isLeaf = True

        async def render_GET(self, request):
            request.write(b"head sent")
            await request.drain()
            request.getSession()
            request.finish()

    response = await fetch(Site(Late()), b"/")
    assert response.code == 200 and response.header_list(b"set-cookie") == []
    assert "its cookie cannot reach the client" in caplog.text
