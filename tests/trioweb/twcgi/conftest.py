"""A real Site on loopback serving a CGI directory of scripts the test writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.rawhttp import RawConnection, Response
from trioweb.http import Limits
from trioweb.resource import Resource
from trioweb.twcgi import CGIDirectory, CGISettings


class CGISite:
    def __init__(self, directory: Path, start_site) -> None:
        self.directory = directory
        self.start_site = start_site
        self.running = None

    def script(self, name: str, text: str, mode: int = 0o755) -> Path:
        """Write a script into the CGI directory."""
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, mode)
        return path

    async def start(self, limits: Limits | None = None, **settings) -> CGISite:
        root = Resource()
        root.putChild(b"cgi-bin", CGIDirectory(str(self.directory), settings=CGISettings(**settings)))
        self.running = await self.start_site(root, limits=limits)
        return self

    @property
    def port(self) -> int:
        return self.running.port

    async def connect(self, timeout: float = 10.0) -> RawConnection:
        return await self.running.connect(timeout)

    async def request(self, data: bytes, *, timeout: float = 10.0, head: bool = False) -> Response:
        return await self.running.request(data, timeout=timeout, head=head)

    async def get(self, path: str, extra: bytes = b"") -> Response:
        return await self.request(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: cgi.test:8080\r\n" + extra
                                  + b"Connection: close\r\n\r\n")


@pytest.fixture
def cgi(tmp_path, start_site) -> CGISite:
    directory = tmp_path / "cgi-bin"
    directory.mkdir()
    return CGISite(directory, start_site)


def environment_of(body: bytes) -> dict[bytes, bytes]:
    """The ``NAME=value`` lines an ``env`` script printed."""
    return dict(line.split(b"=", 1) for line in body.splitlines() if b"=" in line)
