"""``StatusPage``: the front's view of its backends, for a person or for Prometheus.

``StatusPage(backends, allowed)`` answers GET (and HEAD) with one row per
backend the front has tried (``backends()``, say ``UserDirectory.backends``,
gives ``BackendStatus`` objects by name): its state, its last error and when,
its requests in flight, the requests it got, its 502, 503 and 504 answers,
the 50th and 99th percentiles of the time its recent responses took to start,
and the state of its circuit breaker.

``?format=prometheus`` gives the same figures in Prometheus's text
exposition format (version 0.0.4), written here: no dependency.

With ``workers`` (a callable giving ``WorkerStatus`` rows) it also shows
the serving process: its index among the ``--workers`` processes, its pid,
its open connections, the connections it accepted and the requests it read.
One request is answered by one process, so the row is that process's, and
the backends' rows are its view too (each worker keeps its own connections
to the personal servers).

Only clients ``allowed`` names (a ``TrustedProxies`` or its spec: addresses,
CIDR networks, ``unix``; loopback and UNIX-socket peers by default) see it;
to anyone else it is the ordinary 404, as if there were none. The client
address is the request's (``getClientAddress``): behind a proxy whose
forwarding headers the Site believes, the real client's. A proxy whose
headers are not believed makes every client look like the proxy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from trioweb.distrib._backend import BackendStatus
from trioweb.resource import NoResource, Resource
from trioweb.server import TrustedProxies

if TYPE_CHECKING:
    from trioweb._request import Request

__all__ = ["StatusPage", "WorkerStatus"]

LOOPBACK = "127.0.0.1,::1,unix"
PROMETHEUS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class WorkerStatus:
    """One serving process: its index of ``count``, pid, start (Unix time),
    open connections, connections accepted and requests read since."""

    index: int
    count: int
    pid: int
    started_at: float
    connections: int
    accepted: int
    requests: int


class StatusPage(Resource):
    """The backends' status as HTML, or Prometheus text; see the module docstring."""

    isLeaf = True

    def __init__(self, backends: Callable[[], dict[str, BackendStatus]],
                 allowed: TrustedProxies | str = LOOPBACK,
                 workers: Callable[[], list[WorkerStatus]] = lambda: []) -> None:
        super().__init__()
        self.backends = backends
        self.workers = workers
        self.allowed = TrustedProxies(allowed) if isinstance(allowed, str) else allowed

    def render_GET(self, request: Request) -> bytes:
        if not self.allowed.trusts(request.getClientAddress()):
            return NoResource().render(request)
        request.setHeader(b"cache-control", b"no-store")
        statuses = sorted(self.backends().items())
        if request.args.get(b"format") == [b"prometheus"]:
            request.setHeader(b"content-type", PROMETHEUS_TYPE)
            return (prometheus_text(statuses) + workers_prometheus(self.workers())).encode("utf-8")
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return html_page(statuses, self.workers()).encode("utf-8")

    render_HEAD = render_GET


def _when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _milliseconds(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


def workers_html(workers: list[WorkerStatus]) -> str:
    if not workers:
        return ""
    rows = "".join(
        f"<tr><td>{w.index} of {w.count}</td><td>{w.pid}</td><td>{_when(w.started_at)}</td>"
        f"<td>{w.connections}</td><td>{w.accepted}</td><td>{w.requests}</td></tr>" for w in workers)
    return ("<h2>Worker</h2><p>The process that answered this request.</p><table><tr><th>worker</th><th>pid</th>"
            "<th>started</th><th>open connections</th><th>connections accepted</th><th>requests</th></tr>"
            f"{rows}</table>")


def workers_prometheus(workers: list[WorkerStatus]) -> str:
    lines: list[str] = []
    for name, kind, help_text, value in (
        ("trioweb_worker_connections", "gauge", "Connections the answering worker has open.", "connections"),
        ("trioweb_worker_connections_total", "counter", "Connections the answering worker accepted.", "accepted"),
        ("trioweb_worker_requests_total", "counter", "Requests the answering worker read.", "requests"),
        ("trioweb_worker_start_time_seconds", "gauge", "When the answering worker started (Unix time).",
         "started_at"),
    ):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f'{name}{{worker="{w.index}",pid="{w.pid}"}} {getattr(w, value)}' for w in workers)
    return "".join(line + "\n" for line in lines)


