"""Static content: ``Data`` (bytes held in memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioweb.resource import Resource

if TYPE_CHECKING:
    from trioweb._request import Request


class Data(Resource):
    """Serves fixed bytes with a fixed content type, for GET and HEAD."""

    isLeaf = True

    def __init__(self, data: bytes, type: str | bytes) -> None:
        super().__init__()
        self.data = data
        self.type = type.encode("ascii") if isinstance(type, str) else type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.type)
        return self.data
