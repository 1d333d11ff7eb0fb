"""Signals and reloads: what ``trioweb`` does on SIGHUP, SIGUSR1 and the rest.

- SIGTERM, SIGINT, SIGQUIT: graceful stop (the caller's ``stop``).
- SIGHUP: ``Reloader.reload``: rebuild the Site from the options (and the
  config file, loaded afresh) with one function, ``build_site``; reload
  every TLS certificate; reopen the log files. All of it is prepared first
  and switched at once: new requests go to the new tree, requests in flight
  finish on the old one, no listener closes. If any part fails (a resource
  class that no longer imports, an unreadable key), nothing is switched and
  the error is logged: the old configuration keeps serving.
- SIGUSR1: reopen the log files (logrotate's ``postrotate``).
- SIGUSR2, SIGALRM, SIGIO, SIGPWR, SIGVTALRM, SIGPROF: logged and ignored,
  since by default each would kill the server without a word.

systemd hears of every step when it started us with ``NOTIFY_SOCKET``
(``READY=1``, ``RELOADING=1``, ``STOPPING=1``; see ``_systemd``).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import trio

from trioweb._accesslog import AccessLog
from trioweb.cli import _systemd
from trioweb.server import Site
from trioweb.tls import CertificateStore

log = logging.getLogger("trioweb")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
IGNORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGUSR2", "SIGALRM", "SIGIO", "SIGPWR", "SIGVTALRM", "SIGPROF")
    if hasattr(signal, name)
)
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1, *IGNORED_SIGNALS)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that ``reopen`` closes and opens again by its path."""

    def reopen(self) -> None:
        fresh = self._open()
        self.acquire()
        try:
            old, self.stream = self.stream, fresh
        finally:
            self.release()
        if old is not None:
            old.close()


class Reloader:
    """The Site being served and what SIGHUP and SIGUSR1 act on.

    ``build_site()`` makes a new Site from the configuration (without an
    access log: the reloader gives each Site the one it keeps open);
    ``switch(site)`` puts it in service. ``certificates`` are the TLS
    listeners' stores; ``error_logs`` the file handlers of the server log.
    """

    def __init__(
        self,
        build_site: Callable[[], Site],
        *,
        access_log: AccessLog | None = None,
        error_logs: list[ReopenableFileHandler] | None = None,
        certificates: list[CertificateStore] | None = None,
    ) -> None:
        self.build_site = build_site
        self.access_log = access_log
        self.error_logs = list(error_logs or [])
        self.certificates = list(certificates or [])
        self.switch: Callable[[Site], None] = lambda site: None
        self.draining = False  # a stop signal came: health checks answer 503
        self.site = self._with_log(build_site())

    def _with_log(self, site: Site) -> Site:
        if site.access_log is not None and site.access_log is not self.access_log:
            site.access_log.close()  # a config file's Site, built again, opened its log again: ours stays
        site.access_log = self.access_log
        return site

    def flush(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()

    def reopen_logs(self) -> bool:
        """Reopen the access log and the server log files; False (logged) if one failed."""
        ok = True
        if self.access_log is not None:
            try:
                self.access_log.reopen()
            except OSError as exc:
                log.error("cannot reopen the access log, still writing to the old file: %s", exc)
                ok = False
        for handler in self.error_logs:
            try:
                handler.reopen()
            except OSError as exc:
                log.error("cannot reopen %s, still writing to the old file: %s", handler.baseFilename, exc)
                ok = False
        return ok

    def reload(self) -> bool:
        """Rebuild the Site and the certificates, switch to them, reopen the
        logs; on any failure keep everything as it was and log why."""
        try:
            site = self.build_site()
            prepared = [(store, store.prepare()) for store in self.certificates]
        except Exception as exc:
            log.error("reload failed, still serving the previous configuration: %s", exc)
            log.debug("reload failure", exc_info=exc)
            return False
        self.flush()
        for store, contexts in prepared:
            store.install(contexts)
        self.site = self._with_log(site)
        self.switch(self.site)
        reopened = self.reopen_logs()
        log.info("reloaded")
        return reopened


async def handle_signals(signals: Any, reloader: Reloader, stop: Callable[[], None], grace: float = 0) -> None:
    """Act on the signals ``signals`` (a trio signal receiver) delivers until a stop signal.

    A stop signal marks the reloader draining at once (health checks answer
    503); with ``grace`` the server goes on serving that many seconds, so
    that load balancers see it and send no more, before it stops (a second
    stop signal cuts the grace short)."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum in STOP_SIGNALS:
            reloader.draining = True
            _systemd.notify("STOPPING=1")
            if grace > 0:
                log.info("got %s: health checks fail, stopping in %g s", name, grace)
                with trio.move_on_after(grace):
                    async for again in signals:
                        if again in STOP_SIGNALS:
                            break
            log.info("got %s: stopping", name)
            reloader.flush()
            stop()
            return
        if signum == signal.SIGHUP:
            log.info("got SIGHUP: reloading")
            _systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            reloader.reload()
            _systemd.notify("READY=1")
        elif signum == signal.SIGUSR1:
            log.info("got SIGUSR1: reopening the log files")
            reloader.reopen_logs()
        else:
            log.warning("got %s: ignored", name)
