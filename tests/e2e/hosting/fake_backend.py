"""A hostile "personal server" for the tests: serves a UNIX socket and misbehaves.

    python fake_backend.py PATH garbage|oversized|crlf|hang
"""

import os
import socket
import struct
import sys

import trio


async def garbage(stream):
    await stream.send_all(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff" + b"HTTP/1.1 200 OK\r\n\r\n")


async def oversized(stream):
    await stream.send_all(struct.pack(">I", 0xFFFFFFF0) + b"\x91" * 64)


async def hang(stream):
    await trio.sleep(3600)


async def crlf(stream):
    """Speak rpc properly (the real publisher class), but answer with an injected header."""
    import rpc

    class Evil(rpc.Referenceable):
        async def remote_request(self, message, body):
            return {"status": 200, "reason": None, "headers": [[b"X-A", b"v\r\nSet-Cookie: evil=1"]],
                    "length": 2, "body": b"ok"}

    async with rpc.Broker(stream, Evil()) as broker:
        await broker.wait_closed()


async def main(path, behaviour):
    if os.path.lexists(path):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX)
    await sock.bind(path)
    os.chmod(path, 0o666)
    sock.listen(16)
    handler = {"garbage": garbage, "oversized": oversized, "hang": hang, "crlf": crlf}[behaviour]

    async def serve_one(stream):
        try:
            await handler(stream)
        except Exception:
            pass
        await trio.sleep(1)
        await stream.aclose()

    print("ready", flush=True)
    await trio.serve_listeners(serve_one, [trio.SocketListener(sock)])


trio.run(main, sys.argv[1], sys.argv[2])
