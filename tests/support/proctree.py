"""Which processes exist, from /proc: for tests that prove no child, zombie
or orphan is left behind."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    state: str  # "Z" for a zombie
    ppid: int
    pgrp: int


def all_processes() -> list[ProcessInfo]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # the name in parentheses may hold spaces
        found.append(ProcessInfo(int(entry), fields[0].decode(), int(fields[1]), int(fields[2])))
    return found


def children_of(pid: int) -> list[ProcessInfo]:
    """The processes whose parent is ``pid`` (zombies included)."""
    return [p for p in all_processes() if p.ppid == pid]


def in_group(pgrp: int) -> list[ProcessInfo]:
    """The processes of the process group ``pgrp``."""
    return [p for p in all_processes() if p.pgrp == pgrp]


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    return any(p.pid == pid and p.state != "Z" for p in all_processes())
