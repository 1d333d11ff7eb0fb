"""Redirects, with Twisted's names (``twisted.web.util``): ``redirectTo`` and ``Redirect``.

Every redirect answers with a short HTML page that links to the new place,
for clients that do not follow ``Location``; the URL is escaped there, so a
URL carrying markup cannot inject any.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from trioweb.resource import Resource

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["Redirect", "redirectTo", "redirect_to_slash"]


def redirectTo(URL: bytes, request: Request) -> bytes:
    """Redirect ``request`` to ``URL`` (302) and return the page to render."""
    request.redirect(URL)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    link = escape(URL.decode("latin-1"), quote=True)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Moved</title>'
        f'<meta http-equiv="refresh" content="0;URL={link}"></head>'
        f'<body><a href="{link}">click here</a></body></html>\n'
    ).encode("latin-1")


def redirect_to_slash(request: Request) -> bytes:
    """Redirect to the URL of the resource ``request`` reached, with a slash
    added and the query kept: what a directory (or a user's site) asked for
    without its trailing slash answers, so that relative links on it work.

    The URL is absolute (``prePathURL``), so the ``Location`` can never start
    with ``//``, which a client would take for another host.
    """
    query = request.uri.partition(b"?")[2]
    return redirectTo(request.prePathURL() + b"/" + (b"?" + query if query else b""), request)


class Redirect(Resource):
    """A leaf that redirects every request to ``url``."""

    isLeaf = True

    def __init__(self, url: bytes) -> None:
        super().__init__()
        self.url = url

    def render(self, request: Request) -> bytes:
        return redirectTo(self.url, request)
