"""``RewriterResource``: rewrite the request path before traversal, as Twisted's.

A rule is a function ``rule(request)`` that edits ``request.postpath`` (and
``request.path``) in place. ``tildeToUsers`` maps ``/~alice/...`` to
``/users/alice/...``; ``alias(aliasPath, sourcePath)`` makes one path prefix
stand for another. Rules see decoded segments (bytes), as everything after
the parser does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from trioweb.resource import Resource

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["RewriterResource", "Rule", "alias", "tildeToUsers"]

Rule = Callable[["Request"], None]


class RewriterResource(Resource):
    """Applies each rule to the request, then continues traversal in ``orig``."""

    def __init__(self, orig: Resource, *rewriteRules: Rule) -> None:
        super().__init__()
        self.resource = orig
        self.rewriteRules = list(rewriteRules)

    def _rewrite(self, request: Request) -> None:
        for rule in self.rewriteRules:
            rule(request)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        # Put the segment back so the rules see the whole remaining path.
        request.postpath.insert(0, path)
        request.prepath.pop()
        self._rewrite(request)
        path = request.postpath.pop(0)
        request.prepath.append(path)
        return self.resource.getChildWithDefault(path, request)

    def render(self, request: Request) -> object:
        self._rewrite(request)
        return self.resource.render(request)


def tildeToUsers(request: Request) -> None:
    """``/~alice/x`` → ``/users/alice/x`` (``request.path`` is rewritten too)."""
    if request.postpath and request.postpath[0][:1] == b"~":
        request.postpath[:1] = [b"users", request.postpath[0][1:]]
        request.path = b"/" + b"/".join(request.prepath + request.postpath)


def alias(aliasPath: bytes, sourcePath: bytes) -> Rule:
    """A rule making the path ``aliasPath`` mean ``sourcePath`` (both ``b"/"``-separated)."""
    alias_segments = aliasPath.strip(b"/").split(b"/")
    source_segments = sourcePath.strip(b"/").split(b"/")
    count = len(alias_segments)

    def rewrite(request: Request) -> None:
        if request.postpath[:count] == alias_segments:
            request.postpath[:count] = source_segments
            request.path = b"/" + b"/".join(request.prepath + request.postpath)

    return rewrite
