"""`PendingCall`: a call whose answer is awaited later, or not at all.

`RemoteReference.callRemote` sends a call and parks its task until the
answer; that task can wait for nothing else meanwhile. `start_call` sends the
call and returns a `PendingCall` instead, so that the caller can wait for
the answer *or* for something else (a message the callee sends before it
answers, say) without a task of its own per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

import outcome
import trio

from ._errors import RPCError

if TYPE_CHECKING:
    from ._broker import Broker

logger = logging.getLogger("rpc")


@final  # the broker tells it from a waiting task by its exact type
class PendingCall:
    """A call sent by `RemoteReference.start_call`, and its answer once it comes.

    The call is done when its answer or error arrives, when the connection
    is lost, or when it is given up with `cancel`. Then `result` returns the
    answer (or raises the error), and the callbacks added with
    `add_done_callback` have run (in the task that noticed: they must not
    block; what they raise is logged).
    """

    __slots__ = ("_broker", "_callbacks", "_done", "_error", "_task", "_value", "call_id")

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.call_id = 0
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False
        self._task: trio.lowlevel.Task | None = None
        self._callbacks: list[Callable[[], object]] = []

    @property
    def done(self) -> bool:
        """Whether the call is over (answered, failed, lost or cancelled)."""
        return self._done

    def add_done_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the call is done (at once if it is)."""
        if self._done:
            callback()
        else:
            self._callbacks.append(callback)

    def cancel(self) -> None:
        """Give up on the call: the peer is told to cancel it, its answer is dropped.

        `result` raises `RPCError` afterwards. Does nothing if the call is done.
        """
        if not self._done:
            self._broker._abandon_call(self.call_id)
            self._finish(None, RPCError("the call was cancelled by this side"))

    def result(self) -> Any:
        """The answer of a call that is done; raises the call's error instead if it failed."""
        if not self._done:
            raise RuntimeError("the call is not done")
        if self._error is not None:
            raise self._error
        return self._value

    async def wait(self) -> Any:
        """Wait until the call is done; return its `result`.

        Cancelling the task waiting here cancels the call, as with `callRemote`.
        """
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            self._task = trio.lowlevel.current_task()

            def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
                self._task = None
                self.cancel()
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        return self.result()

    def _finish(self, value: Any, error: BaseException | None) -> None:
        """The answer (or the error) came: keep it, wake the waiter, run the callbacks."""
        self._value, self._error, self._done = value, error, True
        if self._task is not None:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task, outcome.Value(None))
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("rpc: callback %r of a pending call failed", callback)
