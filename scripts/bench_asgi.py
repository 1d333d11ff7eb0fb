"""ASGI "hello": trioweb --asgi vs hypercorn's trio worker vs uvicorn
(httptools, one worker), one core each, same run, access logs on.

    scripts/bench asgi [--duration SECONDS] [--connections N]

hypercorn and uvicorn come from .bench-venv-apps (made by scripts/bench),
never from the project's dependencies. uvicorn runs with the httptools
parser twice: on asyncio (the Python ceiling the issues compare with) and
on uvloop (a C event loop, for information).
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

from benchlib import APPS_BIN, UVICORN_LOOPS, app_bench_arguments, compare, free_port, trioweb_serving, uvicorn_command

HELLO = textwrap.dedent("""
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
""")


def main() -> None:
    options = app_bench_arguments()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "hello_asgi.py").write_text(HELLO)
        ports = [free_port() for _ in range(4)]
        servers = [
            trioweb_serving("--asgi", "hello_asgi:app", ports[0], tmp),
            ("hypercorn-trio", [str(APPS_BIN / "hypercorn"), "-k", "trio", "-w", "1", "-b", f"127.0.0.1:{ports[1]}",
                                "--access-logfile", f"{tmp}/hypercorn.log", "hello_asgi:app"], ports[1]),
            *((name, uvicorn_command(loop, port, "hello_asgi:app"), port)
              for (name, loop), port in zip(UVICORN_LOOPS, ports[2:], strict=True)),
        ]
        compare("ASGI hello", servers, reference="trioweb", duration=options.duration,
                connections=options.connections, cwd=tmp)


if __name__ == "__main__":
    main()