def html_page(statuses: list[tuple[str, BackendStatus]], workers: list[WorkerStatus] | None = None) -> str:
    rows = "".join(
        f'<tr class="{escape(status.state)}"><td>{escape(name)}</td><td>{escape(status.state)}</td>'
        f"<td>{escape(status.circuit)}</td>"
        f"<td>{escape(status.last_error or '')}</td><td>{_when(status.last_error_at)}</td>"
        f"<td>{status.in_flight}</td><td>{status.requests}</td><td>{status.bad_gateway}</td>"
        f"<td>{status.overloaded}</td><td>{status.gateway_timeout}</td>"
        f"<td>{_milliseconds(status.latency(0.5))}</td><td>{_milliseconds(status.latency(0.99))}</td></tr>"
        for name, status in statuses
    ) or '<tr><td colspan="12">No backend has been tried since the front started.</td></tr>'
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Backends</title>"
        "<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em}td,th{padding:.2em .6em;text-align:left}"
        "tr.down{background:#fdd}tr.up{background:#efe}</style></head><body><h1>Backends</h1>"
        f"<p>{_when(time.time())}</p><table><tr><th>backend</th><th>state</th><th>circuit</th><th>last error</th>"
        "<th>when</th><th>in flight</th><th>requests</th><th>502</th><th>503</th><th>504</th><th>p50</th>"
        "<th>p99</th></tr>"
        f"{rows}</table>{workers_html(workers or [])}</body></html>\n"
    )


def _label(value: str) -> str:
    """A label value of the exposition format: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(statuses: list[tuple[str, BackendStatus]]) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    def by(name: str, extra: str = "") -> str:
        return f'{{backend="{_label(name)}"{extra}}}'

    family("trioweb_backend_up", "gauge", "1 if the front's connection to the backend is up, else 0.",
           [(by(name), int(status.state == "up")) for name, status in statuses])
    family("trioweb_backend_circuit_open", "gauge", "1 while the backend's circuit breaker answers 502 at once "
           "(open or half-open), else 0.",
           [(by(name), int(status.circuit != "closed")) for name, status in statuses])
    family("trioweb_backend_in_flight", "gauge", "Requests waiting for the backend's response head.",
           [(by(name), status.in_flight) for name, status in statuses])
    family("trioweb_backend_requests_total", "counter", "Requests forwarded to the backend, or refused for it.",
           [(by(name), status.requests) for name, status in statuses])
    family("trioweb_backend_errors_total", "counter", "Error answers given for the backend, by status code.",
           [(by(name, f',code="{code}"'), count) for name, status in statuses
            for code, count in (("502", status.bad_gateway), ("503", status.overloaded),
                                ("504", status.gateway_timeout))])
    family("trioweb_backend_last_error_timestamp_seconds", "gauge", "When the backend last failed (Unix time).",
           [(by(name), status.last_error_at) for name, status in statuses if status.last_error_at is not None])
    summary: list[tuple[str, float]] = []
    for name, status in statuses:
        for quantile in (0.5, 0.99):
            value = status.latency(quantile)
            if value is not None:
                summary.append((by(name, f',quantile="{quantile}"'), value))
    lines.append("# HELP trioweb_backend_response_head_seconds Time from forwarding a request to its response head.")
    lines.append("# TYPE trioweb_backend_response_head_seconds summary")
    lines.extend(f"trioweb_backend_response_head_seconds{labels} {value}" for labels, value in summary)
    for name, status in statuses:
        lines.append(f"trioweb_backend_response_head_seconds_sum{by(name)} {status.head_seconds_sum}")
        lines.append(f"trioweb_backend_response_head_seconds_count{by(name)} {status.heads}")
    return "\n".join(lines) + "\n"
