"""The guide's Session and request encoder examples (examples/core) run and do what it says."""

from __future__ import annotations

import gzip
import re
import sys
import time

from tests.support.procs import ROOT, Process, curl, free_port

EXAMPLES = ROOT / "examples" / "core"


def run_example(name: str, *args: str) -> tuple[Process, str]:
    port = free_port()
    return Process([sys.executable, str(EXAMPLES / name), str(port), *args], port=port), f"http://127.0.0.1:{port}"


def test_session_basics(tmp_path):
    jar = str(tmp_path / "jar")
    process, url = run_example("session_basics.py")
    with process:
        first = curl("-c", jar, "-b", jar, url + "/").stdout
        uid = re.fullmatch(rb"Your session id is: ([0-9a-f]{64})", first).group(1)
        assert curl("-c", jar, "-b", jar, url + "/").stdout == first  # the cookie brings it back
        assert curl("-c", jar, "-b", jar, url + "/expire").stdout == b"Your session has been expired."
        after = curl("-c", jar, "-b", jar, url + "/").stdout
        assert after.startswith(b"Your session id is: ") and uid not in after
        # Without the cookie: a new session each time.
        assert curl(url + "/").stdout != curl(url + "/").stdout


def test_session_counter(tmp_path):
    jar = str(tmp_path / "jar")
    process, url = run_example("session_counter.py")
    with process:
        visits = [curl("-c", jar, "-b", jar, url + "/").stdout for _ in range(3)]
        assert visits == [b"Visit #1 for you!", b"Visit #2 for you!", b"Visit #3 for you!"]
        assert curl(url + "/").stdout == b"Visit #1 for you!"  # another client, its own counter


def test_session_endings(tmp_path):
    jar = str(tmp_path / "jar")
    process, url = run_example("session_endings.py", "1")  # a 1 s timeout instead of the guide's 60
    with process:
        first = curl("-c", jar, "-b", jar, url + "/").stdout
        uid = first.rsplit(b" ", 1)[1].decode()
        assert curl("-c", jar, "-b", jar, url + "/").stdout == first
        time.sleep(1.5)
        after = curl("-c", jar, "-b", jar, url + "/").stdout
        assert uid.encode() not in after  # idle past its timeout: a new session
        deadline = time.monotonic() + 5
        while f"Session {uid} has expired." not in process.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"Session {uid} has expired." in process.output()


def test_gzip_encoder():
    process, url = run_example("gzip_encoder.py")
    with process:
        raw = curl("-s", "-i", "-H", "Accept-Encoding: gzip", url + "/").stdout
        head, body = raw.split(b"\r\n\r\n", 1)
        assert b"\r\nContent-Encoding: gzip\r\n" in head and b"\r\nVary: Accept-Encoding\r\n" in head
        assert gzip.decompress(body) == b"<html>Hello, world!</html>"
        assert curl("--compressed", url + "/").stdout == b"<html>Hello, world!</html>"
        plain = curl("-s", "-i", url + "/").stdout
        assert b"Content-Encoding" not in plain and plain.endswith(b"<html>Hello, world!</html>")
