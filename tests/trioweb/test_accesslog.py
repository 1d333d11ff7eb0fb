"""The access log line: its formats, and client-chosen fields escaped."""

from __future__ import annotations

import io
import re

from trioweb._accesslog import AccessLog
from trioweb.address import IPv4Address, UNIXAddress
from trioweb.http._headers import Headers


class LoggedRequest:
    def __init__(self, method=b"GET", uri=b"/", proto=b"HTTP/1.1", headers=None, client=None,
                 code=200, sent=5):
        self.method, self.uri, self.clientproto = method, uri, proto
        self.requestHeaders = Headers.from_trusted_map(headers or {})
        self.code, self.sentLength = code, sent
        self._client = client or IPv4Address("TCP", "192.0.2.7", 4242)

    def getClientAddress(self):
        return self._client


LINE = re.compile(r'^"([^"]*)" - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) '
                  r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"\n\Z')


def test_an_ordinary_request_is_logged_as_is():
    request = LoggedRequest(uri=b"/a/b?c=d", headers={b"referer": [b"http://x/"], b"user-agent": [b"curl/8"]})
    match = LINE.match(AccessLog(io.StringIO(), owned=False, format="twisted").line(request))
    assert match is not None
    assert match.groups() == ("192.0.2.7", "GET /a/b?c=d HTTP/1.1", "200", "5", "http://x/", "curl/8")


def test_what_the_client_chose_cannot_forge_a_line_or_a_field():
    request = LoggedRequest(
        method=b"GET",
        uri=b'/x" 200 1 "-" "-"\n"1.2.3.4" - - [evil] "GET /\x1b[31m\xc3\xa9\\',
        headers={b"referer": [b'a"b\r\nc'], b"user-agent": [b"\x00\x7f\xff"]},
        sent=0,
    )
    line = AccessLog(io.StringIO(), owned=False, format="twisted").line(request)
    assert line.count("\n") == 1 and line.isascii()  # one line: only the final newline
    assert line[:-1].isprintable()
    match = LINE.match(line)
    assert match is not None
    assert match.group(2) == ('GET /x\\" 200 1 \\"-\\" \\"-\\"\\x0a\\"1.2.3.4\\" - - [evil] \\"GET '
                              '/\\x1b[31m\\xc3\\xa9\\\\ HTTP/1.1')
    assert match.group(4) == "-"  # nothing sent
    assert match.group(5) == 'a\\"b\\x0d\\x0ac' and match.group(6) == "\\x00\\x7f\\xff"


def test_a_unix_socket_client_has_no_address():
    request = LoggedRequest(client=UNIXAddress(None))
    assert AccessLog(io.StringIO(), owned=False, format="twisted").line(request).startswith('"-" - - [')
