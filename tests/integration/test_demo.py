"""The tour (`make demo`): it passes, leaves nothing behind, and cleans up after a Ctrl-C too.

Its second part (demo/multihost.py) builds three hosts with an etcd
cluster and an overlay network across them; the ledger then holds their
namespaces too, and the same checks cover them.

The tour runs as `make demo` runs it (python demo/tour.py, from the
repository) under a small keeper process that is its child subreaper: every
process the tour starts, however detached (the daemon, the shim, the
containers), stays a descendant of the keeper, so what is still running
after the tour ended can be listed by ancestry rather than by name. The
keeper reports those and stops them, by PID. The lab writes every namespace,
directory and process it makes into a ledger the test names
($DOCKYARD_LAB_LEDGER), and the test checks that none of them remains.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from lab import REPO

sys.path.insert(0, str(REPO / "demo"))

from netlab import LEDGER, ledger_leftovers

TOUR = REPO / "demo" / "tour.py"

KEEPER = r"""
import ctypes, os, signal, subprocess, sys, time

PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"keeper: prctl: {os.strerror(ctypes.get_errno())}")
# In a process group of its own, as a shell runs a foreground job.
tour = subprocess.Popen([sys.executable, sys.argv[1]], process_group=0)
# Ctrl-C at a terminal reaches the whole foreground group.
signal.signal(signal.SIGINT, lambda *_: os.killpg(tour.pid, signal.SIGINT))
code = tour.wait()

def descendants():
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        mine |= more
        grew = bool(more)
    return sorted(mine - {os.getpid()})

def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return

deadline = time.monotonic() + 5
while descendants() and time.monotonic() < deadline:
    reap()
    time.sleep(0.05)
for pid in descendants():
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = "?"
    print(f"LEFT {pid} {cmdline}", file=sys.stderr, flush=True)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
time.sleep(0.2)
reap()
sys.exit(code if code >= 0 else 128 - code)
"""


def _tour(tmp_path: Path, interrupt_at: str | None = None) -> tuple[int, str, str]:
    """Run the tour under the keeper; with interrupt_at, Ctrl-C it once that line is printed."""
    with open(tmp_path / "keeper.err", "w+") as err:
        p = subprocess.Popen(
            [sys.executable, "-c", KEEPER, str(TOUR)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={
                **os.environ,
                LEDGER: str(tmp_path / "ledger"),
                "DOCKYARD_TOUR_PICTURES": str(tmp_path / "pics"),
            },
        )
        watchdog = threading.Timer(420, p.kill)
        watchdog.start()
        try:
            assert p.stdout is not None
            out = ""
            for line in p.stdout:
                out += line
                if interrupt_at is not None and line.startswith(interrupt_at):
                    p.send_signal(signal.SIGINT)
                    interrupt_at = None
            code = p.wait()
        finally:
            watchdog.cancel()
        err.seek(0)
        return code, out, err.read()


def _nothing_left(tmp_path: Path, out: str, err: str) -> None:
    found = re.search(r"\(state in (\S+)\):", out)
    assert found, out
    root = found.group(1)
    ledger = (tmp_path / "ledger").read_text().splitlines()
    namespaces = [line.split()[1] for line in ledger if line.startswith("netns ")]
    # What the tour printed is what its labs recorded: two namespaces for the first part, and for
    # the multi-host part (when it ran) a switch and three hosts.
    assert len(namespaces) in (2, 6) and all(ns in out for ns in namespaces), (ledger, out)
    assert (len(namespaces) == 6) == ("part 2: one network across three hosts" in out), out
    assert any(line.startswith("dir ") and root.startswith(line.split()[1]) for line in ledger), ledger
    assert any(line.startswith("process ") for line in ledger), "the daemon was recorded"
    assert "LEFT" not in err, err
    left = ledger_leftovers(tmp_path / "ledger")
    assert not left, left
    assert "nothing left behind" in out


def test_the_tour_passes_and_leaves_nothing(tmp_path: Path) -> None:
    code, out, err = _tour(tmp_path)
    assert code == 0, out + err
    assert "all four drivers behaved as described" in out
    assert "FAILED" not in out
    # Each driver's section ran, the container: one with its routes and a request out too.
    for title in ("1. --net none", "2. --net bridge", "3. --net host", "4. --net container:tour-web"):
        assert f"\n{title}" in out
    side = out.split("4. --net container:tour-web")[1]
    assert "$ dockyard exec tour-side ip route" in side
    assert "$ dockyard exec tour-side python3 demo/httpecho.py get http://198.51.100.2:8000/" in side
    # explain at each step, and the picture of each step, drawn by Graphviz.
    for name in ("tour-none", "tour-web --port 8080/tcp --from 198.51.100.2", "tour-host", "tour-side"):
        assert f"$ dockyard explain {name}\n" in out
    # The multi-host part: an overlay network on three hosts, containers on two pinging by name.
    multi = out.split("5. An overlay network across hosts")[1]
    assert "(host 2) $ dockyard exec tour-b ping -c 1 -W 2 tour-a" in multi
    assert "1 received" in multi and "and one overlay network spanned three hosts" in out
    for step in ("1-none", "2-bridge", "3-host", "4-container", "all-four", "5-overlay"):
        svg = ET.parse(tmp_path / "pics" / f"{step}.svg").getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    _nothing_left(tmp_path, out, err)


def test_ctrl_c_mid_tour_exits_130_and_cleans_up(tmp_path: Path) -> None:
    code, out, err = _tour(tmp_path, interrupt_at="2. --net bridge")
    assert "2. --net bridge" in out, out
    assert code == 130, out + err
    assert "interrupted" in out and "Cleaning up" in out
    assert "all four drivers" not in out
    _nothing_left(tmp_path, out, err)


def test_ctrl_c_in_the_multi_host_part_exits_130_and_cleans_up(tmp_path: Path) -> None:
    code, out, err = _tour(tmp_path, interrupt_at="5. An overlay network across hosts")
    assert "5. An overlay network across hosts" in out, out
    assert code == 130, out + err
    assert "interrupted" in out and "Cleaning up" in out
    assert "spanned three hosts" not in out
    _nothing_left(tmp_path, out, err)
