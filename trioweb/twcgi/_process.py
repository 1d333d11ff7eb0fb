"""One CGI process, from its start to its reaping.

Theory of operation
-------------------
``run_script`` answers a request with a script, in the request's task:

- the script starts (``ScriptProcess``) in a session and process group of
  its own, with its directory as working directory, stdin, stdout and
  stderr on pipes, and a pidfd that tells when it exits;
- the body goes to stdin as it arrives (``_feed_stdin``; a body whose size is
  not declared, a chunked one, is read to a spool file first so that
  ``CONTENT_LENGTH`` can be given); stdin is closed at its end. A script that
  does not read its stdin is not an error;
- stderr is logged line by line (``StderrLog``: long lines cut, a rate
  limit shared by the server's scripts, a count of what it left out);
- stdout is read into ``OutputParser`` until the header block is complete,
  within ``timeout`` seconds (else 504). Then the status and fields are set
  and the body is relayed: what the pipe holds is taken without waiting,
  and sent to the client (``drain``) before waiting for more, or once 1 MiB
  was taken: a slow client slows the script, and memory stays bounded.
  Each wait for output has ``timeout`` seconds; a script silent longer has
  its response aborted;
- when the script exits, what is left of its group gets SIGTERM, then
  SIGKILL after ``kill_grace`` seconds (``_end_group_with_leader``): a
  background process holding stdout would otherwise hold the response
  open. A CGI's processes end with its response; a script that must leave
  one behind starts it in a session of its own;
- the end: once stdout is closed, the response is finished; the script
  then has ``timeout`` seconds to exit. Whatever happens (a normal end, a
  fault, the client going away, the server stopping), ``end_process`` runs
  shielded: SIGTERM to the whole group if the script still runs, SIGKILL
  after ``kill_grace`` seconds, SIGKILL to whatever is left of the group,
  and the script is reaped. The group is only signalled before the script
  is reaped (a zombie keeps its group id from being reused). No zombie, no
  orphan.

Faults before anything was sent are answered with an error page (500 for
output that ends before the header block is complete, 502 for a malformed
header block, 504 for a script that does not answer); after the head was
sent, the connection is aborted so that a truncated body never passes for
a complete one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

import trio

from trioweb.http import (
    BodyTimeout,
    BodyTooLarge,
    ConnectionLost,
    Headers,
    ParseError,
    status_has_no_body,
    status_phrase,
)
from trioweb.resource import render_error
from trioweb.twcgi._environ import DEFAULT_PASS_ENV, Environment
from trioweb.twcgi._output import MalformedOutput, OutputParser, ScriptHead

if TYPE_CHECKING:
    from trioweb._request import Request

log = logging.getLogger("trioweb.twcgi")

READ_SIZE = 64 * 1024
# The body is read from stdout in pieces up to this size, from a pipe made
# this large: fewer, larger reads and sends for big outputs (Linux's default
# pipe holds 64 KiB).
BODY_READ_SIZE = 1024 * 1024
SPOOL_SIZE = 1024 * 1024


class ProcessSlots:
    """How many CGI processes may run at once in this server, and how many do."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1


