"""The ``trioweb`` option that chooses the ``Server`` token: ``--server-header``."""

from __future__ import annotations

from typing import Any

import click

from trioweb.server import version


def header_options(function: Any) -> Any:
    return click.option(
        "--server-header", "server_header", metavar="NAME|none", default=None,
        help="The Server field of every response: NAME, or 'none' to send none (nginx's server_tokens). "
             f"Default {version.decode()}. --add-header 'Server: NAME' does the same.")(function)


def server_header_from(options: dict[str, Any]) -> bytes:
    """The Server token the options ask for (empty for none)."""
    value = options.pop("server_header")
    if value is None:
        return version
    if value.strip().lower() == "none":
        return b""
    token = value.strip().encode("utf-8")
    if not token or any(c in token for c in b"\r\n\x00"):
        raise click.BadParameter(f"{value!r} cannot be a Server field", param_hint="--server-header")
    return token
