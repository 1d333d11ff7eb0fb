"""A root resource for the signal tests, written into the test's directory as a
module (``trioweb --class MODULE.Root``): it reads a file when it is built, so
a test can tell a reloaded tree from the old one, and it names the process that
answered (``x-pid``), so a test can tell workers apart."""

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT_MODULE = '''
import os
from trioweb.resource import Resource

class Root(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        with open({path!r}, "rb") as f:
            self.text = f.read()

    def render_GET(self, request):
        request.setHeader(b"x-pid", str(os.getpid()).encode())
        return self.text
'''


def write_root_module(module: Path, content: Path) -> None:
    """Write the root's module to ``module``, serving the bytes of ``content``."""
    module.write_text(ROOT_MODULE.format(path=str(content)))


def reload_three_times_under_load(process: subprocess.Popen, url: str, change: Callable[[], None]) -> int:
    """Load ``url`` with wrk (8 connections, 4 s); a second in, ``change()`` the
    site's files, then send three SIGHUPs half a second apart. Asserts that wrk
    saw no socket error and no non-2xx answer; returns how many requests it made."""
    load = subprocess.Popen(["wrk", "-t1", "-c8", "-d4s", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(1)
    change()
    for _ in range(3):
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    report, _ = load.communicate(timeout=30)
    assert load.returncode == 0, report
    assert "Socket errors" not in report and "Non-2xx" not in report, report
    return int(re.search(r"(\d+) requests in", report).group(1))
