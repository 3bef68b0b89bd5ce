"""Processes by identity: a PID plus the kernel's start time, so a reused PID is never mistaken."""

from __future__ import annotations


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name: state is [0], ppid [1], starttime [19].
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot, or 0 when it is gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else 0


def alive(pid: int, started: int) -> bool:
    """The same process still exists and its end is still to be reported.

    A zombie still counts while its parent (the shim) has yet to record its
    status; a zombie handed to init (the shim died) will never be reported
    by anyone, so it counts as gone.
    """
    if pid <= 0 or started <= 0:
        return False
    fields = _stat(pid)
    if fields is None or int(fields[19]) != started:
        return False
    return not (fields[0] == "Z" and fields[1] == "1")
