"""A throwaway lab for the tour and the benchmark: a "host" network namespace
where dockyardd runs (--host-netns), an "upstream" namespace that plays the
outside world on TEST-NET addresses, a fresh $ROOT, and a teardown that
removes all of it and says what it had to clean up by force.

    upstream (dyl-u-XXXXXX)                host (dyl-h-XXXXXX)
      eth0 198.51.100.2/24  <-- veth -->     up0 198.51.100.1/24, default via .2
                                             dockyard0 ... containers

Nothing here touches the root namespace: every link, address and route is
made inside the two namespaces, and deleting them removes it all. Processes
are stopped by PID (checked against their start time, so a reused PID is
never hit), never by name. The lab owns what it made and nothing else; the
tour and the benchmark own what they print.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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

HOST_ADDR = "198.51.100.1"
UP_ADDR = "198.51.100.2"
PREFIX_LEN = 24
HOST_IF = "up0"
UP_IF = "eth0"
NETNS_DIR = Path("/run/netns")


def _venv_dockyard() -> list[str]:
    """The dockyard command a user runs: the venv's console script, else -m."""
    script = Path(sys.executable).parent / "dockyard"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "dockyard"]


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


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


class Lab:
    """Two namespaces joined by a veth pair, a $ROOT, and dockyard pointed at them."""

    def __init__(self, tag: str = "dyl") -> None:
        suffix = secrets.token_hex(3)
        self.host = f"{tag}-h-{suffix}"
        self.up = f"{tag}-u-{suffix}"
        self.root = Path(tempfile.mkdtemp(prefix=f"dockyard-{tag}-"))
        self.dockyard = _venv_dockyard()
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.daemon: subprocess.Popen[bytes] | None = None
        # pid -> start time, for every process the lab may have to stop by force.
        self.pids: dict[int, int] = {}

    # -- set-up -----------------------------------------------------------------

    def setup(self) -> None:
        for ns in (self.host, self.up):
            self.namespaces.append(ns)  # recorded first: a Ctrl-C right after still deletes it
            run(["ip", "netns", "add", ns])
        veth = ("type", "veth", "peer", "name", UP_IF, "netns", self.up)
        run(["ip", "link", "add", HOST_IF, "netns", self.host, *veth])
        for ns in (self.host, self.up):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.host, "addr", "add", f"{HOST_ADDR}/{PREFIX_LEN}", "dev", HOST_IF])
        run(["ip", "-n", self.host, "link", "set", HOST_IF, "up"])
        run(["ip", "-n", self.host, "route", "add", "default", "via", UP_ADDR])
        run(["ip", "-n", self.up, "addr", "add", f"{UP_ADDR}/{PREFIX_LEN}", "dev", UP_IF])
        run(["ip", "-n", self.up, "link", "set", UP_IF, "up"])

    # -- running things ---------------------------------------------------------

    def dy_cmd(self, *args: str) -> list[str]:
        return [*self.dockyard, "--root", str(self.root), "--host-netns", self.host, *args]

    def dy(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The dockyard CLI against this lab's root and host namespace."""
        return run(self.dy_cmd(*args), check=check, timeout=timeout)

    def in_ns(
        self, ns: str, *cmd: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)

    def spawn_in(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        """A long-running process in a namespace, in a session of its own (Ctrl-C is ours to handle)."""
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def start_daemon(self, timeout: float = 20) -> int:
        """dockyardd for this lab, as `dockyard daemon run` in a session of its own.

        Started here rather than auto-started by the first command so that
        the lab knows its PID from the first instant: a Ctrl-C during its
        start-up still finds it.
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
            if self.dy("daemon", "status", check=False).returncode == 0:
                self._remember_daemon()
                return self.daemon.pid
            if self.daemon.poll() is not None:
                break
            time.sleep(0.02)
        log_tail = (self.root / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise LabError(f"dockyardd did not start within {timeout:.0f} s: {' | '.join(log_tail)}")

    def remember_pid(self, pid: int) -> None:
        started = _start_time(pid)
        if started is not None:
            self.pids[pid] = started

    def remember_container(self, ref: str) -> None:
        with contextlib.suppress(LabError, ValueError, KeyError, IndexError):
            pid = int(json.loads(self.dy("inspect", ref).stdout)[0]["State"]["Pid"] or 0)
            if pid:
                self.remember_pid(pid)

    def _remember_daemon(self) -> None:
        for name in ("dockyardd.pid", "shim.pid"):
            with contextlib.suppress(OSError, ValueError):
                self.remember_pid(int((self.root / name).read_text().strip()))

    # -- teardown ---------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove every container, the daemon, the namespaces and $ROOT.

        Returns what had to be removed by force (empty when dockyard cleaned
        up after itself, as it should).
        """
        problems: list[str] = []
        with signals_ignored():
            self._remember_daemon()
            if self.daemon is not None:
                problems += self._dockyard_down()
            for p in self.procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(timeout=3)
            problems += self._stop_stragglers()
            problems += self._unmount_under_root()
            for ns in self.namespaces:
                r = run(["ip", "netns", "del", ns], check=False)
                if r.returncode != 0 and (NETNS_DIR / ns).exists():
                    problems.append(f"namespace {ns} could not be deleted: {r.stderr.strip()}")
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():
                problems.append(f"{self.root} could not be removed")
        return problems

    def _dockyard_down(self) -> list[str]:
        """rm -f every container, then stop the daemon; what went wrong, if anything."""
        assert self.daemon is not None
        problems: list[str] = []
        # The daemon may still be starting (a Ctrl-C came early): let it answer first,
        # so that it never auto-starts a second one, nor misses the stop.
        deadline = time.monotonic() + 20
        while self.daemon.poll() is None and time.monotonic() < deadline:
            if self.dy("daemon", "status", check=False).returncode == 0:
                break
            time.sleep(0.05)
        if self.daemon.poll() is not None:
            return problems
        self._remember_daemon()
        try:
            # Again until ps shows nothing: a `run` cut short by Ctrl-C may still be
            # creating its container in the daemon when the first ps is answered.
            for _ in range(5):
                ids = self.dy("ps", "-aq", "--no-trunc").stdout.split()
                if not ids:
                    break
                for cid in ids:
                    self.remember_container(cid)
                r = self.dy("rm", "-f", *ids, check=False)
                if r.returncode != 0:
                    problems.append(f"dockyard rm -f failed: {r.stderr.strip()}")
                time.sleep(0.1)
            self.dy("daemon", "stop")
            self.daemon.wait(timeout=30)
        except (LabError, subprocess.TimeoutExpired) as e:
            problems.append(str(e))
        return problems

    def _stop_stragglers(self) -> list[str]:
        problems: list[str] = []
        deadline = time.monotonic() + 5
        alive = self._alive()
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = self._alive()
        for pid in alive:
            problems.append(f"process {pid} ({_cmdline(pid)}) still running after dockyard stopped; killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return problems

    def _alive(self) -> list[int]:
        return [pid for pid, started in self.pids.items() if _start_time(pid) == started]

    def _unmount_under_root(self) -> list[str]:
        problems: list[str] = []
        prefix = str(self.root) + "/"
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for mountpoint in reversed(mounts):
            if mountpoint.startswith(prefix):
                problems.append(f"mount {mountpoint} left behind; unmounted")
                run(["umount", "-l", mountpoint], check=False)
        return problems

    def leftovers(self) -> list[str]:
        """What of the lab still exists (after teardown: should be nothing)."""
        left = [f"namespace {ns}" for ns in self.namespaces if (NETNS_DIR / ns).exists()]
        left += [f"process {pid}" for pid in self._alive()]
        left += [f"process {p.pid}" for p in self.procs if p.poll() is None]
        if self.root.exists():
            left.append(f"directory {self.root}")
        return left


def wait_for_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line a spawned process prints (it says it is ready), or a LabError."""
    assert proc.stdout is not None
    what = f"process {proc.pid} ({_cmdline(proc.pid)})"
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise LabError(f"{what} said nothing within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise LabError(f"{what} exited ({proc.wait()}) before it was ready")
    return line.strip()
