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
