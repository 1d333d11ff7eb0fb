"""The guide's "Session endings": a shorter timeout, and a callback when a session ends.

``ShortSession`` lasts ``sessionTimeout`` seconds idle (60 in the guide; a
second argument changes it, which the test uses). The Site makes its
sessions with ``sessionFactory``. ``notifyOnExpire`` callbacks run when the
session ends, by ``expire()``, by its timeout (found by the store's sweep or
on the next lookup) or by the cap on live sessions.

Run: python examples/core/session_endings.py [PORT] [TIMEOUT]
"""

import sys

import trio

from trioweb.resource import Resource
from trioweb.server import Session, Site, serve


class ShortSession(Session):
    sessionTimeout = 60


def expired(uid: bytes) -> None:
    print(f"Session {uid.decode()} has expired.", flush=True)


class ShowSession(Resource):
    isLeaf = True

    def render_GET(self, request):
        session = request.getSession()
        if not getattr(session, "watched", False):
            session.notifyOnExpire(lambda: expired(session.uid))
            session.watched = True
        return b"Your session id is: " + session.uid


async def main(port: int) -> None:
    site = Site(ShowSession())
    site.sessionFactory = ShortSession
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await serve(site, listeners)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        ShortSession.sessionTimeout = float(sys.argv[2])
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
