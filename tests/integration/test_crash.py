"""Crash safety, by fault injection: kill the daemon at every step of every mutating command.

The daemon runs with DOCKYARD_FAULT=<step>@<n> and dies with SIGKILL the
n-th time it passes that step, as a crash would. The next command starts a
new daemon, which must finish or undo what was cut short: afterwards the
kernel holds exactly what the state owns (veths, pins, map elements, host
ports), no address is given twice, and the whole sequence of operations can
be run again and succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from crash_scenario import SCENARIO

from lab import Lab

# What the scenario passes through, in order (checked against a trace below).
TRACE = [
    "network.create.recorded",
    "network.create.done",
    "run.begin",
    "endpoint.recorded",
    "run.sandbox",
    "endpoint.join",
    "endpoint.publish",
    "endpoint.plugged",
    "run.spawn",
    "run.spawned",
    "run.done",
    "network.create.recorded",
    "network.create.done",
    "endpoint.recorded",
    "endpoint.join",
    "endpoint.publish",
    "endpoint.plugged",
    "connect.done",
    "disconnect.begin",
    "endpoint.release",
    "disconnect.done",
    "endpoint.reaped",
    "stop.sigterm",
    "exit.teardown",
    "endpoint.release",
    "teardown.sandbox",
    "endpoint.reaped",
    "rm.records",
    "network.rm.begin",
    "network.rm.kernel",
    "network.rm.begin",
    "network.rm.kernel",
]


def _points() -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for name in TRACE:
        seen[name] += 1
        out.append(f"{name}@{seen[name]}")
    return out


def _daemon(lab: Lab, env: dict[str, str]) -> subprocess.Popen[str]:
    lab.root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dockyard.daemon", "--root", str(lab.root), "--host-netns", lab.host]
    p = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lab.procs.append(p)
    assert p.stderr is not None
    for line in p.stderr:
        if "serving" in line and "dockyardd" in line:
            break
    return p


def _veths(lab: Lab) -> list[str]:
    return sorted(n for n in lab.links() if n.startswith("veth"))


def _assert_consistent(lab: Lab) -> None:
    """The kernel holds what the state owns, nothing more."""
    ids = lab.dy_ok("ps", "-aq", "--no-trunc").split()
    infos = [lab.inspect(i) for i in ids]
    running = [i for i in infos if i["State"]["Running"]]
    endpoints = [net for i in running for net in i["NetworkSettings"]["Networks"].values()]
    assert len(_veths(lab)) == len(endpoints), (_veths(lab), endpoints)
    addresses = [net["IPAddress"] for net in endpoints]
    assert len(set(addresses)) == len(addresses)
    pins = sorted(os.listdir(lab.root / "netns")) if (lab.root / "netns").exists() else []
    assert pins == sorted(i["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1] for i in running)
    shim = int((lab.root / "shim.pid").read_text())
    children = subprocess.run(["pgrep", "-P", str(shim)], capture_output=True, text=True).stdout.split()
    assert sorted(int(c) for c in children) == sorted(i["State"]["Pid"] for i in running)
    published = sorted(p[0]["concat"][1] for p in lab.map_elements("publish_any"))
    wanted = sorted(
        int(b["HostPort"])
        for i in running
        for binds in i["NetworkSettings"]["Ports"].values()
        for b in binds or []
    )
    assert published == wanted


def test_the_scenario_passes_the_steps_tested(lab: Lab) -> None:
    daemon = _daemon(lab, {"DOCKYARD_TRACE": "1"})
    ctx: dict[str, str] = {}
    for _label, op in SCENARIO:
        op(lab, ctx)
    lab.dy_ok("daemon", "stop")
    assert daemon.stderr is not None
    traced = [line.split()[2] for line in daemon.stderr.read().splitlines() if line.startswith("trace ")]
    assert traced == TRACE


@pytest.mark.parametrize("fault", _points())
def test_a_crash_at_any_step_is_recovered(lab: Lab, fault: str) -> None:
    daemon = _daemon(lab, {"DOCKYARD_FAULT": fault})
    ctx: dict[str, str] = {}
    for _label, op in SCENARIO:
        try:
            op(lab, ctx)
        except AssertionError:
            break  # the command failed: the daemon died under it
        if daemon.poll() is not None:
            break
    # Steps on the daemon's own threads (exits, the reaper) may come a little later.
    try:
        daemon.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon never reached {fault}")
    assert daemon.returncode == -9
    # Any command starts a new daemon, which settles what was cut short.
    lab.dy_ok("system", "gc")
    _assert_consistent(lab)
    # Clean up as a user would; then nothing is left...
    ids = lab.dy_ok("ps", "-aq", "--no-trunc").split()
    if ids:
        lab.dy_ok("rm", "-f", *ids)
    lab.dy_ok("network", "prune", "-f")
    lab.dy_ok("system", "gc")
    assert _veths(lab) == []
    assert lab.map_elements("publish_any") == []
    assert not (lab.root / "netns").exists() or os.listdir(lab.root / "netns") == []
    bind = lab.in_host(
        sys.executable, "-c", "import socket; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen()"
    )
    assert bind.returncode == 0, bind.stderr
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "host", "none"]
    # ...and the same operations, same address and port included, succeed again.
    ctx = {}
    for _label, op in SCENARIO:
        op(lab, ctx)
    assert lab.dy_ok("ps", "-aq") == ""
    _assert_consistent(lab)
