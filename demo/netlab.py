"""The lab of the tour and the benchmark: tests/lab.py's Lab, with what a script adds to it.

The namespaces, their addresses, the dockyard command line and the teardown
with its leak checks are the integration tests' own (tests/lab.py), so the
tour, the benchmark and the tests stand on one lab. A script adds:

- a directory of its own (the tests get theirs from pytest), removed at the end;
- the daemon started by PID (`dockyard daemon run`), so that a Ctrl-C during
  its start still finds it; processes remembered with their start time, so
  that a PID reused since is never taken for one of ours;
- checked commands that raise LabError with what the command said;
- Ctrl-C, SIGTERM and SIGHUP turned into exceptions, and a teardown that no
  second signal cuts short, that empties the daemon first (a `run` cut short
  may still be creating its container) and says what it had to force;
- a ledger: when $DOCKYARD_LAB_LEDGER names a file, every namespace,
  directory and process a lab makes is written there before it is made, so
  that a test running a script checks exactly what that script made (never
  names by a prefix that another run may share).

`ClusterLab` is the same for several hosts: tests/etcd_lab.py's three host
namespaces on one underlay with their etcd cluster, and a dockyard daemon
per host on one overlay store (its `OverlayHost`s, as test_overlay.py uses
them), recorded in the ledger and torn down with what each part left.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from etcd_lab import EtcdLab, OverlayHost, overlay_hosts
from lab import HOST_ADDR, UP_ADDR, Lab, start_time

__all__ = [
    "HOST_ADDR",
    "HOST_IF",
    "UP_ADDR",
    "ClusterLab",
    "Interrupted",
    "LabError",
    "OverlayHost",
    "ScriptLab",
]

HOST_IF = "up0"  # the host namespace's link to the upstream (tests/lab.py names it)
NETNS_DIR = Path("/run/netns")
LEDGER = "DOCKYARD_LAB_LEDGER"


class LabError(Exception):
    """A lab step failed: the command, its exit status and what it said."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived; raised like KeyboardInterrupt so finally blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on_termination() -> None:
    """Ctrl-C raises KeyboardInterrupt (even when started with SIGINT ignored, as
    a shell's background job is); SIGTERM and SIGHUP raise Interrupted."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Let a cleanup finish: a second Ctrl-C must not cut it short."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from e
    if check and r.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


# -- the ledger ------------------------------------------------------------------------


def record(kind: str, *things: str) -> None:
    """Write what is about to be made into the ledger, when one is asked for."""
    path = os.environ.get(LEDGER)
    if path:
        with open(path, "a") as f:
            f.writelines(f"{kind} {thing}\n" for thing in things)


def ledger_leftovers(path: Path) -> list[str]:
    """What of a ledger's records still exists: namespaces, directories, mounts under
    them, processes (the same PID with the same start time)."""
    lines = path.read_text().splitlines() if path.exists() else []
    records = [line.split(" ", 1) for line in lines if " " in line]
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    left = []
    for kind, what in records:
        if kind == "netns" and (NETNS_DIR / what).exists():
            left.append(f"namespace {what}")
        elif kind == "dir":
            if os.path.exists(what):
                left.append(f"directory {what}")
            left += [f"mount {m}" for m in mounts if m.startswith(what + "/")]
        elif kind == "process":
            pid, started = (int(x) for x in what.split())
            if start_time(pid) == started:
                left.append(f"process {pid} ({cmdline(pid)})")
    return left


def add_netns(name: str) -> None:
    """A network namespace, recorded in the ledger first."""
    record("netns", name)
    run(["ip", "netns", "add", name])


def venv_dockyard() -> list[str]:
    """The dockyard command a user runs: the venv's console script, else -m."""
    script = Path(sys.executable).parent / "dockyard"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "dockyard"]


# -- the lab ---------------------------------------------------------------------------


