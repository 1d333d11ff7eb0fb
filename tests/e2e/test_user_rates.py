"""`trioweb --user --max-user-rate 0.5`: each user's site gets a request every
2 s on average (bursts of 1), whichever URL form reaches it; beyond, 429 with
Retry-After; other users are not affected. (A low rate, so that a slow shared
machine cannot refill a bucket between two requests.) Real accounts, as root."""

from __future__ import annotations

import os
import time

import pytest

from tests.support.hosting import get, hosted

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create accounts and switch uids")

USERS = {"alice": ("Alice,,,", "personal"), "bob": ("Bob,,,", "public_html")}


@pytest.fixture(scope="module")
def hosting(install):
    with hosted(install, USERS, ("alice",), "--max-user-rate", "0.5", tag="rt") as hosting:
        yield hosting


def test_a_user_beyond_her_rate_gets_429_and_others_are_served(hosting):
    alice, bob = hosting.names["alice"], hosting.names["bob"]
    assert get(hosting, f"/~{alice}/whoami.rpy")[0] == 200
    status, headers, body = get(hosting, f"/users/{alice}/whoami.rpy")  # the same bucket
    assert status == 429 and headers["Retry-After"] in ("1", "2") and b"Too Many Requests" in body
    assert get(hosting, f"/~{bob}/")[0] == 200
    time.sleep(2.1)
    assert get(hosting, f"/~{alice}/whoami.rpy")[0] == 200


def test_unknown_names_are_limited_too_before_any_lookup(hosting):
    assert [get(hosting, "/~no-such-user/")[0] for _ in range(2)] == [404, 429]
