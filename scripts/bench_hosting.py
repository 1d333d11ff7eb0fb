"""Community hosting at scale, with real accounts (root only):

    scripts/bench hosting [--accounts 1000] [--live 50] [--duration 10] [--connections 50]
                          [--activations 5] [--json FILE]

Creates ``--accounts`` accounts (``newusers``, names hb<pid>u0000...), the
first ``--live`` with a personal server running as their user, the others
with a small ``public_html``; one more account serves through socket
activation. Then, in turn:

- ``trioweb --user`` (as www-data), then ``--workers 2`` if the installed
  trioweb has that option (the row is skipped with the reason otherwise);
- Twisted's ``twistd web --user`` (as www-data) with ``twistd web
  --personal`` servers for the same live users (its ``/NAME.twistd/``) and
  the same ``public_html`` (its ``/NAME/``).

Each front is first checked on every account, one request after another
(every page must be the account's own, a personal page naming the pid of
that account's server; any wrong answer stops the bench), then loaded with
wrk, each request for a random account (a Lua script). Reported: requests/s,
p50/p99, errors (socket errors and non-2xx/3xx), CPU µs per request (front,
and front plus personal servers), the front's and the personal servers'
RSS and open fds (taken half-way through the load), and the time each
setup step took. Last, the latency of the first request through the front
after a socket-activated personal server (systemd-socket-activate,
``--idle-exit 1``) exited, the median of ``--activations`` rounds.

The fronts and personal servers share CPU 0 and wrk runs on CPU 1 (see
benchlib), so CPU µs per request is the figure to compare; with ``--workers
2`` both workers are on CPU 0 too. Everything is removed afterwards, on
Ctrl-C, SIGTERM or failure too (tests/support/many_accounts.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest  # installed_for_accounts() skips with pytest.skip
from benchlib import ROOT, TWISTED_PYTHON, Server, _cpu_seconds, _process_tree, free_port, pinned, table, wrk

sys.path.insert(0, str(ROOT))  # the real-account kit of the tests

from tests.support.hosting import Install, installed_for_accounts
from tests.support.many_accounts import Accounts, existing, many_accounts, processes_of

TWISTD = str(Path(TWISTED_PYTHON).parent / "twistd")
ACTIVATE = shutil.which("systemd-socket-activate")
IDLE_EXIT = 1.0
# One request for a random account each time; the requests are made once, in init.
LUA = """\
local requests = {}
function init(args)
  for path in io.lines(args[1]) do requests[#requests + 1] = wrk.format("GET", path) end
end
function request()
  return requests[math.random(#requests)]
end
"""


@dataclass
class Usage:
    """Resident memory (KiB), open fds and CPU seconds of a process and its children."""

    rss_kib: int
    fds: int
    cpu_seconds: float


def usage(pid: int) -> Usage:
    rss = fds = 0
    for member in _process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:  # gone meanwhile
            continue
        rss += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return Usage(rss, fds, sum(_cpu_seconds(member) for member in _process_tree(pid)))


@dataclass
class Row:
    setup: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    front_cpu_us: float  # per request
    all_cpu_us: float  # per request, front and personal servers
    front_rss_mib: float
    front_fds: int
    personal_rss_mib: list[float]  # each live personal server's
    personal_fds: list[int]


@dataclass
class Report:
    command: str
    date: str
    accounts: int
    live: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    activation_ms: list[float] = field(default_factory=list)  # first request after each idle exit
    warm_ms: list[float] = field(default_factory=list)  # the request right after it
    load_average: list[str] = field(default_factory=list)  # before each load run
    left_behind: list[str] = field(default_factory=list)


@contextmanager
def timed(report: Report, step: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"{step} ...", file=sys.stderr, flush=True)
    yield
    report.timings[step] = time.monotonic() - started


def write_homes(accounts: Accounts, live: list[str], public: list[str]) -> None:
    """A personal site (``~/site``: index.html, pid.rpy) for ``live``, a public_html for ``public``."""
    for name in live:
        site = accounts.home(name) / "site"
        site.mkdir()
        (site / "index.html").write_bytes(personal_page(name))
        shutil.copy(ROOT / "tests" / "e2e" / "hosting" / "pid.rpy", site / "pid.rpy")
    for name in public:
        (accounts.home(name) / "public_html").mkdir()
        (accounts.home(name) / "public_html" / "index.html").write_bytes(public_page(name))
    for name in [*live, *public]:
        accounts.give_home(name)


def personal_page(name: str) -> bytes:
    return f"<h1>{name}'s personal site</h1>\n".encode()


def public_page(name: str) -> bytes:
    return f"<h1>{name}'s public_html</h1>\n".encode()


def start_personal(accounts: Accounts, live: list[str], command: list[str], socket: str,
                   logs: Path) -> dict[str, subprocess.Popen]:
    """A personal server for each of ``live`` (``command``, ``{home}`` replaced), all started at
    once on every core (Python starting is most of the setup), then pinned to CPU 0 with the
    fronts; returns once every one listens on ``~/socket``."""
    servers = {}
    try:
        for name in live:
            home = str(accounts.home(name))
            servers[name] = accounts.run_as(name, [part.replace("{home}", home) for part in command],
                                            logs / f"{name}.log")
        deadline = time.monotonic() + 60 + len(live)
        for name, process in servers.items():
            while not (accounts.home(name) / socket).exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (logs / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name}'s personal server did not start: {log}")
                time.sleep(0.05)
            if pinned(["true"], 0)[0] == "taskset":  # as benchlib pins the fronts
                subprocess.run(["taskset", "--all-tasks", "--cpu-list", "--pid", "0", str(process.pid)],
                               check=True, capture_output=True)
        return servers
    except BaseException:
        stop(servers.values())
        raise


def stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_every_account(port: int, expected: dict[str, bytes]) -> None:
    """GET each path of ``expected`` one after another (also the warm-up): each must be 200
    with exactly the body expected; raises naming the first wrong answers."""
    wrong = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for path, body in expected.items():
            conn.request("GET", path)
            response = conn.getresponse()
            got = response.read()
            if (response.status, got) != (200, body):
                wrong.append(f"{path}: {response.status} {got[:100]!r}")
            if response.will_close:
                conn.close()
    finally:
        conn.close()
    if wrong:
        raise RuntimeError(f"{len(wrong)} of {len(expected)} pages wrong: {wrong[:10]}")


def load(report: Report, setup: str, port: int, paths: list[str], front: Server,
         personal: list[subprocess.Popen], work: Path, options: argparse.Namespace) -> Row:
    """wrk on ``paths`` at random; the servers' usage taken half-way through (wrk runs in
    this thread, so that Ctrl-C stops it too)."""
    (work / "paths").write_text("".join(f"{path}\n" for path in paths))
    report.load_average.append(Path("/proc/loadavg").read_text().strip())
    cpu_before = [usage(front.process.pid).cpu_seconds, *(usage(p.pid).cpu_seconds for p in personal)]
    sampled: list[Usage] = []
    sampler = threading.Timer(options.duration / 2, lambda: sampled.extend(
        [usage(front.process.pid), *(usage(p.pid) for p in personal)]))
    sampler.daemon = True
    sampler.start()
    try:
        result = wrk(f"http://127.0.0.1:{port}/", options.duration, options.connections,
                     lua=(str(work / "random.lua"), str(work / "paths")))
    finally:
        sampler.cancel()
    sampler.join(10)
    front_usage, *personal_usage = sampled
    cpu_after = [usage(front.process.pid).cpu_seconds, *(usage(p.pid).cpu_seconds for p in personal)]
    per_request = 1e6 / max(result.requests, 1)
    return Row(setup, result.requests_per_second, result.p50_ms, result.p99_ms, result.errors, result.requests,
               (cpu_after[0] - cpu_before[0]) * per_request, (sum(cpu_after) - sum(cpu_before)) * per_request,
               front_usage.rss_kib / 1024, front_usage.fds, [u.rss_kib / 1024 for u in personal_usage],
               [u.fds for u in personal_usage])


def trioweb_front(install: Install, port: int, min_uid: int, work: Path, *options: str) -> list[str]:
    """The front as the administrator runs it (as www-data); every client here is 127.0.0.1."""
    return [install.trioweb, "--user", "--listen", f"tcp:{port}:interface=127.0.0.1", "--uid", "www-data",
            "--gid", "www-data", "--min-uid", str(min_uid), "--max-connections-per-address", "0",
            "--logfile", str(work / "trioweb-access.log"), *options]


def has_workers_option(install: Install) -> bool:
    shown = subprocess.run([install.trioweb, "--help"], capture_output=True, text=True, check=True).stdout
    return "--workers" in shown


def bench_trioweb(report: Report, install: Install, accounts: Accounts, live: list[str], public: list[str],
                  activated: str, work: Path, options: argparse.Namespace) -> None:
    min_uid = min(accounts.uids.values())
    with timed(report, f"start {len(live)} trioweb personal servers"):
        servers = start_personal(accounts, live, [install.trioweb, "--personal", "--path", "{home}/site"],
                                 ".trioweb-pb", work)
    try:
        expected = {f"/~{name}/pid.rpy": str(servers[name].pid).encode() for name in live}
        expected |= {f"/~{name}/": personal_page(name) for name in live}
        expected |= {f"/~{name}/": public_page(name) for name in public}
        paths = [f"/~{name}/" for name in [*live, *public]]
        fronts = [("trioweb --user", ())]
        if has_workers_option(install):
            fronts.append(("trioweb --user --workers 2", ("--workers", "2")))
        else:
            report.skipped.append("trioweb --user --workers 2: this trioweb has no --workers option (yet)")
        for setup, front_options in fronts:
            port = free_port()
            with timed(report, f"start {setup}"):
                front = Server(trioweb_front(install, port, min_uid, work, *front_options), port)
            with front:
                with timed(report, f"check every account through {setup}"):
                    check_every_account(port, expected)
                report.rows.append(load(report, setup, port, paths, front, list(servers.values()), work, options))
                if not front_options:
                    activation_latency(report, install, accounts, activated, port, options.activations)
    finally:
        with timed(report, "stop the trioweb personal servers"):
            stop(servers.values())


def activation_latency(report: Report, install: Install, accounts: Accounts, name: str, port: int,
                       rounds: int) -> None:
    """The first request through the front after a socket-activated personal server exited idle.

    What a systemd socket unit does, in sh (as in tests/e2e/test_personal_activation.py):
    systemd-socket-activate listens on ~/.trioweb-pb, made 0666 (SocketMode), and starts
    ``trioweb --personal --idle-exit 1`` on the first connection; the loop listens again when
    it exits. Each round waits until the server exited and the socket is listened on again.
    """
    if ACTIVATE is None:
        report.skipped.append("socket activation: systemd-socket-activate is not installed")
        return
    home = accounts.home(name)
    socket_path = home / ".trioweb-pb"
    loop = (f"S={socket_path}; while :; do rm -f $S; {ACTIVATE} -l $S {install.trioweb} --personal "
            f"--path {home / 'site'} --idle-exit {IDLE_EXIT:g} & child=$!; "
            "until [ -S $S ]; do sleep 0.01; done; chmod 666 $S; wait $child; done")
    accounts.run_as(name, pinned(["sh", "-c", loop], 0))
    listened_on = None  # the socket of the previous round (inode, ctime)
    try:
        for _ in range(rounds):
            deadline = time.monotonic() + 30
            while not (socket_path.exists() and socket_path.stat().st_mode & 0o777 == 0o666
                       and identity(socket_path) != listened_on):
                if time.monotonic() > deadline:
                    raise RuntimeError("the socket-activated personal server did not exit or listen again")
                time.sleep(0.01)
            listened_on = identity(socket_path)
            started = time.monotonic()
            pid = get_pid(port, name)  # starts the server
            report.activation_ms.append((time.monotonic() - started) * 1000)
            started = time.monotonic()
            if get_pid(port, name) != pid:  # finds it running
                raise RuntimeError("socket activation: two requests in a row served by two processes")
            report.warm_ms.append((time.monotonic() - started) * 1000)
    finally:
        uid = accounts.uids[name]
        for pid in processes_of({uid}):
            os.kill(pid, signal.SIGKILL)


def identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_ino, info.st_ctime_ns  # an inode number alone may be reused at once


def get_pid(port: int, name: str) -> bytes:
    """The pid of the process serving ``name``'s pid.rpy, through the front, on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/~{name}/pid.rpy")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"socket activation: {response.status} {body[:200]!r}")
    return body


def twisted_unusable() -> str | None:
    """Why the accounts cannot run Twisted from .bench-venv-twisted, or None."""
    if not Path(TWISTD).exists():
        return f"{TWISTD} is missing (scripts/bench makes it)"
    result = subprocess.run([TWISTED_PYTHON, "-c", "import twisted.web.distrib"], user="nobody", group="nogroup",
                            extra_groups=[], capture_output=True, text=True, cwd="/")
    return None if result.returncode == 0 else f"other accounts cannot run it: {result.stderr.strip()[-300:]}"


def bench_twisted(report: Report, accounts: Accounts, live: list[str], public: list[str], work: Path,
                  options: argparse.Namespace) -> None:
    why = twisted_unusable()
    if why:
        report.skipped.append(f"twistd web --user: {why}")
        return
    setup = "twistd web --user"
    with timed(report, f"start {len(live)} twistd web --personal servers"):
        servers = start_personal(accounts, live, [TWISTD, "-n", "--pidfile=", "-l", "{home}/twistd.log", "web",
                                                  "--personal", "--path", "{home}/site"], ".twistd-web-pb", work)
    try:
        port = free_port()
        with timed(report, f"start {setup}"):
            front = Server([TWISTD, "-n", "--pidfile=", "-l", str(work / "twistd-front.log"), "--uid", "www-data",
                            "--gid", "www-data", "web", "--user", "--listen", f"tcp:{port}:interface=127.0.0.1",
                            "--logfile", str(work / "twisted-access.log")], port)
        with front:
            expected = {f"/{name}.twistd/": personal_page(name) for name in live}
            expected |= {f"/{name}/": public_page(name) for name in public}
            with timed(report, f"check every account through {setup}"):
                check_every_account(port, expected)
            report.rows.append(load(report, setup, port, list(expected), front, list(servers.values()), work,
                                    options))
    finally:
        with timed(report, "stop the twistd personal servers"):
            stop(servers.values())


def run(report: Report, install: Install, options: argparse.Namespace) -> None:
    prefix = f"hb{os.getpid() % 100000}u"
    names = [f"{prefix}{index:04d}" for index in range(options.accounts)]
    live, public = names[:options.live], names[options.live:]
    activated = f"{prefix}act"
    started = time.monotonic()
    with ExitStack() as stack:
        accounts = stack.enter_context(many_accounts([*names, activated], gecos="hosting bench"))
        report.timings[f"create {len(names) + 1} accounts"] = time.monotonic() - started
        print(f"{len(names) + 1} accounts created: {prefix}*", file=sys.stderr, flush=True)
        with timed(report, "write their homes"):
            write_homes(accounts, [*live, activated], public)
        work = accounts.base / "bench"  # logs and wrk's files, removed with the homes
        work.mkdir()
        shutil.chown(work, "www-data", "www-data")  # the fronts' access logs
        (work / "random.lua").write_text(LUA)
        bench_trioweb(report, install, accounts, live, public, activated, work, options)
        bench_twisted(report, accounts, live, public, work, options)
        removing = time.monotonic()
    report.timings["remove every account, home and process"] = time.monotonic() - removing
    report.left_behind = [f"account {name}" for name in existing([*names, activated])]
    report.left_behind += [f"process {pid}" for pid in processes_of(set(accounts.uids.values()))]


def print_report(report: Report) -> None:
    def spread(values: list[float] | list[int]) -> str:
        if not values:
            return "-"
        digits = 1 if isinstance(values[0], float) else 0
        return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f} / {sum(values):,.0f}"

    rows = [(row.setup, f"{row.requests_per_second:,.0f}", f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", str(row.errors),
             f"{row.front_cpu_us:.0f}", f"{row.all_cpu_us:.0f}", f"{row.front_rss_mib:.1f}", str(row.front_fds),
             spread(row.personal_rss_mib), spread(row.personal_fds))
            for row in report.rows]
    table(f"{report.accounts:,} accounts, {report.live} with a personal server, the rest public_html; each request "
          f"for a random account; {report.date}; load averages before each run: "
          f"{'; '.join(' '.join(load.split()[:3]) for load in report.load_average)}",
          rows, ("front", "req/s", "p50 ms", "p99 ms", "errors", "front CPU us/req", "all CPU us/req",
                 "front RSS MiB", "front fds", "personal RSS MiB med/max/total", "personal fds med/max/total"))
    table("setup and teardown", [(step, f"{seconds:.1f} s") for step, seconds in report.timings.items()],
          ("step", "took"))
    if report.activation_ms:
        print(f"\nsocket activation through the front (--idle-exit {IDLE_EXIT:g}): first request after an idle exit "
              f"median {statistics.median(report.activation_ms):.0f} ms (all: "
              f"{', '.join(f'{ms:.0f}' for ms in report.activation_ms)}); the next request median "
              f"{statistics.median(report.warm_ms):.1f} ms")
    for reason in report.skipped:
        print(f"skipped: {reason}")
    print(f"left behind: {', '.join(report.left_behind) or 'nothing'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--live", type=int, default=50, help="accounts with a personal server running")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load for each front")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--activations", type=int, default=5, help="rounds of socket activation measured")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit(f"scripts/bench hosting must run as root: it creates {options.accounts} real accounts "
                 "and runs servers as them and as www-data (all removed afterwards)")
    if not 0 < options.live <= options.accounts:
        parser.error("--live must be between 1 and --accounts")

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same cleanup as Ctrl-C

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it (sh's `&`)
    report = Report(" ".join(["scripts/bench", "hosting", *sys.argv[1:]]),
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), options.accounts, options.live)
    try:
        with installed_for_accounts() as install:
            run(report, install, options)
    except pytest.skip.Exception as exc:
        sys.exit(f"scripts/bench hosting: {exc}")
    print_report(report)
    if options.json:
        options.json.write_text(json.dumps(asdict(report), indent=1))
    if report.left_behind:
        sys.exit(1)


if __name__ == "__main__":
    main()
