"""What every benchmark script shares: statistics, timing, processes and memory.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). The scripts own their cases and measurements; this module owns
how a figure is summarised (median with p10-p90 and min-max), how a command
is timed, how processes are found, stopped and counted and how their memory
is read from /proc. It also puts the lab (demo/netlab.py, on the integration
tests' tests/lab.py) on the path, so that every script stands on it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(REPO / "demo"))

from netlab import start_time  # noqa: E402

__all__ = ["REPO", "start_time"]

T = TypeVar("T")


class BenchError(Exception):
    """A measured command failed: the benchmark cannot vouch for its figures."""


# -- statistics ----------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    """The median and its spread: p10-p90 and min-max."""
    return {
        "median": statistics.median(values),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio(a: float, b: float) -> float:
    """a / b, with 0 for an empty denominator (a tool that measured nothing)."""
    return a / b if b else 0.0


def paired_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of the per-round differences a - b: less sensitive to drift than the medians'."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    """The items in an order shifted by one each round (A B C, B C A, ...).

    Tools and cases alternate within every round, so that drift on the
    machine (other jobs, caches, frequency) hits all of them alike.
    """
    if not items:
        return []
    shift = round_no % len(items)
    return [*items[shift:], *items[:shift]]


# -- commands ------------------------------------------------------------------


def run_cmd(argv: Sequence[str], what: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """stdout of a command that must succeed; a BenchError otherwise."""
    try:
        r = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: did not finish within {timeout:.0f} s") from e
    if r.returncode != 0:
        said = r.stderr.strip()[-500:] or r.stdout.strip()[-500:]
        raise BenchError(f"{what}: `{' '.join(argv)}` exited {r.returncode}: {said}")
    return r.stdout


def timed(argv: Sequence[str], what: str, timeout: float = 120, env: dict[str, str] | None = None) -> float:
    """Wall time of the whole command in milliseconds; its output is not kept."""
    start = time.perf_counter_ns()
    try:
        r = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: did not finish within {timeout:.0f} s") from e
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip()[-500:]
        raise BenchError(f"{what}: `{' '.join(argv)}` exited {r.returncode}: {said}")
    return elapsed


# -- processes and memory ----------------------------------------------------------


def process_table() -> dict[int, int]:
    """pid -> parent pid, for every process on the machine (zombies left out)."""
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry)] = int(fields[1])
    return table


def descendants(table: dict[int, int], pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_name(pid: int) -> str:
    """The process's command name (/proc/PID/comm), "?" when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def kill_exact(pid: int, started: int) -> bool:
    """SIGKILL this very process (never a PID reused since); True when it was there."""
    if start_time(pid) != started:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def wait_gone(pids: dict[int, int], timeout: float) -> list[int]:
    """Wait until none of these processes (pid -> start time) lives; those alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if start_time(pid) == pids[pid]]
        if alive:
            time.sleep(0.02)
    return alive


def namespace_inode(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def processes_in_namespace(kind: str, inode: int) -> list[int]:
    """Every live process whose `kind` namespace (mnt, net, ...) is this one.

    A reference daemon runs in a mount namespace made for it alone, so this
    finds every process it started, double-forked shims included.
    """
    return [pid for pid in process_table() if namespace_inode(pid, kind) == inode]


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from smaps_rollup; (0, 0) when it is gone.

    RSS counts shared pages in every process that maps them, so a sum of RSS
    overstates many processes of one binary; PSS shares them out.
    """
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return 0, 0
    return rss, pss


def cpu_ms(pids: Iterable[int]) -> tuple[float, float]:
    """The user and system CPU time processes have used so far, in ms (their threads
    included, their children not): what they did themselves, and what the kernel
    did on their behalf."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return user * tick, system * tick


def memory_of(pids: Iterable[int]) -> dict[str, float]:
    """Summed RSS and PSS of processes, in MiB, and how many there were."""
    rss = pss = count = 0
    for pid in pids:
        r, p = memory_kib(pid)
        if r:
            rss += r
            pss += p
            count += 1
    return {"rss_mib": rss / 1024, "pss_mib": pss / 1024, "processes": count}


def mem_available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- the machine ---------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine(load_before: str) -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": load_average(),
    }


def machine_line(info: dict[str, object]) -> str:
    return (
        f"machine: {info['cpus']} CPUs, Linux {info['kernel']}, Python {info['python']}; "
        f"load average {info['load_before']} before, {info['load_after']} after"
    )