class StderrLog:
    """Logs scripts' stderr lines, at most ``rate`` a second (bursts of
    ``burst``) across all scripts sharing it, each cut to ``max_line`` bytes;
    the lines left out are counted and the count logged with the next line."""

    def __init__(self, rate: float = 20.0, burst: int = 100, max_line: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_line = max_line
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.suppressed = 0

    def line(self, uri: str, text: bytes) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        if self.suppressed:
            log.warning("%d lines of CGI stderr were left out (rate limit)", self.suppressed)
            self.suppressed = 0
        log.warning("CGI %s stderr: %s", uri,
                    text[: self.max_line].decode("utf-8", "replace"))


@dataclass(frozen=True)
class CGISettings:
    """How this server runs CGI scripts.

    ``timeout``: seconds a script has to send its header block (504 beyond),
    and then between two pieces of output, and to exit once its output ended.
    ``max_processes``: scripts running at once (503 beyond). ``pass_env``: the
    names of the server's environment variables a script sees.
    ``kill_grace``: seconds between SIGTERM and SIGKILL.
    """

    timeout: float = 60.0
    max_processes: int = 64
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    kill_grace: float = 2.0
    slots: ProcessSlots = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    stderr: StderrLog = field(default_factory=StderrLog, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.slots is None:
            object.__setattr__(self, "slots", ProcessSlots(self.max_processes))


class ScriptProcess:
    """A started script: its pid, a pidfd (readable once it exits, before it
    is reaped) and the server's ends of its pipes.

    Started with ``subprocess.Popen`` in the event loop's thread (a vfork and
    an exec: well under a millisecond), not in a worker thread as
    ``trio.run_process`` does: the handoff to a thread and back costs more
    than the start itself when scripts are short.
    """

    def __init__(self, argv: Sequence[str], env: Environment, cwd: str) -> None:
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        try:
            self._popen = subprocess.Popen(  # bytes in env are fine on POSIX
                list(argv), stdin=stdin_read, stdout=stdout_write, stderr=stderr_write, env=cast(Any, env),
                cwd=cwd, start_new_session=True)
        except BaseException:
            for fd in (stdin_write, stdout_read, stderr_read):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_read, stdout_write, stderr_write):
                os.close(fd)
        self.pid = self._popen.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.stdin = trio.lowlevel.FdStream(stdin_write)
        self.stdout = trio.lowlevel.FdStream(stdout_read)
        self.stderr = trio.lowlevel.FdStream(stderr_read)
        self.reaped = False

    def reap(self) -> None:
        """Collect the exit status of the script, which has exited (its pidfd is readable)."""
        self._popen.wait()
        self.reaped = True

    async def aclose(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            await stream.aclose()
        os.close(self.pidfd)


class ScriptFailed(Exception):
    """The script failed after its response began (logged): the Site aborts the connection."""


class _Exchange:
    """What the tasks of one script's exchange tell each other."""

    def __init__(self, request: Request, process: ScriptProcess, settings: CGISettings) -> None:
        self.request = request
        self.process = process
        self.settings = settings
        self.uri = request.uri.decode("ascii", "replace")
        self.failure: str | None = None  # why the response cannot be completed
        self.feeder = trio.CancelScope()  # the task writing the body to stdin
        self.everything = trio.CancelScope()  # the whole exchange (the nursery's scope)
        self.leader_watch = trio.CancelScope()  # the task ending the group when the script exits


async def run_script(request: Request, argv: Sequence[str], env: Environment, cwd: str,
                     settings: CGISettings, *, nph: bool, body: IO[bytes] | None) -> None:
    """Answer ``request`` with the script ``argv`` (see the theory of operation).

    ``body``: the spooled request body, or None to stream it from the request.
    """
    try:
        process = ScriptProcess(argv, env, cwd)
    except OSError as exc:
        log.error("CGI %s: cannot run %s: %s", request.uri.decode("ascii", "replace"), argv[0], exc)
        _answer_error(request, 500, "CGI Script Error", "The script could not be started.")
        return
    exchange = _Exchange(request, process, settings)
    try:
        async with trio.open_nursery() as nursery:
            exchange.everything = nursery.cancel_scope
            nursery.start_soon(_feed_stdin, exchange, body)
            nursery.start_soon(_log_stderr, exchange)
            nursery.start_soon(_end_group_with_leader, exchange)
            try:
                ended = await _relay_stdout(exchange, nph)
                await request.drain()
            except ConnectionLost:
                nursery.cancel_scope.cancel()  # the client went away: the script is stopped below
                return
            except ScriptFailed as exc:
                exchange.failure = str(exc)
                ended = False
            exchange.feeder.cancel()  # a body the script did not read is not waited for
            exchange.leader_watch.cancel()
            with trio.CancelScope(shield=True):
                await end_process(process, settings.timeout if ended else 0, settings.kill_grace)
            # stderr ends with the group; a process that left it keeps it no longer than this.
            nursery.cancel_scope.deadline = trio.current_time() + settings.kill_grace
    finally:
        with trio.CancelScope(shield=True):
            await end_process(process, 0, settings.kill_grace)
            await process.aclose()
    if exchange.failure is not None and not request.finished:
        raise ScriptFailed(f"CGI {exchange.uri}: {exchange.failure}")


async def _relay_stdout(exchange: _Exchange, nph: bool) -> bool:
    """Answer with what the script prints; True if its output came to its end."""
    request, settings, uri = exchange.request, exchange.settings, exchange.uri
    stdout = exchange.process.stdout
    parser = OutputParser(nph=nph)
    head: ScriptHead | None = None
    with trio.move_on_after(settings.timeout) as waiting:
        try:
            while head is None:
                piece = bytes(await stdout.receive_some(READ_SIZE))
                if not piece:
                    break
                head = parser.feed(piece)
        except MalformedOutput as exc:
            log.error("CGI %s: malformed header block: %s", uri, exc)
            _answer_error(request, 502, "Bad Gateway", "The script sent a malformed response.")
            return False
    if head is None:
        if exchange.failure is not None:
            return False
        if not waiting.cancelled_caught:
            log.error("CGI %s: premature end of script headers: %r", uri, parser.unfinished()[:200])
            _answer_error(request, 500, "CGI Script Error", "Premature end of script headers.")
            return True
        log.error("CGI %s: no response within %g s", uri, settings.timeout)
        _answer_error(request, 504, "Gateway Timeout", "The script did not answer in time.")
        return False
    request.defaultContentType = None  # the script decides whether there is a Content-Type
    request.setResponseCode(head.code, head.reason)
    for name, value in head.headers:
        request.responseHeaders.add_checked(name, value)
    remaining = head.content_length
    if remaining is not None:
        request.responseHeaders.set_checked(b"content-length", str(remaining).encode("ascii"))
        if request.method == b"HEAD" or status_has_no_body(head.code):
            remaining = None  # no body goes out: what the script prints is not held to the length
    fd = stdout.fileno()  # non-blocking (FdStream made it so): read directly, see below
    _enlarge_pipe(fd)
    piece = parser.rest
    unsent = 0  # written since the last drain
    # A big output is read into one 1 MiB buffer, reused: a fresh 1 MiB
    # allocation per read is mapped and faulted in anew each time, which costs
    # more than the copy out. Small outputs never need it.
    view: memoryview | None = None
    while True:
        if piece:
            if remaining is not None:
                if len(piece) > remaining:
                    raise ScriptFailed("more output than its Content-Length")
                remaining -= len(piece)
            request.write(piece)
            unsent += len(piece)
            if unsent >= BODY_READ_SIZE:
                await request.drain()
                unsent = 0
        # What the pipe holds is taken without waiting; what was taken goes
        # to the client before waiting for more. A script writing small
        # blocks thus gets them sent in large pieces while it keeps writing,
        # and a script that pauses gets its output sent at once.
        try:
            if view is None:
                piece = os.read(fd, READ_SIZE)
                if len(piece) == READ_SIZE:
                    view = memoryview(bytearray(BODY_READ_SIZE))
            else:
                piece = bytes(view[: os.readv(fd, (view,))])
        except BlockingIOError:
            piece = b""
            if unsent or not request.startedWriting:
                if not request.startedWriting:
                    request.write(b"")  # the head goes now: the body may be a while
                await request.drain()
                unsent = 0
                continue
            with trio.move_on_after(settings.timeout) as idle:
                await trio.lowlevel.wait_readable(fd)
            if idle.cancelled_caught:
                raise ScriptFailed(f"no output for {settings.timeout:g} s: response aborted") from None
            continue
        if not piece:
            break
    if remaining:
        raise ScriptFailed(f"output ended {remaining} bytes short of its Content-Length")
    request.finish()
    return True


async def _feed_stdin(exchange: _Exchange, body: IO[bytes] | None) -> None:
    request = exchange.request
    stdin = exchange.process.stdin
    scope = exchange.everything
    try:
        with exchange.feeder:
            async for piece in _body_pieces(request, body):
                await stdin.send_all(piece)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the script closed its stdin, or ended: what it did not read is not its business
    except ConnectionLost:
        scope.cancel()
    except (BodyTooLarge, BodyTimeout, ParseError) as exc:
        # The client's fault, found mid-body: the script must not take a
        # truncated body for a whole one, nor answer it.
        exchange.failure = f"the request body failed ({type(exc).__name__})"
        if not request.startedWriting and not request.finished:
            request.defaultContentType = b"text/html"
            request.responseHeaders = Headers()
            answer_body_error(request, exc)
        scope.cancel()
    finally:
        await stdin.aclose()


async def _body_pieces(request: Request, body: IO[bytes] | None) -> AsyncIterator[bytes]:
    if body is None:
        if request.has_body:
            async for piece in request.body_stream():
                yield piece
        return
    while piece := body.read(READ_SIZE):
        yield piece


async def spool_body(request: Request) -> IO[bytes]:
    """The whole request body in a spool file, at its start (for a chunked body)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
    async for piece in request.body_stream():
        spool.write(piece)
    spool.seek(0)
    return spool


async def _log_stderr(exchange: _Exchange) -> None:
    stderr_log, uri = exchange.settings.stderr, exchange.uri
    stderr = exchange.process.stderr
    pending = b""
    while piece := await stderr.receive_some(READ_SIZE):
        *lines, pending = (pending + piece).split(b"\n")
        if len(pending) > stderr_log.max_line:
            lines.append(pending)
            pending = b""
        for line in lines:
            stderr_log.line(uri, line.rstrip(b"\r"))
    if pending:
        stderr_log.line(uri, pending)


async def _end_group_with_leader(exchange: _Exchange) -> None:
    """When the script exits, end what is left of its group: a background
    process that kept stdout open would hold the response open forever."""
    with exchange.leader_watch:
        await trio.lowlevel.wait_readable(exchange.process.pidfd)
        _signal_group(exchange.process.pid, signal.SIGTERM)
        await trio.sleep(exchange.settings.kill_grace)
        _signal_group(exchange.process.pid, signal.SIGKILL)


async def end_process(process: ScriptProcess, exit_within: float, kill_grace: float) -> None:
    """End the script and its process group and reap it, once (see the theory
    of operation); ``exit_within``: seconds the script may take to exit by
    itself first. Must run shielded from cancellation, with no other task
    waiting on its pidfd."""
    if process.reaped:
        return
    pidfd = process.pidfd
    exited = await _exited_within(pidfd, exit_within)
    if not exited:
        _signal_group(process.pid, signal.SIGTERM)
        exited = await _exited_within(pidfd, kill_grace)
    # The leader is a zombie now or still runs: either way its group id
    # cannot be reused until it is reaped, so this reaches only its group.
    _signal_group(process.pid, signal.SIGKILL)
    if not exited:
        await trio.lowlevel.wait_readable(pidfd)
    process.reap()


async def _exited_within(pidfd: int, seconds: float) -> bool:
    if select.select([pidfd], [], [], 0)[0]:
        return True
    if seconds <= 0:
        return False
    with trio.move_on_after(seconds):
        await trio.lowlevel.wait_readable(pidfd)
        return True
    return False


def _enlarge_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BODY_READ_SIZE)
    except OSError:  # over /proc/sys/fs/pipe-max-size for this user: the default size works too
        pass


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


BodyError = BodyTooLarge | BodyTimeout | ParseError


def answer_body_error(request: Request, exc: BodyError) -> None:
    """Answer a request whose body could not be read: 413, 408 or 400."""
    code = 413 if isinstance(exc, BodyTooLarge) else 408 if isinstance(exc, BodyTimeout) else 400
    _answer_error(request, code, status_phrase(code).decode(), "The request body could not be read.")


def _answer_error(request: Request, code: int, brief: str, detail: str) -> None:
    if request.finished or request.channel.lost:
        return
    request.write(render_error(request, code, brief, detail))
    request.finish()
