"""The environment a CGI script sees (RFC 3875 §4.1), through a real Site on loopback."""

from __future__ import annotations

import pytest

from tests.trioweb.twcgi.conftest import environment_of

ENV_SCRIPT = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv\n"


async def test_rfc3875_variables_with_extra_path_and_query(cgi, monkeypatch):
    monkeypatch.setenv("TRIOWEB_TEST_SECRET", "s3cret")
    monkeypatch.setenv("TZ", "UTC")
    cgi.script("env.cgi", ENV_SCRIPT)
    await cgi.start()
    response = await cgi.get("/cgi-bin/env.cgi/extra/path?x=1",
                             extra=b"Proxy: http://evil:8080/\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n"
                                   b"Accept: a\r\nAccept: b\r\n")
    assert response.status == 200 and response.header(b"content-type") == b"text/plain"
    env = environment_of(response.body)
    script = str(cgi.directory / "env.cgi").encode()
    assert env[b"GATEWAY_INTERFACE"] == b"CGI/1.1"
    assert env[b"SERVER_SOFTWARE"].startswith(b"trioweb/")
    assert env[b"SERVER_NAME"] == b"cgi.test" and env[b"SERVER_PORT"] == b"8080"  # from the Host header
    assert env[b"SERVER_PROTOCOL"] == b"HTTP/1.1"
    assert env[b"REQUEST_METHOD"] == b"GET"
    assert env[b"SCRIPT_NAME"] == b"/cgi-bin/env.cgi"
    assert env[b"SCRIPT_FILENAME"] == script
    assert env[b"PATH_INFO"] == b"/extra/path"
    assert env[b"PATH_TRANSLATED"] == str(cgi.directory.parent).encode() + b"/extra/path"
    assert env[b"QUERY_STRING"] == b"x=1"
    assert env[b"REQUEST_URI"] == b"/cgi-bin/env.cgi/extra/path?x=1"
    assert env[b"REMOTE_ADDR"] == b"127.0.0.1" and int(env[b"REMOTE_PORT"]) > 0
    assert env[b"HTTP_HOST"] == b"cgi.test:8080"
    assert env[b"HTTP_X_FORWARDED_FOR"] == b"1.2.3.4"  # the underscore twin did not overwrite it
    assert env[b"HTTP_ACCEPT"] == b"a, b"
    assert env[b"TZ"] == b"UTC" and b"PATH" in env
    # httpoxy, underscore headers, and the server's own environment:
    for absent in (b"HTTP_PROXY", b"PROXY", b"TRIOWEB_TEST_SECRET", b"HTTPS", b"CONTENT_LENGTH", b"CONTENT_TYPE"):
        assert absent not in env
    assert b"6.6.6.6" not in response.body and b"evil" not in response.body and b"s3cret" not in response.body


async def test_query_string_is_always_set_and_path_info_absent_without_extra_path(cgi):
    cgi.script("env.cgi", ENV_SCRIPT)
    await cgi.start()
    env = environment_of((await cgi.get("/cgi-bin/env.cgi")).body)
    assert env[b"QUERY_STRING"] == b""
    assert b"PATH_INFO" not in env and b"PATH_TRANSLATED" not in env


async def test_body_variables_and_stdin(cgi):
    cgi.script("echo.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n"
                           "echo \"$CONTENT_LENGTH $CONTENT_TYPE $REQUEST_METHOD\"\ncat\n")
    await cgi.start()
    response = await cgi.request(b"POST /cgi-bin/echo.cgi HTTP/1.1\r\nHost: a\r\nContent-Type: text/x-test\r\n"
                                 b"Content-Length: 11\r\nConnection: close\r\n\r\nhello world")
    assert response.body == b"11 text/x-test POST\nhello world"


async def test_chunked_body_is_given_its_length(cgi):
    cgi.script("echo.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\necho \"$CONTENT_LENGTH\"\ncat\n")
    await cgi.start()
    response = await cgi.request(b"POST /cgi-bin/echo.cgi HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                 b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert response.body == b"11\nhello world"


async def test_https_is_on_for_tls_requests_only(cgi):
    # Plain HTTP here; HTTPS=on is tested with a TLS listener in tests/e2e/test_cgi_cli.py.
    cgi.script("env.cgi", ENV_SCRIPT)
    await cgi.start()
    assert b"HTTPS" not in environment_of((await cgi.get("/cgi-bin/env.cgi")).body)


async def test_isindex_query_becomes_arguments(cgi):
    cgi.script("args.cgi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nprintf '[%s]' \"$@\"\n")
    await cgi.start()
    assert (await cgi.get("/cgi-bin/args.cgi?word1+two%20words")).body == b"[word1][two words]"
    assert (await cgi.get("/cgi-bin/args.cgi?a=1+b")).body == b"[]"


@pytest.mark.parametrize("host, name, port", [
    (b"[::1]:9443", b"[::1]", b"9443"), (b"Example.COM", b"example.com", b"80")])
async def test_server_name_and_port_from_host(cgi, host, name, port):
    cgi.script("env.cgi", ENV_SCRIPT)
    await cgi.start()
    response = await cgi.request(b"GET /cgi-bin/env.cgi HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    env = environment_of(response.body)
    assert (env[b"SERVER_NAME"], env[b"SERVER_PORT"]) == (name, port)
