"""The worker threads of a ``WSGIResource`` (``Workers``): calls of its
application, run in threads woken per batch, their results handed back to
the event loop in batches. See ``Workers``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import outcome
import trio

__all__ = ["STALL_SECONDS", "WORKER_IDLE_SECONDS", "Job", "Workers"]

WORKER_IDLE_SECONDS = 60.0  # a worker thread with no call for this long ends
# How long calls may wait while every awake worker thread is inside the
# application (blocked on I/O, say) before each of them gets a thread of its own.
STALL_SECONDS = 0.005


class Job:
    """A call of ``Workers.run``: its task, the loop to hand the result back
    to, and what to call."""

    __slots__ = ("function", "task", "token")

    def __init__(self, task: trio.lowlevel.Task, token: trio.lowlevel.TrioToken, function: Callable[[], Any]) -> None:
        self.task = task
        self.token = token
        self.function = function


class Workers:
    """The threads a WSGIResource runs its application in.

    Threads are woken per batch of calls, not per call: with the GIL, each
    wakeup of a thread costs the loop thread a few context switches, which
    cost more than a small application. Calls wait in ``_pending``; a
    dispatcher task of the event loop, asked by the first call of a
    scheduler pass, runs after the pass and wakes one thread if none is
    free (awake and outside the application); that thread takes the calls
    one after the other. If calls still wait ``STALL_SECONDS`` later while
    every awake thread is inside the application, each waiting call gets a
    thread. Threads are started as needed and end after ``idle_seconds``
    without a call (so that a resource a reload replaced leaves no thread
    behind). Results go back to the loop in batches too: one
    ``run_sync_soon`` (one wakeup of the loop) carries all those that finish
    before the loop takes them.

    The limiter bounds the threads awake at once (so the calls running at
    once): a thread holds one of its tokens from its wakeup until it goes to
    sleep, and the loop releases it with the next batch of results. The
    limiter is thus asked once per batch, not once per call (twice per
    request, which costs more than the rest of the handoff). A thread is
    woken only with a token; if none is free and no thread of ours is awake
    to take the calls (a limiter shared with others), the dispatcher waits in
    the limiter for one.
    """

    def __init__(self, limiter: trio.CapacityLimiter, idle_seconds: float = WORKER_IDLE_SECONDS) -> None:
        self._limiter = limiter
        self._idle_seconds = idle_seconds
        # Everything below changes under _lock, except that the loop appends to _pending.
        self._lock = threading.Lock()
        self._pending: collections.deque[Job] = collections.deque()
        # The wakeups of sleeping threads (released to wake one). A thread's
        # wakeup is also the borrower of the token it holds while awake.
        self._idle: list[threading.Lock] = []
        self._asleep_with_token: set[threading.Lock] = set()  # released by the loop at the next delivery
        self._threads = 0
        self._free = 0  # awake threads outside the application
        self._results: list[tuple[Job, outcome.Outcome[Any]]] = []
        self._delivery_asked = False  # a _deliver is due (results or tokens to hand back)
        # The dispatcher of the current trio run (a new run starts its own).
        self._token: trio.lowlevel.TrioToken | None = None
        self._dispatcher = trio.lowlevel.ParkingLot()

    async def run(self, function: Callable[[], Any], token: trio.lowlevel.TrioToken) -> Any:
        """``function()`` in a worker thread; its result or exception.
        ``token`` is the caller's (``trio.lowlevel.current_trio_token()``).

        Cancellable only while the call waits for a thread: like
        ``trio.to_thread.run_sync``, it then waits for the thread (the
        application ends soon after its client is gone).
        """
        if token is not self._token:
            self._token = token
            self._release_stale_tokens()
            self._dispatcher = trio.lowlevel.ParkingLot()
            trio.lowlevel.spawn_system_task(self._dispatch, self._dispatcher, name="trioweb-wsgi-dispatcher")
        job = Job(trio.lowlevel.current_task(), token, function)
        self._pending.append(job)
        if self._dispatcher:
            self._dispatcher.unpark()

        def abort(_: Any) -> trio.lowlevel.Abort:
            with self._lock:
                if job not in self._pending:
                    return trio.lowlevel.Abort.FAILED  # a thread runs it
                self._pending.remove(job)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _release_stale_tokens(self) -> None:
        """At the start of a new trio run: the tokens that threads gone to sleep
        still hold because the previous run ended before its loop released them."""
        with self._lock:
            asleep, self._asleep_with_token = self._asleep_with_token, set()
            self._results.clear()
            self._delivery_asked = False
        borrowers = self._limiter.statistics().borrowers
        for wakeup in asleep:
            if wakeup in borrowers:
                self._limiter.release_on_behalf_of(wakeup)

    async def _dispatch(self, dispatcher: trio.lowlevel.ParkingLot) -> None:
        """Wake threads for the calls that wait: one after each scheduler pass
        that queued calls (the task is unparked by the first of them), one per
        waiting call after ``STALL_SECONDS`` without a free thread (tokens
        permitting)."""
        while True:
            if self._pending and not self._free:
                with self._lock:
                    woken = self._wake(1)
                    awake = self._threads - len(self._idle)
                if not woken and not awake:
                    await self._wake_with_a_token()
                    continue
            if not self._pending:
                await dispatcher.park()
                continue
            with trio.move_on_after(STALL_SECONDS) as waited:
                await dispatcher.park()
            if waited.cancelled_caught:
                self._wake_stalled()

    async def _wake_with_a_token(self) -> None:
        """Wait in the limiter for a token (all are held by others), then wake a thread with it."""
        with self._lock:
            if self._wake(1):  # a thread went to sleep since, with its token
                return
            # A sleeping thread, taken out of _idle so that it does not end meanwhile; or a new one.
            wakeup = self._idle.pop() if self._idle else None
        new = wakeup is None
        if wakeup is None:
            wakeup = threading.Lock()
            wakeup.acquire()
        try:
            await self._limiter.acquire_on_behalf_of(wakeup)
        except BaseException:  # the run ends: the sleeping thread may end when idle again
            if not new:
                with self._lock:
                    self._idle.append(wakeup)
            raise
        with self._lock:
            self._free += 1
            if new:
                self._start_thread(wakeup)
            else:
                wakeup.release()

    def _wake_stalled(self) -> None:
        """A thread for each waiting call, if every awake thread is inside the application."""
        with self._lock:
            if not self._free:
                self._wake(len(self._pending))

    def _wake(self, count: int) -> int:
        """Wake up to ``count`` threads, as tokens allow: sleeping ones first
        (first those whose token is not released yet), else new ones. Returns
        how many (under ``_lock``)."""
        woken = 0
        while woken < count:
            if self._asleep_with_token:
                wakeup = self._asleep_with_token.pop()
                self._idle.remove(wakeup)
            else:
                wakeup = self._idle[-1] if self._idle else threading.Lock()
                try:
                    self._limiter.acquire_on_behalf_of_nowait(wakeup)
                except trio.WouldBlock:
                    break
                if self._idle:
                    self._idle.pop()
                else:
                    wakeup.acquire()
                    self._start_thread(wakeup)
                    self._free += 1
                    woken += 1
                    continue
            wakeup.release()
            self._free += 1
            woken += 1
        return woken

    def _start_thread(self, wakeup: threading.Lock) -> None:
        """A new thread, awake (``wakeup`` is held, and it holds a token); under ``_lock``."""
        self._threads += 1
        threading.Thread(target=self._serve, args=(wakeup,), name=f"trioweb-wsgi-{self._threads}",
                         daemon=True).start()

    def _deliver(self) -> None:
        """Hand the results to their tasks, and release the tokens of the threads that went to sleep (in the loop)."""
        with self._lock:
            results, self._results = self._results, []
            asleep, self._asleep_with_token = self._asleep_with_token, set()
            self._delivery_asked = False
        release = self._limiter.release_on_behalf_of
        for wakeup in asleep:
            release(wakeup)
        for job, result in results:
            trio.lowlevel.reschedule(job.task, result)
        if self._pending and not self._free and self._dispatcher:
            self._dispatcher.unpark()  # calls came while the threads went to sleep

    def _ask_delivery(self, token: trio.lowlevel.TrioToken | None) -> None:
        """Have the loop run ``_deliver`` (from a thread, outside ``_lock``)."""
        if token is None:
            return
        try:
            token.run_sync_soon(self._deliver)
        except trio.RunFinishedError:  # the server is gone: nobody waits for the results
            with self._lock:
                self._results.clear()
                self._delivery_asked = False  # tokens left held are released by the next run, if any

    def _serve(self, wakeup: threading.Lock) -> None:
        """A thread: run the calls that wait, then sleep until woken again (with a token)."""
        lock = self._lock
        pending = self._pending
        with lock:
            self._free -= 1
            job = pending.popleft() if pending else None
        while True:
            if job is not None:
                result = outcome.capture(job.function)
                token = job.token
                with lock:  # one round of the lock per call: hand the result back, take the next call
                    self._results.append((job, result))
                    ask = not self._delivery_asked
                    self._delivery_asked = True
                    job = pending.popleft() if pending else None
                    if job is None:
                        self._idle.append(wakeup)
                        self._asleep_with_token.add(wakeup)
                del result
                if ask:
                    self._ask_delivery(token)
                if job is not None:
                    continue
            else:
                with lock:
                    self._idle.append(wakeup)
                    self._asleep_with_token.add(wakeup)
                    ask = not self._delivery_asked
                    self._delivery_asked = True
                if ask:
                    self._ask_delivery(self._token)
            # Asleep: no reference to a request meanwhile.
            if not wakeup.acquire(timeout=self._idle_seconds):
                with lock:
                    if wakeup in self._idle:
                        self._idle.remove(wakeup)
                        self._threads -= 1
                        return
                wakeup.acquire()  # woken as the wait timed out
            with lock:
                self._free -= 1
                job = pending.popleft() if pending else None
