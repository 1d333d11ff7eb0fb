"""``DirectoryLister``: the HTML page shown for a directory without an index file.

The page is built from what the directory holds when it is requested:
directories first, then files, each sorted by name, with size, type and
modification time. Every name is HTML-escaped in text and percent-encoded
(with a ``./`` prefix) in links, and the response forbids scripts and
sniffing (``Content-Security-Policy``, ``X-Content-Type-Options``), so a
hostile file name cannot become markup. Hidden entries are left out: dotfiles,
names that are not UTF-8 (they could not be requested), broken symlinks,
symlinks that lead out of the served root (unless symlinks may leave it), and
anything that is not a regular file or a directory.

Reading a big directory blocks, so it happens in a worker thread. The
directory is opened with the same containment rules as files
(``trioweb._fs``): a directory that cannot be opened is a 404 (403 when
permission is denied).
"""

from __future__ import annotations

import os
import stat
import time
from html import escape
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, unquote_to_bytes

import trio

from trioweb._fs import is_within, open_beneath
from trioweb.resource import ForbiddenResource, NoResource, Resource
from trioweb.static._mimetypes import CONTENT_ENCODINGS, getTypeAndEncoding, loadMimeTypes

if TYPE_CHECKING:
    from trioweb._request import Request

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;background:#fafafa;
margin:0;padding:2rem 1rem}
main{max-width:60rem;margin:0 auto;background:#fff;border:1px solid #e3e3e3;border-radius:8px;
padding:1.25rem 1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.05)}
h1{font-size:1.25rem;font-weight:600;margin:0 0 1rem;word-break:break-all}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:600;color:#555;border-bottom:2px solid #e3e3e3;padding:.4rem .6rem}
td{padding:.35rem .6rem;border-bottom:1px solid #f0f0f0;vertical-align:top}
tr.even td{background:#fcfcfc}
td.size,th.size{text-align:right;white-space:nowrap}
td.type,td.modified{color:#666;white-space:nowrap}
a{color:#0a58ca;text-decoration:none;word-break:break-all}
a:hover{text-decoration:underline}
td.dir a{font-weight:600}
footer{margin-top:1rem;color:#888;font-size:.8rem}
"""

_CSP = b"default-src 'none'; style-src 'unsafe-inline'"


def formatFileSize(size: int) -> str:
    """A short human size, as Twisted writes it: ``0B``, ``123B``, ``4K``, ``8M``, ``1149G``."""
    if size < 1024:
        return f"{size}B"
    if size < 1024**2:
        return f"{size // 1024}K"
    if size < 1024**3:
        return f"{size // 1024**2}M"
    return f"{size // 1024**3}G"


class _Entry(NamedTuple):
    name: str
    is_dir: bool
    size: int
    mtime: float


class DirectoryLister(Resource):
    """Lists ``pathname`` (``dirs``: only these names) for GET and HEAD.

    ``root`` is the served tree the listing may not lead out of (by default
    the directory itself); ``follow_symlinks`` lifts that rule, as for
    ``static.File``.
    """

    def __init__(
        self,
        pathname: str,
        dirs: list[str] | None = None,
        contentTypes: dict[str, str] | None = None,
        contentEncodings: dict[str, str] | None = None,
        defaultType: str = "text/html",
        *,
        root: str | None = None,
        follow_symlinks: bool = False,
    ) -> None:
        super().__init__()
        self.path = os.path.abspath(pathname)
        self.dirs = dirs
        self.contentTypes = contentTypes if contentTypes is not None else loadMimeTypes()
        self.contentEncodings = contentEncodings if contentEncodings is not None else dict(CONTENT_ENCODINGS)
        self.defaultType = defaultType
        self.root = os.path.abspath(root) if root is not None else self.path
        self.follow_symlinks = follow_symlinks

    async def render_GET(self, request: Request) -> bytes:
        relative = os.path.relpath(self.path, self.root)  # noqa: ASYNC240  (two absolute paths: no I/O)
        try:
            fd, info = open_beneath(self.root, "" if relative == "." else relative,
                                    follow_symlinks=self.follow_symlinks)
        except PermissionError:
            return ForbiddenResource().render(request)
        except OSError:
            return NoResource("File not found.").render(request)
        try:
            if not stat.S_ISDIR(info.st_mode):
                return NoResource("File not found.").render(request)
            entries = await trio.to_thread.run_sync(self._entries, fd)
        finally:
            os.close(fd)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", _CSP)
        return self._page(request, entries)

    def _entries(self, fd: int) -> list[_Entry]:
        """What the directory open at ``fd`` shows (runs in a worker thread)."""
        real_root = os.path.realpath(self.root)
        here = os.readlink(f"/proc/self/fd/{fd}")
        wanted = set(self.dirs) if self.dirs is not None else None
        entries = []
        with os.scandir(fd) as scan:
            for item in scan:
                name = item.name
                if name.startswith(".") or (wanted is not None and name not in wanted):
                    continue
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    continue  # not UTF-8 on disk: no URL can name it
                try:
                    if item.is_symlink():
                        target = os.path.realpath(os.path.join(here, name))
                        if not self.follow_symlinks and not is_within(target, real_root):
                            continue
                        info = os.stat(target)
                    else:
                        info = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # broken link, or gone meanwhile
                if stat.S_ISDIR(info.st_mode):
                    entries.append(_Entry(name, True, 0, info.st_mtime))
                elif stat.S_ISREG(info.st_mode):
                    entries.append(_Entry(name, False, info.st_size, info.st_mtime))
        entries.sort(key=lambda e: (not e.is_dir, e.name.casefold(), e.name))
        return entries

    def _page(self, request: Request, entries: list[_Entry]) -> bytes:
        shown = unquote_to_bytes(request.path).decode("utf-8", "replace")
        title = escape(f"Directory listing for {shown}")
        rows = []
        if request.path.rstrip(b"/"):
            rows.append(("dir", "../", "Parent directory", "", "", ""))
        for entry in entries:
            href = "./" + quote(entry.name, safe="") + ("/" if entry.is_dir else "")
            if entry.is_dir:
                rows.append(("dir", href, entry.name + "/", "", "[Directory]", _when(entry.mtime)))
                continue
            ctype, encoding = getTypeAndEncoding(entry.name, self.contentTypes, self.contentEncodings,
                                                 self.defaultType)
            kind = f"[{ctype}]" + (f" [{encoding}]" if encoding else "")
            rows.append(("file", href, entry.name, formatFileSize(entry.size), kind, _when(entry.mtime)))
        body = "\n".join(
            f'<tr class="{"odd" if n % 2 == 0 else "even"}"><td class="{cls}"><a href="{escape(href)}">'
            f'{escape(label)}</a></td><td class="size">{size}</td><td class="type">{escape(kind)}</td>'
            f'<td class="modified">{when}</td></tr>'
            for n, (cls, href, label, size, kind, when) in enumerate(rows)
        )
        count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_STYLE}</style></head>\n"
            f"<body><main><h1>{title}</h1>\n<table><thead><tr><th>Name</th>"
            '<th class="size">Size</th><th>Type</th><th>Modified</th></tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table><footer>{count}</footer></main></body></html>\n"
        )
        return page.encode("utf-8")


def _when(mtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
