"""Test support: talk HTTP/1.1 to a real server over a real socket, byte by byte.

``RawConnection`` sends exactly the bytes a test gives and parses what comes
back with a deliberately simple, strict response reader, so that tests see
framing errors instead of a client library smoothing them over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio


@dataclass
class Response:
    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    raw_head: bytes = b""
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = self.header_list(name)
        return values[-1] if values else None

    def header_list(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class RawConnection:
    """One client connection; ``timeout`` bounds every read."""

    def __init__(self, stream: trio.abc.Stream, timeout: float = 5.0) -> None:
        self.stream = stream
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> RawConnection:
        return cls(await trio.open_tcp_stream(host, port), timeout)

    @classmethod
    async def open_unix(cls, path: str, timeout: float = 5.0) -> RawConnection:
        return cls(await trio.open_unix_socket(path), timeout)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        if self.eof:
            return False
        with trio.fail_after(self.timeout):
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def _read_until(self, marker: bytes) -> bytes:
        while True:
            index = self.buffer.find(marker)
            if index != -1:
                data = bytes(self.buffer[: index + len(marker)])
                del self.buffer[: index + len(marker)]
                return data
            if not await self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {bytes(self.buffer)!r}")

    async def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not await self._fill():
                raise EOFError(f"connection closed with {len(self.buffer)} of {count} bytes")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def read_response(self, *, head_request: bool = False) -> Response:
        """Read one response (1xx interim responses are returned too)."""
        raw = await self._read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        version, status, reason = [*lines[0].split(b" ", 2), b""][:3]
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"malformed header line {line!r}"
            headers.append((name, value.strip()))
        response = Response(version, int(status), reason, headers, raw_head=raw)
        code = response.status
        if head_request or code < 200 or code in (204, 304):
            return response
        if response.header(b"transfer-encoding") is not None:
            assert response.header(b"transfer-encoding").lower() == b"chunked"
            assert response.header(b"content-length") is None, "both CL and TE in a response"
            response.chunked = True
            body = bytearray()
            while True:
                size_line = await self._read_until(b"\r\n")
                size = int(size_line[:-2].split(b";")[0], 16)
                if size == 0:
                    while (line := await self._read_until(b"\r\n")) != b"\r\n":
                        name, _, value = line[:-2].partition(b":")
                        response.trailers.append((name, value.strip()))
                    break
                body += await self._read_exactly(size)
                assert await self._read_exactly(2) == b"\r\n"
            response.body = bytes(body)
        elif response.header(b"content-length") is not None:
            response.body = await self._read_exactly(int(response.header(b"content-length")))
        else:
            while await self._fill():
                pass
            response.body = bytes(self.buffer)
            self.buffer.clear()
        return response

    async def is_closed(self) -> bool:
        """True if the server closes the connection (with nothing more to read) within the timeout."""
        try:
            while await self._fill():
                pass
        except trio.TooSlowError:
            return False
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def get(path: bytes = b"/", host: bytes = b"a", extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"
