"""The ``trioweb`` option that compresses responses: ``--gzip``.

``--gzip`` wraps whatever root the other options chose (``--path``,
``--class``, ``--wsgi``...) in an ``EncodingResourceWrapper`` with a
``GzipEncoderFactory`` of the default settings, reaching every resource
below it (``wrap_children``). Files that are compressed already (a
``.gz`` variant chosen by ``static.File``, an image) are sent as they are.
"""

from __future__ import annotations

from typing import Any

import click

from trioweb.resource import EncodingResourceWrapper, Resource
from trioweb.server import GzipEncoderFactory


def gzip_options(function: Any) -> Any:
    """Add the options of this module to a click command."""
    return click.option(
        "--gzip", is_flag=True,
        help="Compress responses for clients that accept it (gzip; br too when the brotli package is "
             "installed), with Vary: Accept-Encoding. Beware BREACH: see docs/encoding.md.")(function)


def gzip_root(options: dict[str, Any], root: Resource) -> Resource:
    """``root``, wrapped when ``--gzip`` was given (removes the option from ``options``)."""
    if not options.pop("gzip"):
        return root
    return EncodingResourceWrapper(root, [GzipEncoderFactory()], wrap_children=True)
