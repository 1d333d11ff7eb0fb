"""docs/porting.md: every trioweb name it gives exists, and every Twisted name
it leaves without one says why."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import trioweb.http

PORTING = Path(__file__).resolve().parent.parent / "docs" / "porting.md"
ROW = re.compile(r"^\| `(twisted\.[\w.]+)` \|\s*(.*?)\s*\|\s*(.*?)\s*\|$", re.MULTILINE)
ROWS = ROW.findall(PORTING.read_text())


def test_the_table_has_rows():
    assert len(ROWS) > 50


@pytest.mark.parametrize(("twisted", "ours", "notes"), ROWS, ids=[row[0] for row in ROWS])
def test_each_row_imports_or_says_why_not(twisted: str, ours: str, notes: str) -> None:
    if ours.startswith("not provided"):
        assert notes.strip(), f"{twisted} is not provided: the notes must say why"
        return
    name = re.fullmatch(r"`([\w.]+)`", ours)
    assert name, f"{twisted}: the trioweb column must be one `module.Name` or 'not provided': {ours!r}"
    module_name, _, attribute = name.group(1).rpartition(".")
    assert getattr(importlib.import_module(module_name), attribute) is not None


def test_every_status_constant_of_twisted_is_in_trioweb_http():
    """The table names two of them; Twisted has 44 (twisted.web._responses), all here with the same codes."""
    expected = {
        "SWITCHING": 101, "OK": 200, "CREATED": 201, "ACCEPTED": 202, "NON_AUTHORITATIVE_INFORMATION": 203,
        "NO_CONTENT": 204, "RESET_CONTENT": 205, "PARTIAL_CONTENT": 206, "MULTI_STATUS": 207,
        "MULTIPLE_CHOICE": 300, "MOVED_PERMANENTLY": 301, "FOUND": 302, "SEE_OTHER": 303, "NOT_MODIFIED": 304,
        "USE_PROXY": 305, "TEMPORARY_REDIRECT": 307, "PERMANENT_REDIRECT": 308, "BAD_REQUEST": 400,
        "UNAUTHORIZED": 401, "PAYMENT_REQUIRED": 402, "FORBIDDEN": 403, "NOT_FOUND": 404, "NOT_ALLOWED": 405,
        "NOT_ACCEPTABLE": 406, "PROXY_AUTH_REQUIRED": 407, "REQUEST_TIMEOUT": 408, "CONFLICT": 409, "GONE": 410,
        "LENGTH_REQUIRED": 411, "PRECONDITION_FAILED": 412, "REQUEST_ENTITY_TOO_LARGE": 413,
        "REQUEST_URI_TOO_LONG": 414, "UNSUPPORTED_MEDIA_TYPE": 415, "REQUESTED_RANGE_NOT_SATISFIABLE": 416,
        "EXPECTATION_FAILED": 417, "IM_A_TEAPOT": 418, "INTERNAL_SERVER_ERROR": 500, "NOT_IMPLEMENTED": 501,
        "BAD_GATEWAY": 502, "SERVICE_UNAVAILABLE": 503, "GATEWAY_TIMEOUT": 504, "HTTP_VERSION_NOT_SUPPORTED": 505,
        "INSUFFICIENT_STORAGE_SPACE": 507, "NOT_EXTENDED": 510,
    }
    assert {name: getattr(trioweb.http, name, None) for name in expected} == expected
    assert all(trioweb.http.RESPONSES[code] for code in expected.values())
