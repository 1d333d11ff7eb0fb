"""Test support: run real processes (``trioweb``, example scripts) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def trioweb_command() -> str:
    """The installed console script, next to the interpreter running the tests."""
    found = BIN / "trioweb"
    if found.exists():
        return str(found)
    located = shutil.which("trioweb")
    assert located, "the trioweb command is not installed (pip install -e .)"
    return located


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s")


class Process:
    """A child process started with its output captured in files.

    ``stop()`` sends SIGTERM and waits; the context manager always reaps it.
    """

    def __init__(self, args: list[str], *, port: int | None = None, env: dict | None = None,
                 cwd: str | Path | None = None, **popen) -> None:
        self.args = args
        self.port = port
        self.log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
        self.stdout = open(self.log_dir / f"proc-{os.getpid()}-{id(self)}.out", "w+b")
        self.stderr = open(self.log_dir / f"proc-{os.getpid()}-{id(self)}.err", "w+b")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.process = subprocess.Popen(args, stdout=self.stdout, stderr=self.stderr, env=full_env,
                                        cwd=cwd, **popen)

    def __enter__(self) -> Process:
        if self.port is not None:
            try:
                wait_for_port(self.port, self.process)
            except Exception:
                self.kill()
                raise RuntimeError(f"{self.args} did not start: {self.output()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.stdout, self.stderr):
            if not stream.closed:
                stream.flush()

    def output(self) -> str:
        text = []
        for stream in (self.stdout, self.stderr):
            stream.flush()
            stream.seek(0)
            text.append(stream.read().decode("utf-8", "replace"))
        return "\n".join(text)


def trioweb(*args: str, port: int | None = None, **kwargs) -> Process:
    """``trioweb ARGS`` listening on ``port`` (added as --listen) unless args say otherwise."""
    command = [trioweb_command(), *args]
    if port is not None and "--listen" not in args:
        command += ["--listen", f"tcp:{port}:interface=127.0.0.1"]
    return Process(command, port=port, **kwargs)


def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True,
                          timeout=timeout + 5)
