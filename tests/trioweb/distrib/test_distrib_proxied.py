"""A front behind a trusted proxy: the personal server sees the client and
scheme the proxy named, and the front's JSON access log names the backend."""

from __future__ import annotations

import json

from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import account_with_home, start_personal
from trioweb.distrib import ResourceSubscription
from trioweb.distrib.userdir import UserDirectory
from trioweb.resource import Resource
from trioweb.server import TrustedProxies


async def test_the_forwarded_request_carries_what_the_trusted_proxy_said(start_site, nursery, tmp_path):
    path = str(tmp_path / "pb.sock")
    await start_personal(nursery, path, None)
    root = Resource()
    root.putChild(b"~alice", ResourceSubscription("unix", path))
    log = tmp_path / "access.log"
    front = await start_site(root, proxies=TrustedProxies("127.0.0.1"), logPath=str(log), logFormat="json")
    response = await front.request(get(b"/~alice/echo", host=b"example.com",
                                       extra=b"X-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\n"))
    assert response.status == 200
    assert response.body == b"url=https://example.com/~alice/echo client=192.0.2.9"
    front.server.site.flush_log()
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["client"] == "192.0.2.9" and record["backend"] == f"unix:{path}" and record["status"] == 200


async def test_the_user_directory_names_the_user_and_backend_in_the_json_log(start_site, nursery, tmp_path):
    alice, database = account_with_home(tmp_path)
    socket_path = f"{alice.pw_dir}/.trioweb-pb"
    await start_personal(nursery, socket_path, None)
    log = tmp_path / "access.log"
    front = await start_site(UserDirectory(database, min_uid=0), logPath=str(log), logFormat="json")
    assert (await front.request(get(b"/~alice/echo"))).status == 200
    assert (await front.request(get(b"/~nobody/"))).status == 404
    front.server.site.flush_log()
    found, missing = (json.loads(line) for line in log.read_text().splitlines())
    assert found["user"] == "alice" and found["backend"] == f"unix:{socket_path}"
    assert missing["user"] == "nobody" and "backend" not in missing and missing["status"] == 404
