"""Where a loaded trioweb spends its time: py-spy (native frames included) on
the server of a `scripts/bench` scenario while wrk loads it.

    scripts/bench profile hello|static|distrib [--duration SECONDS] [--top N]

The server is started as its bench starts it (hello: the `render_GET`
resource with an access log; static: ``trioweb --path`` serving a 1 KiB
file; distrib: a front and a personal server, each profiled) and pinned to
CPU 0; wrk (``-t1 -c50``) and py-spy run on CPU 1. The table is each
function's *self* time (the innermost frame of each sample) as a share of
the process's samples, with the file it comes from; C functions of the
interpreter and of extensions appear under their own names (``--native``).
py-spy stops the process for each sample, so the absolute rate under
profiling is lower than the bench's: read the shares, not the req/s.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from bench_distrib import TRIOWEB_FRONT, TRIOWEB_PERSONAL, wait_for_socket, warm_up
from bench_hello import TRIOWEB_APP
from bench_static import SMALL
from benchlib import APPS_BIN, ROOT, TRIOWEB_PYTHON, Server, free_port, pinned, wrk

PY_SPY = APPS_BIN / "py-spy"
# A py-spy raw frame: "function (file:line)"; the line is dropped so that a
# function's samples add up.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def self_times(raw: str) -> tuple[Counter[str], int]:
    """Samples per innermost frame of py-spy's raw (collapsed-stack) output,
    and the total number of samples."""
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        found = FRAME.match(leaf)
        if found:
            where = found["file"]
            for prefix in (str(ROOT) + "/", "/usr/lib/", "/usr/local/lib/"):
                where = where.removeprefix(prefix)
            leaf = f"{found['function']}  [{re.sub(r'^.*site-packages/', '', where)}]"
        leaves[leaf] += int(count)
        total += int(count)
    return leaves, total


def print_table(title: str, raw: str, top: int) -> None:
    leaves, total = self_times(raw)
    print(f"\n{title}: {total} samples; self time, top {top}")
    for leaf, count in leaves.most_common(top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {leaf}")
    files: Counter[str] = Counter()
    for leaf, count in leaves.items():
        files[leaf.rpartition("[")[2].rstrip("]")] += count
    print("  by file:", ", ".join(f"{where} {100 * count / max(total, 1):.1f}%"
                                  for where, count in files.most_common(12)))


def profile(servers: dict[str, Server], url: str, duration: float, work: Path, top: int) -> None:
    """Load ``url`` with wrk while py-spy samples every server in ``servers``."""
    wrk(url, 2, 50)  # warm-up
    spies = {}
    for name, server in servers.items():
        output = work / f"{name}.raw"
        command = [str(PY_SPY), "record", "--native", "--rate", "400", "--format", "raw", "--output", str(output),
                   "--duration", str(int(duration)), "--pid", str(server.process.pid)]
        spies[name] = (subprocess.Popen(pinned(command, 1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                       output)
    wrk(url, duration + 1, 50)
    for name, (spy, output) in spies.items():
        _, errors = spy.communicate(timeout=60)
        if spy.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed on {name}: {errors.decode()[-2000:]}")
        print_table(f"{name} under wrk -t1 -c50 -d{duration + 1:g}s", output.read_text(), top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("hello", "static", "distrib"))
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--top", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        work = Path(tmp_name)
        port = free_port()
        if options.scenario == "hello":
            script = work / "hello.py"
            script.write_text(TRIOWEB_APP)
            servers = {"trioweb": stack.enter_context(
                Server([TRIOWEB_PYTHON, str(script), str(port), str(work / "access.log")], port))}
            url = f"http://127.0.0.1:{port}/"
        elif options.scenario == "static":
            files = work / "files"
            files.mkdir()
            (files / SMALL).write_bytes(b"<!DOCTYPE html><title>x</title>" + b"x" * (1024 - 31))
            command = [str(ROOT / ".venv" / "bin" / "trioweb"), "--path", str(files),
                       "--listen", f"tcp:{port}:interface=127.0.0.1", "--logfile", str(work / "access.log")]
            servers = {"trioweb --path": stack.enter_context(Server(command, port, cwd=work))}
            url = f"http://127.0.0.1:{port}/{SMALL}"
        else:
            personal, front, sock = work / "personal.py", work / "front.py", work / "backend.sock"
            personal.write_text(TRIOWEB_PERSONAL)
            front.write_text(TRIOWEB_FRONT)
            back = stack.enter_context(
                Server([TRIOWEB_PYTHON, str(personal), "publish", str(sock), str(work / "p.log"), str(work)], None))
            wait_for_socket(sock)
            servers = {"front": stack.enter_context(
                Server([TRIOWEB_PYTHON, str(front), str(port), str(sock), str(work / "f.log")], port)),
                "personal server": back}
            url = f"http://127.0.0.1:{port}/u/hello"
            warm_up(url)
        profile(servers, url, options.duration, work, options.top)


if __name__ == "__main__":
    main()
