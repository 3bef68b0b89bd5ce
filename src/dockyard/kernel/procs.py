"""Processes by identity: a PID plus the kernel's start time, so a reused PID is never mistaken."""

from __future__ import annotations


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot, or 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    # A zombie counts as alive: its parent (the shim) has not recorded its status yet.
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, started: int) -> bool:
    return pid > 0 and started > 0 and start_time(pid) == started
