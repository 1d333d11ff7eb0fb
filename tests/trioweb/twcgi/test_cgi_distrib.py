"""CGI behind a front, in this process: a personal server publishing a CGI
directory (the request and its body cross the rpc connection both ways)."""

from __future__ import annotations

import hashlib
import os

from tests.trioweb.distrib.personal import front_to_personal
from tests.trioweb.twcgi.conftest import environment_of
from trioweb.twcgi import CGIDirectory

SUM = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\necho \"$CONTENT_LENGTH $(sha256sum | cut -d' ' -f1)\"\n"
ENV = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv\n"


async def behind_a_front(start_site, nursery, tmp_path):
    scripts = tmp_path / "cgi"
    scripts.mkdir()
    for name, text in (("sum.cgi", SUM), ("env.cgi", ENV)):
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)
    site, _ = await front_to_personal(start_site, nursery, tmp_path, root=CGIDirectory(str(scripts)))
    return site


async def test_script_name_is_the_public_url(start_site, nursery, tmp_path):
    site = await behind_a_front(start_site, nursery, tmp_path)
    response = await site.request(b"GET /~alice/env.cgi/more?q=1 HTTP/1.1\r\nHost: front.test\r\n"
                                  b"Proxy: evil\r\nConnection: close\r\n\r\n")
    env = environment_of(response.body)
    assert env[b"SCRIPT_NAME"] == b"/~alice/env.cgi" and env[b"PATH_INFO"] == b"/more"
    assert env[b"SERVER_NAME"] == b"front.test" and env[b"REMOTE_ADDR"] == b"127.0.0.1"
    assert b"PROXY" not in env and b"HTTP_PROXY" not in env


async def test_bodies_cross_the_front(start_site, nursery, tmp_path):
    site = await behind_a_front(start_site, nursery, tmp_path)
    body = os.urandom(300 * 1024)
    expected = f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode()
    sized = await site.request(b"POST /~alice/sum.cgi HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                               b"Connection: close\r\n\r\n" % len(body) + body)
    assert (sized.status, sized.body) == (200, expected)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                       for i in range(0, len(body), 65536))
    response = await site.request(b"POST /~alice/sum.cgi HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"Connection: close\r\n\r\n" + chunked + b"0\r\n\r\n")
    assert (response.status, response.body) == (200, expected)
