"""Fixtures for the static-file tests: a directory tree, served on a real server or in memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.rawhttp import Response, get
from tests.trioweb.static.sizes import BIG_SIZE
from trioweb.server import Site
from trioweb.static import File
from trioweb.testing import fetch


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small site: files of a few types, a subdirectory, an index, a big file."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "withindex").mkdir()
    (root / "a.txt").write_bytes(b"0123456789abcdefghij")  # 20 bytes
    (root / "page.html").write_bytes(b"<h1>page</h1>")
    (root / "sub" / "inner.css").write_bytes(b"body{}")
    (root / "withindex" / "index.html").write_bytes(b"the index")
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "empty.txt").write_bytes(b"")
    return root


class StaticSite:
    """A running site plus one-line request helpers."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.port = running.port

    async def get(self, path: bytes | str, headers: bytes = b"", method: bytes = b"GET") -> Response:
        raw_path = path.encode("latin-1") if isinstance(path, str) else path
        request = get(raw_path, extra=headers)
        if method != b"GET":
            request = method + request[3:]
        return await self.running.request(request, head=method == b"HEAD")


class MemorySite:
    """The same helpers for a Site served in memory (``trioweb.testing``):
    for tests of what a resource answers, not of how it is framed."""

    def __init__(self, site: Site) -> None:
        self.site = site

    async def get(self, path: bytes | str, headers: bytes = b"", method: bytes = b"GET") -> Response:
        raw_path = path.encode("latin-1") if isinstance(path, str) else path
        pairs = [tuple(line.split(b":", 1)) for line in headers.split(b"\r\n") if line]
        answer = await fetch(self.site, raw_path, method=method,
                             headers=[(name.strip(), value.strip()) for name, value in pairs])
        return Response(b"HTTP/1.1", answer.code, answer.phrase, answer.headers, bytes(answer.body))


@pytest.fixture
def serve_in_memory() -> Callable[..., Any]:
    """``await serve_in_memory(root_or_path, **site_options)`` → a MemorySite."""

    async def start(root: Any, **options: Any) -> MemorySite:
        resource = root if not isinstance(root, (str, Path)) else File(str(root))
        return MemorySite(Site(resource, **options))

    return start


@pytest.fixture
def serve_file(start_site: Callable[..., Any]) -> Callable[..., Any]:
    """``await serve_file(root_or_path, **site_options)`` → a StaticSite."""

    async def start(root: Any, **options: Any) -> StaticSite:
        resource = root if not isinstance(root, (str, Path)) else File(str(root))
        return StaticSite(await start_site(resource, **options))

    return start
