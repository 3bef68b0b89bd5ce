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


def pid_namespace_members(pid: int) -> set[int]:
    """Every process (host PIDs) in the PID namespace of pid: a container's processes."""
    import os

    try:
        wanted = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return set()
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == wanted:
                    out.add(int(entry))
            except OSError:
                continue  # ended meanwhile
    return out


def ps_table(args: list[str], pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """`ps ARGS` run on the host, its rows kept for pids: docker top's Titles and Processes.

    As Docker does: the PID column finds the rows; the last column (the command)
    may hold spaces, the others not.
    """
    import subprocess

    from dockyard.errors import InvalidArgument

    result = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise InvalidArgument(f"ps {' '.join(args)} failed: {result.stderr.strip()}")
    lines = result.stdout.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument(f"couldn't find PID field in ps output (ps {' '.join(args)})")
    column = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(fields)
    return titles, rows
