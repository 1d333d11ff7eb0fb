"""The access log line: its formats, and client-chosen fields escaped."""

from __future__ import annotations

import io
import json
import re
import time

import pytest

from trioweb._accesslog import AccessLog, _escaped
from trioweb.address import IPv4Address, IPv6Address, UNIXAddress
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


def test_remembered_escapes_give_the_same_lines_and_stay_bounded():
    log = AccessLog(io.StringIO(), owned=False, format="twisted")
    evil = LoggedRequest(uri=b'/"\n\xff', headers={b"user-agent": [b'a"\x00']})
    plain = LoggedRequest(uri=b"/same", headers={b"user-agent": [b"curl/8"]})
    for request in (evil, plain):
        first = log.line(request)
        assert log.line(request) == first  # the second time, from what was remembered
    assert '"GET /\\"\\x0a\\xff HTTP/1.1"' in log.line(evil) and log.line(evil).endswith('"a\\"\\x00"\n')
    for n in range(3000):  # many distinct paths: the memory is bounded
        log.line(LoggedRequest(uri=b"/%d" % n))
    assert len(_escaped) <= 1024


def test_a_unix_socket_client_has_no_address():
    request = LoggedRequest(client=UNIXAddress(None))
    assert AccessLog(io.StringIO(), owned=False, format="twisted").line(request).startswith('"-" - - [')


COMBINED = re.compile(r'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) '
                      r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"( \d+)?\n\Z')


def _request(**kwargs):
    request = LoggedRequest(uri=b"/a?b", headers={b"referer": [b"http://x/"], b"user-agent": [b'curl "8"']},
                            **kwargs)
    request.started_ns = time.monotonic_ns() - 2_500_000  # 2.5 ms ago
    return request


def test_combined_is_the_default_with_the_address_unquoted():
    match = COMBINED.match(AccessLog(io.StringIO(), owned=False).line(_request()))
    assert match is not None
    assert match.groups() == ("192.0.2.7", "GET /a?b HTTP/1.1", "200", "5", "http://x/", 'curl \\"8\\"', None)


def test_common_has_no_referrer_nor_agent_and_duration_is_appended_in_microseconds():
    common = AccessLog(io.StringIO(), owned=False, format="common").line(_request())
    assert re.match(r'^192\.0\.2\.7 - - \[[^]]+\] "GET /a\?b HTTP/1\.1" 200 5\n\Z', common)
    timed = AccessLog(io.StringIO(), owned=False, format="combined+duration").line(_request())
    assert COMBINED.match(timed) is not None
    assert 2500 <= int(timed.rsplit(" ", 1)[1]) < 10_000_000
    twisted = AccessLog(io.StringIO(), owned=False, format="twisted+duration").line(_request())
    assert twisted.startswith('"192.0.2.7" - - [') and int(twisted.rsplit(" ", 1)[1]) >= 2500


def test_json_is_one_object_per_line_with_every_field_and_what_a_resource_added():
    request = _request(client=IPv6Address("TCP", "2001:db8::1", 1))
    request.log_fields = {"user": "alice", "backend": "unix:/home/alice/.trioweb-pb"}
    line = AccessLog(io.StringIO(), owned=False, format="json").line(request)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record.pop("duration_us") >= 2500
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.pop("time"))
    assert record == {"client": "2001:db8::1", "method": "GET", "target": "/a?b", "protocol": "HTTP/1.1",
                      "status": 200, "bytes": 5, "user_agent": 'curl \\"8\\"', "referer": "http://x/",
                      "user": "alice", "backend": "unix:/home/alice/.trioweb-pb"}


def test_json_escapes_what_the_client_chose_and_names_no_unix_client():
    request = LoggedRequest(uri=b"/\n\xff", client=UNIXAddress(None), headers={b"user-agent": [b"\x1b[31m"]})
    record = json.loads(AccessLog(io.StringIO(), owned=False, format="json").line(request))
    assert record["client"] is None and record["target"] == "/\\x0a\\xff" and record["user_agent"] == "\\x1b[31m"
    assert record["referer"] is None


@pytest.mark.parametrize("name", ["apache", "json+duration", "combined+bytes", ""])
def test_an_unknown_format_is_refused_with_the_choices(name):
    with pytest.raises(ValueError, match="combined, common, twisted, json"):
        AccessLog(io.StringIO(), owned=False, format=name)


def test_reopen_writes_to_a_fresh_file_after_a_move(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog.open(str(path))
    log.write(_request())
    path.rename(tmp_path / "access.log.1")
    log.reopen()
    log.write(_request())
    log.close()
    assert len((tmp_path / "access.log.1").read_text().splitlines()) == 1
    assert len(path.read_text().splitlines()) == 1


def test_a_reopen_that_fails_keeps_the_old_file(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    log = AccessLog.open(str(directory / "access.log"))
    directory.rename(tmp_path / "moved")
    with pytest.raises(OSError):
        log.reopen()
    log.write(_request())
    log.close()
    assert len((tmp_path / "moved" / "access.log").read_text().splitlines()) == 1
