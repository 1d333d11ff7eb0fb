"""Limits of one HTTP connection, with safe defaults (see docs/limits.md)."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the HTTP engine enforces; all are configurable.

    Sizes are in bytes and times in seconds.
    """

    max_request_line: int = 8 * KiB  # request target length → 414
    max_header_bytes: int = 16 * KiB  # header block → 431
    max_header_count: int = 100  # header fields → 431
    max_body_size: int = 1 * MiB  # default request body limit → 413
    header_timeout: float = 20.0  # whole request head, from its first byte → 408
    body_timeout: float = 20.0  # silence while a body is being received → 408
    # A body must come at this many bytes per second on average, after a grace
    # of body_timeout (Apache's mod_reqtimeout MinRate) → 408; 0: no minimum.
    min_body_rate: int = 500
    keepalive_timeout: float = 15.0  # idle between requests → close
    send_timeout: float = 60.0  # a client that stops reading → abort
    max_connections: int = 1024  # beyond: idle connections are closed to make room, else 503 and close
    max_connections_per_address: int = 64  # open connections from one client IP address; beyond: 503
    tls_handshake_timeout: float = 10.0  # a TLS handshake, from accept → close
    max_requests_per_connection: int = 1000  # then Connection: close
    drain_timeout: float = 30.0  # graceful stop: how long requests in flight may take
