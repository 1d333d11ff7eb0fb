"""The broker over real sockets (a UNIX socketpair, TCP, TLS), in one process."""

from __future__ import annotations

import gc
import os
import ssl
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import rpc
from tests.rpc.rpc_testing import broker_pair
from tests.support.polling import wait_until


@rpc.copyable("tests.broker.Overdrawn")
class Overdrawn(rpc.Copyable, rpc.RemoteCopy, Exception):
    """A copyable exception: arrives as itself."""


@rpc.copyable("tests.broker.Account")
class Account(rpc.Copyable, rpc.RemoteCopy):
    def __init__(self, owner: str, balance: int) -> None:
        self.owner = owner
        self.balance = balance


class Callback(rpc.Referenceable):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def remote_notify(self, value: Any) -> str:
        self.seen.append(value)
        return f"got {value}"


class Service(rpc.Referenceable):
    def __init__(self) -> None:
        self.cancelled = trio.Event()
        self.started = trio.Event()
        self.one_way = trio.Event()
        self.held: list[Any] = []

    def remote_echo(self, *args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    def not_remote(self) -> str:
        return "unreachable"

    async def remote_sleep(self, seconds: float) -> float:
        self.started.set()
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            self.cancelled.set()
            raise
        return seconds

    async def remote_call_back(self, callback: rpc.RemoteReference, value: Any) -> Any:
        return await callback.callRemote("notify", value)

    def remote_hold(self, reference: rpc.RemoteReference) -> None:
        self.held.append(reference)

    def remote_drop(self) -> None:
        self.held.clear()

    def remote_make_child(self) -> Callback:
        return Callback()

    def remote_fail(self, message: str) -> None:
        raise ValueError(message)

    def remote_fail_big(self, size: int) -> None:
        raise ValueError("x" * size)

    def remote_overdraw(self) -> None:
        raise Overdrawn("balance would be -5")

    def remote_account(self, account: Account) -> Account:
        return Account(account.owner.upper(), account.balance + 1)

    def remote_unsendable(self) -> object:
        return object()

    def remote_note(self, value: Any) -> None:
        self.held.append(value)
        self.one_way.set()

    async def remote_wait_for(self, event_name: str) -> str:
        await getattr(self, event_name).wait()
        return event_name


async def test_plain_values_cross_unchanged() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        values = [None, True, 0, -1, 2**63, 1.5, "text", b"\x00bytes", [1, [2]], {"k": {"n": 1}}]
        assert await root.callRemote("echo", *values, key=(1, 2)) == [values, {"key": [1, 2]}]


async def test_either_side_may_offer_a_root() -> None:
    async with broker_pair(root_a=Service(), root_b=Service()) as (a, b):
        assert await (await b.getRootObject()).callRemote("echo", 1) == [[1], {}]
        assert await (await a.getRootObject()).callRemote("echo", 2) == [[2], {}]


async def test_missing_root_is_an_error() -> None:
    async with broker_pair() as (a, b):
        with pytest.raises(rpc.RPCError, match="no root"):
            await a.getRootObject()


async def test_callbacks_cross_both_ways_over_one_connection() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        callback = Callback()
        assert await root.callRemote("call_back", callback, 41) == "got 41"
        assert callback.seen == [41]
        child = await root.callRemote("make_child")
        assert isinstance(child, rpc.RemoteReference)
        assert await child.callRemote("notify", "x") == "got x"


async def test_only_remote_methods_are_reachable() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        for name in ("not_remote", "missing", "__init__", "echo.__class__"):
            with pytest.raises(rpc.NoSuchMethod, match="No such method"):
                await root.callRemote(name)


async def test_remote_exception_carries_type_and_message_without_traceback() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        with pytest.raises(rpc.RemoteError) as info:
            await root.callRemote("fail", "no luck")
        assert (info.value.remote_type, info.value.remote_message) == ("ValueError", "no luck")
        assert info.value.remote_traceback is None


async def test_tracebacks_are_sent_only_when_the_server_opts_in() -> None:
    async with broker_pair(root_b=Service(), send_tracebacks=True) as (a, b):
        with pytest.raises(rpc.RemoteError) as info:
            await (await a.getRootObject()).callRemote("fail", "traced")
        assert "remote_fail" in info.value.remote_traceback
        assert "ValueError: traced" in info.value.remote_traceback


async def test_error_too_large_for_the_peer_is_cut() -> None:
    limits = rpc.Limits(max_frame=64 * 1024)
    async with broker_pair(root_b=Service(), limits=limits, send_tracebacks=True) as (a, b):
        root = await a.getRootObject()
        with pytest.raises(rpc.RemoteError) as info:
            await root.callRemote("fail_big", 100_000)
        assert info.value.remote_message == "x" * 1000 + " [cut]"
        assert info.value.remote_traceback is None
        assert await root.callRemote("echo", 1) == [[1], {}]


async def test_copyable_exception_arrives_as_itself() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        with pytest.raises(Overdrawn, match="balance would be -5"):
            await (await a.getRootObject()).callRemote("overdraw")


async def test_copies_cross_by_value() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        result = await (await a.getRootObject()).callRemote("account", Account("ann", 1))
        assert type(result) is Account and (result.owner, result.balance) == ("ANN", 2)


async def test_unsendable_argument_fails_locally_and_unsendable_result_remotely() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        with pytest.raises(TypeError, match="cannot send"):
            await root.callRemote("echo", object())
        with pytest.raises(TypeError, match="method name is a str"):
            await root.callRemote(b"echo")
        with pytest.raises(rpc.RemoteError, match="result could not be sent"):
            await root.callRemote("unsendable")
        assert await root.callRemote("echo", 1) == [[1], {}]


async def test_cancelling_the_caller_cancels_the_callee_and_drops_the_late_answer() -> None:
    service = Service()
    async with broker_pair(root_b=service) as (a, b):
        root = await a.getRootObject()
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(root.callRemote, "sleep", 30)
                await service.started.wait()
                nursery.cancel_scope.cancel()
            with trio.fail_after(5):
                await service.cancelled.wait()
        assert not scope.cancelled_caught
        assert await root.callRemote("echo", "still usable") == [["still usable"], {}]


async def test_pending_calls_fail_when_the_connection_drops_and_later_calls_at_once() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        disconnected: list[Any] = []
        root.notifyOnDisconnect(disconnected.append)
        a.notifyOnDisconnect(lambda: disconnected.append("broker"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.aclose)
            with pytest.raises(rpc.ConnectionLost):
                await root.callRemote("sleep", 30)
        assert disconnected == [root, "broker"] or disconnected == ["broker", root]
        with pytest.raises(rpc.DeadReference):
            await root.callRemote("echo", 1)


async def test_started_call_is_answered_later_with_callbacks_and_errors() -> None:
    service = Service()
    async with broker_pair(root_b=service) as (a, b):
        root = await a.getRootObject()
        call = await root.start_call("wait_for", "one_way")
        notified: list[str] = []
        call.add_done_callback(lambda: notified.append("done"))
        assert not call.done and notified == []
        with pytest.raises(RuntimeError, match="not done"):
            call.result()
        await root.sendRemote("note", "go")  # sets the event the call waits for
        assert await call.wait() == "one_way"
        assert call.done and call.result() == "one_way" and notified == ["done"]
        call.add_done_callback(lambda: notified.append("late"))  # runs at once
        assert notified == ["done", "late"]
        failing = await root.start_call("fail", "nope")
        with pytest.raises(rpc.RemoteError, match="nope"):
            await failing.wait()
        with pytest.raises(rpc.RemoteError):
            failing.result()


async def test_cancelling_a_started_call_cancels_the_callee() -> None:
    service = Service()
    async with broker_pair(root_b=service) as (a, b):
        root = await a.getRootObject()
        call = await root.start_call("sleep", 30)
        await service.started.wait()
        call.cancel()
        assert call.done
        with pytest.raises(rpc.RPCError, match="cancelled"):
            call.result()
        with trio.fail_after(5):
            await service.cancelled.wait()
        # Cancelling the task that waits for a started call cancels the call too.
        service.started, service.cancelled = trio.Event(), trio.Event()
        call = await root.start_call("sleep", 30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.wait)
            await service.started.wait()
            nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            await service.cancelled.wait()
        assert await root.callRemote("echo", "still usable") == [["still usable"], {}]


async def test_started_call_fails_when_the_connection_drops() -> None:
    async with broker_pair(root_b=Service()) as (a, b):
        root = await a.getRootObject()
        call = await root.start_call("sleep", 30)
        lost = trio.Event()
        call.add_done_callback(lost.set)
        await b.aclose()
        with trio.fail_after(5):
            await lost.wait()
        with pytest.raises(rpc.ConnectionLost):
            call.result()
        with pytest.raises(rpc.DeadReference):
            await root.start_call("echo", 1)


async def test_released_references_are_forgotten_by_the_exporter() -> None:
    service = Service()
    async with broker_pair(root_b=service) as (a, b):
        root = await a.getRootObject()
        for _ in range(3):
            await root.callRemote("hold", Callback())
        assert len(a._protocol._exports) == 3
        await root.callRemote("drop")
        gc.collect()
        await wait_until(lambda: not a._protocol._exports)


async def test_live_references_are_capped() -> None:
    async with broker_pair(root_b=Service(), limits=rpc.Limits(max_refs=2)) as (a, b):
        root = await a.getRootObject()
        await root.callRemote("hold", Callback())
        await root.callRemote("hold", Callback())
        with pytest.raises(rpc.LimitExceeded, match="at most 2 references"):
            await root.callRemote("hold", Callback())


async def test_one_way_send_runs_without_an_answer() -> None:
    service = Service()
    async with broker_pair(root_b=service) as (a, b):
        await (await a.getRootObject()).sendRemote("note", "hello")
        with trio.fail_after(5):
            await service.one_way.wait()
        assert service.held == ["hello"]


async def test_calls_beyond_running_and_queued_limits_are_refused() -> None:
    service = Service()
    limits = rpc.Limits(max_calls=2, max_queued_calls=1)
    async with broker_pair(root_b=service, limits=limits) as (a, b):
        root = await a.getRootObject()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lambda: root.callRemote("wait_for", "one_way"))
            await wait_until(lambda: len(b._queued) >= 1)  # two running, one waiting
            with pytest.raises(rpc.TooManyCalls):
                await root.callRemote("wait_for", "one_way")
            await root.sendRemote("note", "release")  # inline: not limited
        assert service.held == ["release"]


async def test_peer_credentials_of_a_unix_socket() -> None:
    async with broker_pair() as (a, b):
        credentials = a.peer_credentials()
        assert credentials == rpc.PeerCredentials(os.getpid(), os.getuid(), os.getgid())


async def test_serve_unix_authorize_hook_refuses_before_any_message(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    seen: list[rpc.PeerCredentials] = []

    def authorize(credentials: rpc.PeerCredentials) -> bool:
        seen.append(credentials)
        return credentials.uid != os.getuid()

    async with trio.open_nursery() as nursery:
        await nursery.start(partial(rpc.serve_unix, path, lambda broker: Service(),
                                    authorize=authorize))
        with pytest.raises(rpc.ConnectionLost):
            async with rpc.connect_unix(path, handshake_timeout=5):
                pass
        assert seen == [rpc.PeerCredentials(os.getpid(), os.getuid(), os.getgid())]
        nursery.cancel_scope.cancel()
    assert not os.path.exists(path)  # removed on exit


async def test_serve_unix_accepts_authorized_peers(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(
            rpc.serve_unix, path, lambda broker: Service(),
            authorize=lambda credentials: credentials.uid == os.getuid(), mode=0o600))
        assert os.stat(path).st_mode & 0o777 == 0o600
        async with rpc.connect_unix(path) as broker:
            assert await (await broker.getRootObject()).callRemote("echo", 1) == [[1], {}]
        nursery.cancel_scope.cancel()


async def test_tcp() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(rpc.serve_tcp, 0, lambda broker: Service(),
                                                host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with rpc.connect_tcp("127.0.0.1", port) as broker:
            assert broker.peer_credentials() is None
            root = await broker.getRootObject()
            assert await root.callRemote("call_back", Callback(), "tcp") == "got tcp"
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True)
    return key, cert


async def test_tls(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(rpc.serve_tls, 0, lambda broker: Service(),
                                                server_context, host="127.0.0.1"))
        port = listeners[0].transport_listener.socket.getsockname()[1]
        async with rpc.connect_tls("localhost", port, client_context) as broker:
            root = await broker.getRootObject()
            assert await root.callRemote("call_back", Callback(), "tls") == "got tls"
            assert await root.callRemote("echo", b"x" * 100_000) == [[b"x" * 100_000], {}]
        nursery.cancel_scope.cancel()
