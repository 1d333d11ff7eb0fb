"""The users map of a front (``parse_users_map``, ``RemoteUsers``) and the TLS
contexts it is served with, in memory; the processes are in
``tests/e2e/test_remote_personal.py``."""

from __future__ import annotations

import ssl

import pytest
import trustme

from trioweb.distrib import RemoteUsers, UsersMapError, parse_users_map
from trioweb.endpoints import SSLClientEndpoint, TCPClientEndpoint
from trioweb.tls import TLSError, client_context

PIN = "ab" * 32


def test_a_map_with_comments_and_blank_lines():
    users = parse_users_map(f"""
        # the users on host2
        carol ssl:host2.example.net:7001:sha256={PIN}   # pinned
        dave\tssl:host2.example.net:7002

        erin tcp:127.0.0.1:7003
    """, "users.map")
    assert users == {
        "carol": SSLClientEndpoint("host2.example.net", 7001, bytes.fromhex(PIN)),
        "dave": SSLClientEndpoint("host2.example.net", 7002),
        "erin": TCPClientEndpoint("127.0.0.1", 7003),
    }
    assert parse_users_map("# nobody yet\n\n", "users.map") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("carol", "line 1: expected 'NAME ENDPOINT'"),
    ("carol ssl:h:1 ssl:h:2", "line 1: expected 'NAME ENDPOINT'"),
    ("\n\nCarol ssl:h:1", "line 3: 'Carol' is not a user name"),
    ("../x ssl:h:1", "not a user name"),
    ("a" * 33 + " ssl:h:1", "not a user name"),
    ("carol ssl:h:1\ncarol ssl:h:2", "line 2: carol is in the map twice"),
    ("carol ssl:h", "no port"),
    ("carol ssl:h:99999", "out of range"),
    ("carol ssl:h:1:sha256=12", "64 hex digits"),
    ("carol ssl:h:1:verify=0", "unexpected verify=0"),
    ("carol unix:/home/carol/.trioweb-pb", "a remote personal server is ssl:HOST:PORT"),
    ("carol https://h:1", "unknown kind"),
])
def test_a_bad_line_rejects_the_whole_map(text, message):
    with pytest.raises(UsersMapError, match=message) as caught:
        parse_users_map(text, "/etc/trioweb/users.map")
    assert str(caught.value).startswith("/etc/trioweb/users.map, line ")


@pytest.fixture(scope="module")
def front_pair(tmp_path_factory):
    directory = tmp_path_factory.mktemp("front")
    leaf = trustme.CA().issue_cert("front.example.net")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "front.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "front.key"))
    trustme.CA().cert_pem.write_to_path(str(directory / "ca.pem"))
    return directory


def test_lines_are_checked_against_how_the_front_is_set_up(front_pair):
    pinned = client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"))
    verified = client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"),
                              ca=str(front_pair / "ca.pem"))
    users = parse_users_map(f"carol ssl:h:1:sha256={PIN}\ndave ssl:h:2\nerin tcp:h:3\n", "m")
    with pytest.raises(UsersMapError, match=r"erin is served over plain tcp:.*--insecure-tcp-backends"):
        RemoteUsers(users, pinned, verified).check("m")
    with pytest.raises(UsersMapError, match="dave is served over ssl:, which needs a sha256= pin or --backend-ca"):
        RemoteUsers(users, pinned, None, allow_tcp=True).check("m")
    with pytest.raises(UsersMapError, match="carol is served over ssl:, which needs a client certificate"):
        RemoteUsers(users, None, None, allow_tcp=True).check("m")
    remote = RemoteUsers(users, pinned, verified, allow_tcp=True)
    remote.check("m")
    assert remote.context_for(users["carol"]) is pinned and remote.context_for(users["dave"]) is verified
    assert remote.context_for(users["erin"]) is None


def test_client_contexts(front_pair):
    pinned = client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"))
    assert pinned.verify_mode == ssl.CERT_NONE and not pinned.check_hostname  # the pin is checked after the handshake
    verified = client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"),
                              ca=str(front_pair / "ca.pem"))
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    assert verified.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(TLSError, match=r"cannot read .*missing\.pem: no such file"):
        client_context(str(front_pair / "missing.pem"), str(front_pair / "front.key"))
    with pytest.raises(TLSError, match=r"cannot read .*nope\.pem"):
        client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"), ca=str(front_pair / "nope.pem"))
    with pytest.raises(TLSError, match="cannot load the certificates"):
        client_context(str(front_pair / "front.pem"), str(front_pair / "front.key"), ca=str(front_pair / "front.key"))
