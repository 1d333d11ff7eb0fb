"""Resources: the tree a Site serves, with Twisted's names.

A ``Resource`` has children (``putChild``, ``getChild``) and renders itself
(``render`` dispatches to ``render_GET``, ``render_POST``...). A render
method may be a plain function returning ``bytes`` (or ``NOT_DONE_YET``, and
finish the request later), or an ``async def`` that returns ``bytes`` or
writes and finishes by itself.

Error pages here escape everything they echo: nothing a client sends ever
reaches a page as markup.
"""

from __future__ import annotations

import linecache
import traceback
from html import escape
from typing import TYPE_CHECKING, Any

from trioweb._encoding import RequestEncoder, ResponseEncoding

if TYPE_CHECKING:
    from trioweb.server import Request

__all__ = [
    "KNOWN_METHODS",
    "NOT_DONE_YET",
    "EncodingResourceWrapper",
    "ErrorPage",
    "ForbiddenResource",
    "NoResource",
    "Resource",
    "UnsupportedMethod",
    "error_page",
    "getChildForRequest",
    "render_error",
    "traceback_page",
]

NOT_DONE_YET = 1  # Twisted's value, so code comparing against the literal still works

# Methods we know the meaning of: a resource lacking one answers 405 with
# Allow; any other method is 501.
KNOWN_METHODS = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT"}
)


_RENDER_NAMES: dict[bytes, str] = {}  # b"GET" → "render_GET", remembered


class UnsupportedMethod(Exception):
    """Raised by ``render`` when the resource has no ``render_<METHOD>``."""

    def __init__(self, allowedMethods: tuple[bytes, ...] | list[bytes]) -> None:
        super().__init__(allowedMethods)
        self.allowedMethods = tuple(allowedMethods)


class Resource:
    """A node of the resource tree.

    Attributes a subclass may set:
    - ``isLeaf``: True to receive the rest of the path in ``request.postpath``
      instead of traversing children;
    - ``max_request_body``: the request body limit for this resource in bytes
      (None: the Site's);
    - ``stream_request_body``: True to read the body with
      ``request.body_stream()`` while rendering instead of having it in
      ``request.content`` beforehand.
    """

    isLeaf: bool = False
    max_request_body: int | None = None
    stream_request_body: bool = False

    def __init__(self) -> None:
        self.children: dict[bytes, Resource] = {}

    def putChild(self, path: bytes, child: Resource) -> None:
        if not isinstance(path, bytes):
            raise TypeError(f"Path segment must be bytes, but {path!r} is {type(path).__name__}")
        self.children[path] = child

    def getChild(self, path: bytes, request: Request) -> Resource:
        return NoResource()

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        child = self.children.get(path)
        if child is not None:
            return child
        return self.getChild(path, request)

    def getStaticEntity(self, name: bytes) -> Resource | None:
        return self.children.get(name)

    def listStaticNames(self) -> list[bytes]:
        return list(self.children)

    def render(self, request: Request) -> Any:
        method = request.method
        name = _RENDER_NAMES.get(method)
        if name is None:
            name = "render_" + method.decode("ascii")
            if len(_RENDER_NAMES) < 64:
                _RENDER_NAMES[method] = name
        handler = getattr(self, name, None)
        if handler is None:
            allowed = getattr(self, "allowedMethods", None) or _allowed_methods(self)
            raise UnsupportedMethod(allowed)
        return handler(request)

    def render_HEAD(self, request: Request) -> Any:
        return self.render_GET(request)  # type: ignore[attr-defined]


class EncodingResourceWrapper(Resource):
    """``original`` with its responses encoded by the first of ``encoders`` (factories
    with ``encoderForRequest(request)``) that gives an encoder for the request.

    As in Twisted, traversal goes on to ``original``'s children, which are not
    wrapped; ``wrap_children=True`` wraps whatever traversal reaches below it
    too (the ``--gzip`` option wraps a whole site so). How and when a body is
    encoded: ``trioweb._encoding``; ``GzipEncoderFactory`` is in ``trioweb.server``.
    """

    def __init__(self, original: Resource, encoders: list[Any], *, wrap_children: bool = False) -> None:
        super().__init__()
        self._original = original
        self._encoders = list(encoders)
        self._wrap_children = wrap_children
        self.isLeaf = original.isLeaf
        self.max_request_body = original.max_request_body
        self.stream_request_body = original.stream_request_body

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        child = self._original.getChildWithDefault(path, request)
        if self._wrap_children:
            return EncodingResourceWrapper(child, self._encoders, wrap_children=True)
        return child

    def putChild(self, path: bytes, child: Resource) -> None:
        self._original.putChild(path, child)

    def render(self, request: Request) -> Any:
        request.set_response_encoding(ResponseEncoding(self._encoder_for(request)))
        return self._original.render(request)

    def _encoder_for(self, request: Request) -> RequestEncoder | None:
        for factory in self._encoders:
            encoder = factory.encoderForRequest(request)
            if encoder is not None:
                return encoder
        return None


