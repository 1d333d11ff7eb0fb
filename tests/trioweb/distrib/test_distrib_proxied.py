"""A front behind a trusted proxy: the personal server sees the client and
scheme the proxy named, and the front's JSON access log names the backend."""

from __future__ import annotations

import json

from tests.support.rawhttp import get
from tests.trioweb.distrib.personal import start_personal
from trioweb.distrib import ResourceSubscription
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