class ScriptLab(Lab):
    """tests/lab.py's two namespaces and $ROOT, in a directory of the script's own."""

    def __init__(self, tag: str) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f"dockyard-{tag}-"))
        record("dir", str(tmp))
        super().__init__(tmp, prefix=f"{tag}-")
        self.root.mkdir()
        self.dockyard = venv_dockyard()
        self.daemon: subprocess.Popen[bytes] | None = None
        self.pids: dict[int, int] = {}  # pid -> start time, of every process the lab may have to stop
        self.extra_netns: list[str] = []

    def setup(self) -> None:
        # Recorded first: a Ctrl-C right after still finds them.
        record("netns", self.host, self.up)
        super().setup()

    def add_netns(self, name: str) -> Path:
        """One more namespace, deleted with the lab (a container's for a CNI ADD, say)."""
        self.extra_netns.append(name)
        add_netns(name)
        return NETNS_DIR / name

    # -- running things ---------------------------------------------------------

    def dy_ok(self, *args: str, timeout: float = 60) -> str:
        """stdout of a dockyard command that must succeed; a LabError otherwise."""
        try:
            r = self.dy(*args, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise LabError(f"`dockyard {' '.join(args)}` did not finish within {timeout:.0f} s") from e
        if r.returncode != 0:
            raise LabError(f"`dockyard {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def start_daemon(self, timeout: float = 20) -> int:
        """dockyardd for this lab, as `dockyard daemon run` in a session of its own.

        Started here rather than auto-started by the first command so that
        the lab knows its PID from the first instant.
        """
        with open(self.root / "daemon.log", "ab") as log:
            self.daemon = subprocess.Popen(
                self.dy_cmd("daemon", "run"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.remember_pid(self.daemon.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dy("daemon", "status").returncode == 0:
                self.remember_daemon()
                return self.daemon.pid
            if self.daemon.poll() is not None:
                break
            time.sleep(0.02)
        log_tail = (self.root / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise LabError(f"dockyardd did not start within {timeout:.0f} s: {' | '.join(log_tail)}")

    def remember_pid(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None and self.pids.get(pid) != started:
            record("process", f"{pid} {started}")
            self.pids[pid] = started

    def remember_container(self, ref: str) -> None:
        with contextlib.suppress(LabError, ValueError, KeyError, IndexError):
            pid = int(json.loads(self.dy_ok("inspect", ref))[0]["State"]["Pid"] or 0)
            if pid:
                self.remember_pid(pid)

    def pid_of(self, name: str) -> int | None:
        """The PID in $ROOT's pid file `name` (dockyardd.pid, shim.pid, dns.pid), if any."""
        return self._read_pid(name)

    def remember_daemon(self) -> None:
        """The daemon, its shim and its resolver, from their pid files (a daemon a command
        auto-started included)."""
        for name in ("dockyardd.pid", "shim.pid", "dns.pid"):
            pid = self._read_pid(name)
            if pid:
                self.remember_pid(pid)

    # -- teardown ---------------------------------------------------------------

    def teardown(self) -> list[str]:
        """tests/lab.py's teardown, emptied first; what had to be removed by force."""
        with signals_ignored():
            problems = self._empty()
            # Only what still is ours: a PID remembered long ago may belong to another process now.
            self.pids_seen |= set(self._alive())
            problems += super().teardown()
            for ns in self.extra_netns:
                r = run(["ip", "netns", "del", ns], check=False)
                if r.returncode != 0 and (NETNS_DIR / ns).exists():
                    problems.append(f"namespace {ns} could not be deleted: {r.stderr.strip()}")
            shutil.rmtree(self.tmp, ignore_errors=True)
            problems += [f"left behind: {thing}" for thing in self.leftovers()]
        return problems

    def _empty(self) -> list[str]:
        """rm -f every container until ps shows none; what went wrong, if anything."""
        if self.daemon is not None:
            # Still starting (a Ctrl-C came early): let it answer first, so that no
            # command auto-starts a second daemon.
            deadline = time.monotonic() + 20
            while self.daemon.poll() is None and time.monotonic() < deadline:
                if self.dy("daemon", "status").returncode == 0:
                    break
                time.sleep(0.05)
        if not (self.root / "dockyard.db").exists():
            return []
        problems: list[str] = []
        try:
            # Again until ps shows nothing: a `run` cut short by Ctrl-C may still be
            # creating its container in the daemon when the first ps is answered.
            for _ in range(5):
                ids = self.dy("ps", "-aq", "--no-trunc").stdout.split()
                self.remember_daemon()
                if not ids:
                    break
                for cid in ids:
                    self.remember_container(cid)
                r = self.dy("rm", "-f", *ids, timeout=600)
                if r.returncode != 0:
                    problems.append(f"dockyard rm -f failed: {r.stderr.strip()}")
                time.sleep(0.1)
        except subprocess.TimeoutExpired as e:
            problems.append(f"emptying the lab: {e}")
        return problems

    def _alive(self) -> list[int]:
        return [pid for pid, started in self.pids.items() if start_time(pid) == started]

    def leftovers(self) -> list[str]:
        """What of the lab still exists (after teardown: should be nothing)."""
        names = [self.host, self.up, *self.extra_netns]
        left = [f"namespace {ns}" for ns in names if (NETNS_DIR / ns).exists()]
        left += [f"process {pid} ({cmdline(pid)})" for pid in self._alive()]
        left += [f"process {p.pid}" for p in self.procs if p.poll() is None]
        if self.tmp.exists():
            left.append(f"directory {self.tmp}")
        return left


class ClusterLab:
    """Three hosts on an underlay (192.0.2.11-13), an etcd member on each, a dockyard root on
    each naming them all as its cluster store. `setup`, `start_daemons`, then `teardown`."""

    def __init__(self, tag: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"dockyard-{tag}-"))
        record("dir", str(self.tmp))
        self.etcd = EtcdLab(self.tmp / "etcd", prefix=f"{tag}-")
        self.hosts: list[OverlayHost] = []
        self.pids: dict[int, int] = {}  # pid -> start time, recorded in the ledger

    def setup(self) -> None:
        (self.tmp / "etcd").mkdir()
        record("netns", *self.etcd.namespaces)  # first: a Ctrl-C right after still finds them
        try:
            self.etcd.setup()
        finally:
            for m in self.etcd.members:
                if m.proc is not None:
                    self.remember_pid(m.proc.pid)
        self.hosts = overlay_hosts(self.etcd, self.tmp)
        for h in self.hosts:
            h.dockyard = venv_dockyard()

    def start_daemons(self) -> None:
        """Every host's dockyardd (started as a command starts it), its PIDs recorded."""
        for h in self.hosts:
            try:
                r = h.dy("daemon", "start", timeout=60)
            except subprocess.TimeoutExpired as e:
                raise LabError(f"dockyardd on {h.host} did not start within 60 s") from e
            for name in ("dockyardd.pid", "shim.pid", "dns.pid"):
                pid = h._read_pid(name)
                if pid:
                    self.remember_pid(pid)
            if r.returncode != 0:
                raise LabError(f"dockyardd on {h.host} did not start: {r.stderr.strip()}")

    def remember_pid(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None and self.pids.get(pid) != started:
            record("process", f"{pid} {started}")
            self.pids[pid] = started

    def remember_container(self, h: OverlayHost, ref: str) -> None:
        with contextlib.suppress(LabError, ValueError, KeyError, IndexError, AssertionError):
            pid = int(json.loads(h.dy_ok("inspect", ref))[0]["State"]["Pid"] or 0)
            if pid:
                self.remember_pid(pid)

    def stop(self) -> list[str]:
        """As a benchmark's reference daemon stops (bench/_script.py's Run): torn down."""
        return self.teardown()

    def teardown(self) -> list[str]:
        """Every host emptied and its daemon stopped, the etcd cluster stopped, the namespaces
        and the directory removed; what had to be forced or was left."""
        problems: list[str] = []
        with signals_ignored():
            for h in self.hosts:
                try:
                    problems += h.empty()
                except (subprocess.SubprocessError, OSError, AssertionError) as e:
                    problems.append(f"{h.host}: emptying it: {e}")
            problems += self.etcd.teardown()
            shutil.rmtree(self.tmp, ignore_errors=True)
            alive = [pid for pid, started in self.pids.items() if start_time(pid) == started]
            problems += [f"left behind: process {pid} ({cmdline(pid)})" for pid in alive]
            if self.tmp.exists():
                problems.append(f"left behind: directory {self.tmp}")
        return problems


def wait_for_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line a spawned process prints (it says it is ready), or a LabError."""
    assert proc.stdout is not None
    what = f"process {proc.pid} ({cmdline(proc.pid)})"
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise LabError(f"{what} said nothing within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise LabError(f"{what} exited ({proc.wait()}) before it was ready")
    return line.strip()