def _allowed_methods(resource: Resource) -> tuple[bytes, ...]:
    names = {name[7:].encode("ascii") for name in dir(resource) if name.startswith("render_")}
    if b"GET" not in names:
        names.discard(b"HEAD")  # the inherited render_HEAD needs a render_GET
    return tuple(sorted(names))


def getChildForRequest(resource: Resource, request: Request) -> Resource:
    """Walk ``request.postpath`` down from ``resource``, moving segments to ``prepath``."""
    while request.postpath and not resource.isLeaf:
        name = request.postpath.pop(0)
        request.prepath.append(name)
        resource = resource.getChildWithDefault(name, request)
    return resource


_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
    "<title>{code} - {brief}</title></head>"
    "<body><h1>{brief}</h1><p>{detail}</p></body></html>\n"
)


def error_page(code: int, brief: str, detail: str) -> bytes:
    """An HTML error page; ``brief`` and ``detail`` are escaped here."""
    return _PAGE.format(code=code, brief=escape(brief), detail=escape(detail)).encode("utf-8")


# Source lines shown around each frame's current line in a traceback page.
CONTEXT_LINES = 2

_TRACEBACK_STYLE = (
    "body{font-family:sans-serif}.error{background:#fdd;padding:.5em;font-weight:bold}"
    ".frame{margin:1em 0;border-left:3px solid #999;padding-left:.5em}.where{font-family:monospace}"
    "pre{margin:0;background:#eee}.current{background:#ffc;font-weight:bold}"
)


def traceback_page(exc: BaseException) -> bytes:
    """A page for debugging ``exc`` (``--display-tracebacks``): the error at the
    top and at the bottom, and between them every frame, most recent last,
    with its file, line, function, and source lines around the current one;
    chained exceptions (``raise ... from``, errors while handling another)
    come first, as Python prints them. Everything is escaped."""
    parts = []
    for link, error in _chain(exc):
        if link:
            parts.append(f"<p><i>{escape(link)}</i></p>")
        for frame in traceback.extract_tb(error.__traceback__):
            parts.append(_frame_html(frame))
        parts.append(f'<p class="error">{_error_line(error)}</p>')
    title = "web.Server Traceback (most recent call last)"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
        f"<style>{_TRACEBACK_STYLE}</style></head><body><h1>{title}</h1>"
        f'<p class="error">{_error_line(exc)}</p>{"".join(parts)}</body></html>\n'
    ).encode()


def _chain(exc: BaseException) -> list[tuple[str, BaseException]]:
    """``exc`` and the exceptions chained to it, oldest first, each with the
    sentence Python prints before it (empty for the oldest)."""
    chain: list[tuple[str, BaseException]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        older: BaseException | None = None
        sentence = ""
        if current.__cause__ is not None:
            sentence, older = "The above exception was the direct cause of the following exception:", current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            sentence, older = "During handling of the above exception, another exception occurred:", current.__context__
        chain.append((sentence, current))
        current = older
    chain.reverse()
    return chain


def _error_line(error: BaseException) -> str:
    return escape("".join(traceback.format_exception_only(error)).strip())


def _frame_html(frame: traceback.FrameSummary) -> str:
    lineno = frame.lineno or 0
    lines = []
    for number in range(max(lineno - CONTEXT_LINES, 1), lineno + CONTEXT_LINES + 1):
        text = linecache.getline(frame.filename, number)
        if not text:
            continue
        css = ' class="current"' if number == lineno else ""
        lines.append(f"<pre{css}>{number:5d}  {escape(text.rstrip())}</pre>")
    return (
        f'<div class="frame"><div class="where">{escape(frame.filename)}:{lineno} in '
        f"<b>{escape(frame.name)}</b></div>{''.join(lines)}</div>"
    )


def render_error(request: Request, code: int, brief: str, detail: str) -> bytes:
    """Answer ``request`` with an error: set ``code`` and an HTML content type,
    and return the page to render (``brief`` and ``detail`` escaped)."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    return error_page(code, brief, detail)


class ErrorPage(Resource):
    """Renders an error page for any method and any child path."""

    isLeaf = True

    def __init__(self, status: int, brief: str, detail: str) -> None:
        super().__init__()
        self.code = status
        self.brief = brief
        self.detail = detail

    def render(self, request: Request) -> bytes:
        return render_error(request, self.code, self.brief, self.detail)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self


class NoResource(ErrorPage):
    def __init__(self, message: str = "Sorry. No luck finding that resource.") -> None:
        super().__init__(404, "No Such Resource", message)


class ForbiddenResource(ErrorPage):
    def __init__(self, message: str = "Sorry, resource is forbidden.") -> None:
        super().__init__(403, "Forbidden Resource", message)
