"""Benchmark the rpc package against Twisted's Perspective Broker, in one run.

    scripts/bench rpc [--duration SECONDS] [--rounds N] [--no-pin]

Three scenarios, each over a UNIX socket, with the server in a process of its
own and the client in another:

- lock-step: one small call at a time (``callRemote("echo", [1, b"x"])``),
  calls/s and p99 latency;
- concurrent: 100 calls in flight at all times, calls/s and p99 latency;
- stream: 100 MiB from server to client, MiB/s (rpc: a StreamSender with
  credit-based flow control; PB: its paging API, ``twisted.spread.util.Pager``
  pushing pages to a collector reference).

Twisted runs under .bench-venv-twisted/bin/python (scripts/bench creates it).
By default the client and server of each run are pinned to one CPU: on a
shared virtual machine a lock-step call across two CPUs mostly measures how
long the hypervisor takes to wake the other CPU, not the code; --no-pin lets
the scheduler place them.

The same file is also the server and client programs (``--role``); the
Twisted roles import only Twisted, the rpc roles only trio and rpc.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTED_PYTHON = ROOT / ".bench-venv-twisted" / "bin" / "python"
RPC_PYTHON = ROOT / ".venv" / "bin" / "python"
STREAM_SIZE = 100 * 1024 * 1024
STREAM_CHUNK = 256 * 1024
PB_PAGE = 64 * 1024  # below banana's 640 KiB string limit
CONCURRENCY = 100
WARM_UP = 0.3


def percentile_99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# ----------------------------------------------------------------- rpc roles

def rpc_server(path: str) -> None:
    import trio

    import rpc

    class Root(rpc.Referenceable):
        def remote_echo(self, value: object) -> object:
            return value

        def remote_download(self, size: int) -> rpc.StreamSender:
            async def chunks():
                chunk = b"s" * STREAM_CHUNK
                for _ in range(size // STREAM_CHUNK):
                    yield chunk

            return rpc.StreamSender(chunks())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(rpc.serve_unix, path, lambda broker: Root())
            print("ready", flush=True)

    trio.run(main)


def rpc_client(path: str, scenario: str, duration: float) -> dict:
    import trio

    import rpc

    async def main() -> dict:
        async with rpc.connect_unix(path) as broker:
            root = await broker.getRootObject()
            if scenario == "stream":
                await drain(await root.callRemote("download", 8 * STREAM_CHUNK))
                start = time.perf_counter()
                size = await drain(await root.callRemote("download", STREAM_SIZE))
                assert size == STREAM_SIZE
                return {"seconds": time.perf_counter() - start, "bytes": size}
            workers = 1 if scenario == "lock-step" else CONCURRENCY
            latencies: list[float] = []
            deadline = time.perf_counter() + WARM_UP
            measuring = False

            async def worker() -> None:
                clock = time.perf_counter
                while True:
                    start = clock()
                    if start > deadline:
                        return
                    await root.callRemote("echo", [1, b"x"])
                    if measuring:
                        latencies.append(clock() - start)

            async with trio.open_nursery() as nursery:  # warm up
                for _ in range(workers):
                    nursery.start_soon(worker)
            measuring = True
            begin = time.perf_counter()
            deadline = begin + duration
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(worker)
            return {"seconds": time.perf_counter() - begin, "latencies": latencies}

    async def drain(receiver: rpc.StreamReceiver) -> int:
        size = 0
        async for chunk in receiver:
            size += len(chunk)
        return size

    return trio.run(main)


# ------------------------------------------------------------- Twisted roles

def twisted_server(path: str) -> None:
    from twisted.internet import reactor
    from twisted.spread import pb, util

    class ChunkPager(util.Pager):
        def __init__(self, collector: pb.RemoteReference, size: int) -> None:
            self.remaining = size
            self.page = b"s" * PB_PAGE
            util.Pager.__init__(self, collector)

        def nextPage(self) -> bytes:
            self.remaining -= PB_PAGE
            if self.remaining <= 0:
                self.stopPaging()  # Pager then sends endedPaging
            return self.page

    class Root(pb.Root):
        def remote_echo(self, value: object) -> object:
            return value

        def remote_download(self, collector: pb.RemoteReference, size: int) -> None:
            ChunkPager(collector, size)

    reactor.listenUNIX(path, pb.PBServerFactory(Root()))
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()


def twisted_client(path: str, scenario: str, duration: float) -> dict:
    from twisted.internet import defer, reactor
    from twisted.spread import pb

    result: dict = {}

    class Collector(pb.Referenceable):
        def __init__(self) -> None:
            self.size = 0
            self.done: defer.Deferred = defer.Deferred()

        def remote_gotPage(self, page: bytes) -> None:
            self.size += len(page)

        def remote_endedPaging(self) -> None:
            self.done.callback(self.size)

    @defer.inlineCallbacks
    def download(root: pb.RemoteReference, size: int):
        collector = Collector()
        yield root.callRemote("download", collector, size)
        received = yield collector.done
        return received

    @defer.inlineCallbacks
    def calls(root: pb.RemoteReference, workers: int):
        latencies: list[float] = []
        state = {"measuring": False, "deadline": time.perf_counter() + WARM_UP}

        @defer.inlineCallbacks
        def worker():
            clock = time.perf_counter
            while True:
                start = clock()
                if start > state["deadline"]:
                    return
                yield root.callRemote("echo", [1, b"x"])
                if state["measuring"]:
                    latencies.append(clock() - start)

        yield defer.gatherResults([worker() for _ in range(workers)])
        state["measuring"] = True
        begin = time.perf_counter()
        state["deadline"] = begin + duration
        yield defer.gatherResults([worker() for _ in range(workers)])
        return {"seconds": time.perf_counter() - begin, "latencies": latencies}

    @defer.inlineCallbacks
    def main():
        factory = pb.PBClientFactory()
        reactor.connectUNIX(path, factory)
        root = yield factory.getRootObject()
        try:
            if scenario == "stream":
                yield download(root, 8 * PB_PAGE)
                start = time.perf_counter()
                size = yield download(root, STREAM_SIZE)
                assert size == STREAM_SIZE, size
                result.update(seconds=time.perf_counter() - start, bytes=size)
            else:
                result.update((yield calls(root, 1 if scenario == "lock-step" else CONCURRENCY)))
        finally:
            reactor.stop()

    reactor.callWhenRunning(main)
    reactor.run()
    return result


# ------------------------------------------------------------------- driver

ROLES = {
    ("rpc", "server"): rpc_server, ("rpc", "client"): rpc_client,
    ("twisted", "server"): twisted_server, ("twisted", "client"): twisted_client,
}


def run_role(arguments: argparse.Namespace) -> None:
    if arguments.cpu is not None:
        os.sched_setaffinity(0, {arguments.cpu})
    side, kind = arguments.role.split("-")
    if kind == "server":
        ROLES[side, kind](arguments.socket)
    else:
        outcome = ROLES[side, kind](arguments.socket, arguments.scenario, arguments.duration)
        print(json.dumps(outcome))


def summarize(scenario: str, outcome: dict) -> dict[str, float]:
    if scenario == "stream":
        return {"MiB/s": outcome["bytes"] / (1024 * 1024) / outcome["seconds"]}
    latencies = outcome["latencies"]
    return {"calls/s": len(latencies) / outcome["seconds"],
            "p99 ms": percentile_99(latencies) * 1000}


def measure(side: str, python: Path, cpu: int | None, duration: float,
            directory: str) -> dict[str, dict[str, float]]:
    path = os.path.join(directory, f"{side}.sock")
    if os.path.exists(path):
        os.unlink(path)  # left by the previous round's server, which was killed
    pin = [] if cpu is None else ["--cpu", str(cpu)]
    server = subprocess.Popen([str(python), __file__, "--role", f"{side}-server",
                               "--socket", path, *pin], stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {side} server did not start")
        results = {}
        for scenario in ("lock-step", "concurrent", "stream"):
            output = subprocess.run(
                [str(python), __file__, "--role", f"{side}-client", "--socket", path,
                 "--scenario", scenario, "--duration", str(duration), *pin],
                check=True, capture_output=True, text=True, timeout=duration * 4 + 120,
            ).stdout
            results[scenario] = summarize(scenario, json.loads(output.splitlines()[-1]))
        return results
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds measured per call scenario (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, rpc and PB alternating; the median is shown (default 3)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the scheduler place client and server on any CPU")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.role:
        run_role(arguments)
        return
    if not TWISTED_PYTHON.exists():
        raise SystemExit(f"{TWISTED_PYTHON} is missing: run scripts/bench rpc")
    cpu = None if arguments.no_pin else max(os.sched_getaffinity(0))
    pythons = {"rpc": RPC_PYTHON if RPC_PYTHON.exists() else Path(sys.executable),
               "twisted": TWISTED_PYTHON}
    # Alternating rounds spread the noise of a shared machine over both sides.
    samples: dict[str, dict[str, dict[str, list[float]]]] = {"rpc": {}, "twisted": {}}
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as directory:
        for _ in range(arguments.rounds):
            for side, python in pythons.items():
                for scenario, metrics in measure(side, python, cpu, arguments.duration,
                                                 directory).items():
                    for metric, value in metrics.items():
                        samples[side].setdefault(scenario, {}).setdefault(metric, []).append(value)
    placement = "unpinned" if cpu is None else f"client and server pinned to CPU {cpu}"
    print(f"rpc vs Twisted PB over a UNIX socket ({placement}; median of {arguments.rounds} "
          f"rounds, {arguments.duration:g} s per call scenario)")
    print(f"{'scenario':<28}{'rpc':>12}{'Twisted PB':>14}{'ratio':>9}")
    for scenario, label in (("lock-step", "lock-step call"), ("concurrent", "100 concurrent calls"),
                            ("stream", "100 MiB stream")):
        for metric, values in samples["rpc"][scenario].items():
            ours = statistics.median(values)
            theirs = statistics.median(samples["twisted"][scenario][metric])
            # A ratio above 1 always means rpc is better (fewer ms, more per second).
            ratio = theirs / ours if metric.endswith("ms") else ours / theirs
            print(f"{label + ' ' + metric:<28}{ours:>12,.2f}{theirs:>14,.2f}{ratio:>8.2f}x")


if __name__ == "__main__":
    main()
