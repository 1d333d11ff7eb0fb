"""The page ``trioweb`` serves when no root was chosen: what to do next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioweb._version import __version__
from trioweb.resource import NoResource, Resource

if TYPE_CHECKING:
    from trioweb._request import Request

_PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>trioweb is running</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}
code{{background:#f3f3f3;padding:.1em .3em;border-radius:3px}}</style></head>
<body><h1>trioweb {__version__} is running</h1>
<p>This is the built-in page: no site was given to serve. Next steps:</p>
<ul>
<li>serve a directory (with <code>.rpy</code> scripts): <code>trioweb --path ~/site</code></li>
<li>serve an application: <code>trioweb --wsgi mymodule.app</code> (WSGI),
<code>trioweb --asgi mymodule.app</code> (ASGI), or a Resource class:
<code>trioweb --class mymodule.Root</code></li>
<li>run a Python configuration file (what <code>twistd -y</code> ran), which defines
<code>resource</code> or <code>site</code>: <code>trioweb --config site.py</code></li>
<li>listen elsewhere: <code>trioweb --listen tcp:8000:interface=127.0.0.1</code></li>
<li>all options: <code>trioweb --help</code></li>
</ul></body></html>
""".encode()


class WelcomePage(Resource):
    """The built-in page at ``/``; every other path is 404."""

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _PAGE

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self
        return NoResource()
