"""Sessions behind the ``--user`` front, with real accounts: each personal server
keeps its own under its own path, and the front's cookie confinement keeps
alice's session cookie from reaching bob (a real cookie jar, as a browser's)."""

from __future__ import annotations

import os
import re

import pytest
import requests

from tests.support.hosting import hosted

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

USERS = {"alice": ("Alice,,,", "personal"), "bob": ("Bob,,,", "personal")}


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, ("alice", "bob"), tag="s") as hosting:
        yield hosting


def visit(client: requests.Session, hosting, user: str, prefix: str = "~") -> tuple[str, str, int]:
    response = client.get(hosting.url(f"/{prefix}{hosting.names[user]}/session.rpy"), timeout=10)
    assert response.status_code == 200, response.text
    owner, uid, visits, _ = response.text.split()
    return owner, uid, int(visits)


def test_each_personal_server_keeps_its_own_session_under_its_own_path(hosting):
    alice, bob = hosting.names["alice"], hosting.names["bob"]
    browser = requests.Session()
    first = browser.get(hosting.url(f"/~{alice}/session.rpy"), timeout=10)
    cookie, copy = first.raw.headers.getlist("Set-Cookie")
    # Twisted's name joined with the site path; confined to alice's prefix by the personal server
    # itself (and kept so by the front), HttpOnly and SameSite; the front adds the copy for /users/.
    assert re.fullmatch(rf"TWISTED_SESSION_~{alice}=[0-9a-f]{{64}}; Path=/~{alice}/; HttpOnly; SameSite=Lax",
                        cookie), cookie
    assert copy == cookie.replace(f"Path=/~{alice}/", f"Path=/users/{alice}/")
    owner, alice_uid, visits = first.text.split()[:3]
    assert owner == alice and visits == "1"
    assert visit(browser, hosting, "alice") == (alice, alice_uid, 2)  # the jar sent it back
    # bob's server never sees alice's cookie: the jar keeps it to /~alice/, so bob makes his own.
    owner, bob_uid, visits = visit(browser, hosting, "bob")
    assert owner == bob and bob_uid != alice_uid and visits == 1
    assert visit(browser, hosting, "bob") == (bob, bob_uid, 2)
    assert visit(browser, hosting, "alice") == (alice, alice_uid, 3)
    jar = sorted((cookie.name, cookie.path) for cookie in browser.cookies)
    assert jar == sorted([(f"TWISTED_SESSION_~{alice}", f"/~{alice}/"), (f"TWISTED_SESSION_~{alice}", f"/users/{alice}/"),
                          (f"TWISTED_SESSION_~{bob}", f"/~{bob}/"), (f"TWISTED_SESSION_~{bob}", f"/users/{bob}/")])


def test_alices_cookie_sent_to_bob_by_hand_is_not_bobs_session(hosting):
    alice, bob = hosting.names["alice"], hosting.names["bob"]
    browser = requests.Session()
    _, alice_uid, _ = visit(browser, hosting, "alice")
    # A client that sends alice's cookie to bob anyway (not a browser): bob's server has no such session.
    forged = requests.get(hosting.url(f"/~{bob}/session.rpy"), timeout=10,
                          headers={"Cookie": f"TWISTED_SESSION_~{alice}={alice_uid}; "
                                             f"TWISTED_SESSION_~{bob}={alice_uid}"})
    owner, uid, visits, _ = forged.text.split()
    assert owner == bob and uid != alice_uid and visits == "1"


def test_through_the_users_prefix_the_site_keeps_a_session_of_its_own(hosting):
    alice = hosting.names["alice"]
    browser = requests.Session()
    _, uid, _ = visit(browser, hosting, "alice")
    # Through /users/alice/ the jar sends the copy the front made; the personal server names its
    # cookie by the path it was reached under, so that copy is not the name it reads there.
    owner, users_uid, visits = visit(browser, hosting, "alice", prefix="users/")
    assert owner == alice and visits == 1
    assert visit(browser, hosting, "alice", prefix="users/") == (alice, users_uid, 2)
    assert visit(browser, hosting, "alice") == (alice, uid, 2)


def test_the_front_refuses_a_personal_server_setting_the_fronts_session_cookie(hosting):
    # The front's own cookie names are reserved: a personal site cannot set TWISTED_SESSION for the origin.
    site = hosting.home("alice") / "site"
    (site / "steal.rpy").write_text(
        "from trioweb.resource import Resource\n"
        "class Steal(Resource):\n"
        "    isLeaf = True\n"
        "    def render_GET(self, request):\n"
        "        request.addCookie(b'TWISTED_SESSION', b'x' * 64, path=b'/')\n"
        "        return b'set'\n"
        "resource = Steal()\n")
    account = hosting.account("alice")
    os.chown(site / "steal.rpy", account.pw_uid, account.pw_gid)
    response = requests.get(hosting.url(f"/~{hosting.names['alice']}/steal.rpy"), timeout=10)
    assert response.status_code == 502 and "Set-Cookie" not in response.headers
