"""The ``trioweb`` options that set the HTTP engine's limits (``trioweb.http.Limits``)."""

from __future__ import annotations

from typing import Any

import click

from trioweb.http import Limits


def limit_options(function: Any) -> Any:
    defaults = Limits()
    options = [
        click.option("--max-request-line", type=int, default=defaults.max_request_line, show_default=True,
                     help="Longest request target in bytes (414 beyond)."),
        click.option("--max-header-bytes", type=int, default=defaults.max_header_bytes, show_default=True,
                     help="Largest header block in bytes (431 beyond)."),
        click.option("--max-header-count", type=int, default=defaults.max_header_count, show_default=True,
                     help="Most header fields in a request (431 beyond)."),
        click.option("--max-body-size", type=int, default=defaults.max_body_size, show_default=True,
                     help="Default request body limit in bytes (413 beyond)."),
        click.option("--header-timeout", type=float, default=defaults.header_timeout, show_default=True,
                     help="Seconds a client has to send a whole request head (408)."),
        click.option("--body-timeout", type=float, default=defaults.body_timeout, show_default=True,
                     help="Seconds of silence allowed while a body is received (408)."),
        click.option("--min-body-rate", type=click.IntRange(min=0), default=defaults.min_body_rate,
                     show_default=True,
                     help="Bytes per second a request body must average after the body timeout's grace "
                          "(408 below; 0: no minimum)."),
        click.option("--keepalive-timeout", type=float, default=defaults.keepalive_timeout,
                     show_default=True, help="Seconds an idle keep-alive connection is kept."),
        click.option("--send-timeout", type=float, default=defaults.send_timeout, show_default=True,
                     help="Seconds a client may stop reading before it is dropped."),
        click.option("--max-connections", type=int, default=defaults.max_connections, show_default=True,
                     help="Open connections at most, TLS handshakes included (beyond: the longest idle "
                          "one is closed to make room, else 503)."),
        click.option("--max-connections-per-address", type=click.IntRange(min=0),
                     default=defaults.max_connections_per_address, show_default=True,
                     help="Open connections from one client IP address at most (503 beyond; 0: no cap; "
                          "behind a reverse proxy on TCP, every client has the proxy's address)."),
        click.option("--tls-handshake-timeout", type=float, default=defaults.tls_handshake_timeout,
                     show_default=True, help="Seconds a client has to complete a TLS handshake."),
        click.option("--drain-timeout", type=float, default=defaults.drain_timeout, show_default=True,
                     help="Seconds requests in flight get to finish when stopping."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def limits_from(options: dict[str, Any]) -> Limits:
    return Limits(**{name: options.pop(name) for name in Limits.__dataclass_fields__ if name in options
                     and name not in ("max_requests_per_connection",)})
