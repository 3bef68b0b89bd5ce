"""Crash safety, by fault injection: kill the daemon at every step of every container and network command.

The daemon runs with DOCKYARD_FAULT=<step>@<n> and dies with SIGKILL the
n-th time it passes that step, as a crash would. The next command starts a
new daemon, which must finish or undo what was cut short: afterwards the
kernel holds exactly what the state owns (veths, pins, map elements, host
ports), no address is given twice, and the whole sequence of operations can
be run again and succeeds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest
from crash_scenario import SCENARIO, scenario

from dockyard.clients.api import Client
from dockyard.errors import DaemonUnavailable
from lab import HOST_ADDR, PROBE, UP_ADDR, Lab, pid_alive

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
    "endpoint.unplugged",
    "disconnect.done",
    "stop.sigterm",
    "exit.teardown",
    "endpoint.release",
    "teardown.sandbox",
    "endpoint.reaping",
    "endpoint.reaped",
    "rm.records",
    # run --rm, in the foreground: the container goes when it ends.
    "run.begin",
    "run.sandbox",
    "run.spawn",
    "run.spawned",
    "run.done",
    "exit.teardown",
    "endpoint.release",
    "teardown.sandbox",
    "exit.remove",
    # run -d --rm of a process that ignores SIGTERM, then stop -t 0.
    "run.begin",
    "run.sandbox",
    "run.spawn",
    "run.spawned",
    "run.done",
    "stop.sigterm",
    "stop.sigkill",
    "exit.teardown",
    "endpoint.release",
    "teardown.sandbox",
    "exit.remove",
    # run -d, then rm -f while it runs.
    "run.begin",
    "run.sandbox",
    "run.spawn",
    "run.spawned",
    "run.done",
    "rm.kill",
    "exit.teardown",
    "endpoint.release",
    "teardown.sandbox",
    "rm.records",
    "network.rm.begin",
    "network.rm.kernel",
    "network.rm.begin",
    "network.rm.kernel",
]


# What the first `system gc` after a crash at each step prints (regular
# expressions, line by line; no entry: "nothing to remove"). It is the report
# of the reconciliation done by the daemon that gc started. A release names the
# endpoint's IPv4 address, or its IPv6 one on an IPv6-only network.
VETH, PID = r"veth[0-9a-f]{7}", r"[0-9]+"
START = ["run.begin", "run.sandbox", "run.spawn", "run.spawned"]
PLUG = ["endpoint.recorded", "endpoint.join", "endpoint.publish", "endpoint.plugged"]
GC_SAYS: dict[str, list[str]] = {
    "network.create.recorded@1": ["network n1: undid a creation cut short"],
    **{f"{s}@1": ["container web: undid a start cut short"] for s in [*START, *PLUG]},
    "network.create.recorded@2": ["network n2: undid a creation cut short"],
    **{f"{s}@2": [f"endpoint {VETH}: undid a connect cut short"] for s in PLUG},
    "connect.done@1": [f"endpoint {VETH}: undid a connect cut short"],
    **{
        p: [rf"endpoint {VETH}: released (10\.89\.0\.2|fd00:89::2)"]
        for p in ("endpoint.release@1", "endpoint.unplugged@1")
    },
    "exit.teardown@1": [f"container web: process {PID} gone, recorded exit 143"],
    **{
        p: [
            f"container web: process {PID} gone, recorded exit 143",
            rf"endpoint {VETH}: released (10\.88\.0\.10|fd00:88::10)",
        ]
        for p in ("endpoint.release@2", "teardown.sandbox@1")
    },
    **{
        p: [rf"endpoint {VETH}: released (10\.88\.0\.10|fd00:88::10)"]
        for p in ("endpoint.reaping@1", "endpoint.reaped@1")
    },
    "rm.records@1": ["container web: finished a removal cut short"],
    # run --rm (once), run -d --rm + stop (stubborn), run -d + rm -f (doomed)
    **{
        f"{s}@{n}": [f"container {name}: undid a start cut short"]
        for n, name in ((2, "once"), (3, "stubborn"), (4, "doomed"))
        for s in START
    },
    **{
        p: [
            f"container {name}: process {PID} gone, recorded exit {code}",
            rf"container {name}: removed \(--rm\)",
        ]
        for name, code, n in (("once", 0, 2), ("stubborn", 137, 3))
        for p in (
            f"run.done@{n}" if name == "once" else "",
            f"exit.teardown@{n}",
            f"endpoint.release@{n + 1}",
            f"teardown.sandbox@{n}",
        )
        if p
    },
    "exit.remove@1": [r"container once: removed \(--rm\), its removal was cut short"],
    "exit.remove@2": [r"container stubborn: removed \(--rm\), its removal was cut short"],
    **{
        p: ["container doomed: finished a removal cut short"]
        for p in ("rm.kill@1", "exit.teardown@4", "endpoint.release@5", "teardown.sandbox@4", "rm.records@2")
    },
    **{f"network.rm.{s}@1": ["network n2: finished a removal cut short"] for s in ("begin", "kernel")},
    **{f"network.rm.{s}@2": ["network n1: finished a removal cut short"] for s in ("begin", "kernel")},
}


def _points() -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for name in TRACE:
        seen[name] += 1
        out.append(f"{name}@{seen[name]}")
    return out


def _daemon(lab: Lab, env: dict[str, str]) -> subprocess.Popen[str]:
    lab.root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dockyard.daemon.main", "--root", str(lab.root), "--host-netns", lab.host]
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


def _key(item: object) -> str:
    return json.dumps(item, sort_keys=True)


def _nft_sets(lab: Lab) -> dict[str, list[str]]:
    """Every set and map of `inet dockyard` and `bridge dockyard`, with its elements (comments dropped)."""
    out = {}
    for family in ("inet", "bridge"):
        table = lab.nft_table(family) or {"nftables": []}
        names = [body["name"] for obj in table["nftables"] if (body := obj.get("set") or obj.get("map"))]
        out.update({name: sorted(_key(item) for item in lab.map_elements(name, family)) for name in names})
    return out


def _link_local(mac: str) -> str:
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *[0] * 6, *eui])))


def _sets_the_records_imply(lab: Lab, running: list[dict]) -> dict[str, list[str]]:
    """What the tables must hold, worked out from what inspect shows (not from dockyard's rules)."""
    want: dict[str, list[object]] = {
        name: []
        for name in (
            "bridges",
            "masq_nets",
            "bridge_nets",
            "icc_pairs",
            "dns_gateways",
            "internal",
            "publish_any",
            "publish_addr",
            "guarded_ports",
            "port_macs",
            "port_addrs",
            "no_icc_ports",
            # IPv6's twins (dual-stack networks), and routed mode's set (the scenario has none).
            "masq_nets6",
            "bridge_nets6",
            "dns_gateways6",
            "publish_any6",
            "publish_addr6",
            "port_addrs6",
            "port_targets6",
            "routed6",
        )
    }
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    no_icc = set()
    for n in json.loads(lab.dy_ok("network", "inspect", *names)):
        if n["Driver"] != "bridge":
            continue
        opts = n["Options"]
        if opts.get("com.docker.network.bridge.enable_icc", "true") != "true":
            no_icc.add(n["Name"])
        bridge = opts.get("com.docker.network.bridge.name") or "dy-" + n["Id"][:12]
        want["bridges"].append(bridge)
        if opts.get("com.docker.network.bridge.enable_icc", "true") == "true":
            want["icc_pairs"].append({"concat": [bridge, bridge]})
        if n["Internal"]:
            want["internal"].append(bridge)
        for config in n["IPAM"]["Config"]:
            address, _, length = config["Subnet"].partition("/")
            subnet = {"prefix": {"addr": address, "len": int(length)}}
            six = "6" if ":" in address else ""
            want["bridge_nets" + six].append({"concat": [subnet, bridge]})
            masquerade = opts.get("com.docker.network.bridge.enable_ip_masquerade", "true") == "true"
            if not n["Internal"] and masquerade:
                want["masq_nets" + six].append(subnet)
            if n["Name"] != "bridge":
                want["dns_gateways" + six].append(config["Gateway"])
    for i in running:
        for name, net in i["NetworkSettings"]["Networks"].items():
            if not net["IPAddress"] and not net["GlobalIPv6Address"]:
                continue  # host or none: no endpoint
            # The endpoint's bridge port is named after its id (veth + 7 hex).
            port = "veth" + net["EndpointID"][:7]
            want["guarded_ports"].append(port)
            want["port_macs"].append({"concat": [port, net["MacAddress"]]})
            if net["IPAddress"]:  # none on an IPv6-only network
                want["port_addrs"].append({"concat": [port, net["IPAddress"]]})
            if net["GlobalIPv6Address"]:
                # Its own address and the link-local one its MAC gives (EUI-64, RFC 4291).
                for addr in (net["GlobalIPv6Address"], _link_local(net["MacAddress"])):
                    want["port_addrs6"].append({"concat": [port, addr]})
                    want["port_targets6"].append(
                        {"concat": [port, f"0x{int(ipaddress.IPv6Address(addr)):032x}"]}
                    )
            if name in no_icc:
                want["no_icc_ports"].append(port)
        own = i["NetworkSettings"]["Networks"].get(i["HostConfig"]["NetworkMode"])
        for port, binds in (i["NetworkSettings"]["Ports"] or {}).items():
            container_port, proto = port.split("/")
            for b in binds or []:
                six = "6" if ":" in b["HostIp"] else ""
                target = {"concat": [own["GlobalIPv6Address" if six else "IPAddress"], int(container_port)]}
                if b["HostIp"] in ("", "0.0.0.0", "::"):
                    want["publish_any" + six].append([{"concat": [proto, int(b["HostPort"])]}, target])
                else:
                    want["publish_addr" + six].append(
                        [{"concat": [b["HostIp"], proto, int(b["HostPort"])]}, target]
                    )
    return {name: sorted(_key(item) for item in items) for name, items in want.items()}


def _assert_consistent(lab: Lab) -> None:
    """The kernel holds what the state owns, nothing more."""
    ids = lab.dy_ok("ps", "-aq", "--no-trunc").split()
    infos = [lab.inspect(i) for i in ids]
    running = [i for i in infos if i["State"]["Running"]]
    # A --rm container is removed once it has ended, whatever was cut short.
    assert not [i["Name"] for i in infos if i["HostConfig"]["AutoRemove"] and not i["State"]["Running"]]
    # A host or none container is listed on its network with no address: no endpoint.
    endpoints = [
        net
        for i in running
        for net in i["NetworkSettings"]["Networks"].values()
        if net["IPAddress"] or net["GlobalIPv6Address"]
    ]
    assert len(_veths(lab)) == len(endpoints), (_veths(lab), endpoints)
    addresses = [net["IPAddress"] for net in endpoints if net["IPAddress"]]
    assert len(set(addresses)) == len(addresses)
    addresses6 = [net["GlobalIPv6Address"] for net in endpoints if net["GlobalIPv6Address"]]
    assert len(set(addresses6)) == len(addresses6)
    # Each IPv6 address the state gives is the one the container's interface has, once.
    for i in running:
        for net in i["NetworkSettings"]["Networks"].values():
            if net["GlobalIPv6Address"]:
                seen = subprocess.run(
                    ["nsenter", f"--net={i['NetworkSettings']['SandboxKey']}", "ip", "-6", "-o", "addr"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                assert seen.count(f" {net['GlobalIPv6Address']}/{net['GlobalIPv6PrefixLen']} ") == 1, seen
    pins = sorted(os.listdir(lab.root / "netns")) if (lab.root / "netns").exists() else []
    assert pins == sorted(i["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1] for i in running)
    shim = int((lab.root / "shim.pid").read_text())
    children = subprocess.run(["pgrep", "-P", str(shim)], capture_output=True, text=True).stdout.split()
    assert sorted(int(c) for c in children) == sorted(i["State"]["Pid"] for i in running)
    assert _nft_sets(lab) == _sets_the_records_imply(lab, running)


def _settled(lab: Lab) -> bool:
    """Wait until the reaper has removed the veths of containers that ended
    (it works after the command has answered); False if the daemon died."""
    try:
        Client(str(lab.root), autostart=False).settle()
    except DaemonUnavailable:
        return False
    return True


def test_the_scenario_passes_the_steps_tested(lab: Lab) -> None:
    daemon = _daemon(lab, {"DOCKYARD_TRACE": "1"})
    ctx: dict[str, str] = {}
    for _label, op in SCENARIO:
        op(lab, ctx)
        assert _settled(lab)
    lab.dy_ok("daemon", "stop")
    assert daemon.stderr is not None
    traced = [line.split()[2] for line in daemon.stderr.read().splitlines() if line.startswith("trace ")]
    assert traced == TRACE


# The scenario's three families: IPv4 networks, dual-stack ones (the same steps, each
# endpoint leasing and configuring an IPv6 address beside its IPv4 one) and IPv6-only
# ones (each endpoint with an IPv6 address and none of IPv4).
FAMILIES = ("ipv4", "dual", "ipv6only")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fault", _points())
def test_a_crash_at_any_step_is_recovered(lab: Lab, fault: str, family: str) -> None:
    steps = scenario(family)
    daemon = _daemon(lab, {"DOCKYARD_FAULT": fault})
    ctx: dict[str, str] = {}
    for _label, op in steps:
        try:
            op(lab, ctx)
        except AssertionError:
            break  # the command failed: the daemon died under it
        # The reaper's work is done before the next command, as in the trace:
        # each point cuts one known state (a veth still on its way out when
        # another command's step is cut would add its release to gc's report).
        if not _settled(lab) or daemon.poll() is not None:
            break
    # Steps on the daemon's own threads (exits, the reaper) may come a little later.
    try:
        daemon.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon never reached {fault}")
    assert daemon.returncode == -9
    # Any command starts a new daemon, which settles what was cut short, and
    # gc tells what it was; then there is nothing left to do.
    first = lab.dy_ok("system", "gc").splitlines()
    wanted = GC_SAYS.get(fault) or ["nothing to remove"]
    assert len(first) == len(wanted) and all(map(re.fullmatch, wanted, first)), (fault, first, wanted)
    assert lab.dy_ok("system", "gc") == "nothing to remove\n"
    _assert_consistent(lab)
    # Clean up as a user would; then nothing is left...
    ids = lab.dy_ok("ps", "-aq", "--no-trunc").split()
    if ids:
        lab.dy_ok("rm", "-f", *ids)
    lab.dy_ok("network", "prune", "-f")
    lab.dy_ok("system", "gc")
    assert _veths(lab) == []
    assert lab.map_elements("publish_any") == [] and lab.map_elements("publish_any6") == []
    assert not (lab.root / "netns").exists() or os.listdir(lab.root / "netns") == []
    # Port 8080 is free on both families (an IPv6-only network's hold is on [::] alone).
    bind = lab.in_host(
        sys.executable,
        "-c",
        "import socket; s=socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen()\n"
        "s6=socket.socket(socket.AF_INET6); s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
        "s6.bind(('::', 8080)); s6.listen()",
    )
    assert bind.returncode == 0, bind.stderr
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "host", "none"]
    # ...and the same operations, same addresses and port included, succeed again.
    ctx = {}
    for _label, op in steps:
        op(lab, ctx)
    assert lab.dy_ok("ps", "-aq") == ""
    _assert_consistent(lab)


def _shim_children(lab: Lab) -> list[int]:
    shim = int((lab.root / "shim.pid").read_text())
    out = subprocess.run(["pgrep", "-P", str(shim)], capture_output=True, text=True).stdout.split()
    return sorted(int(pid) for pid in out)


def _port_free(lab: Lab, port: int) -> bool:
    """No host-port hold (nor anything else) keeps the port in the host namespace."""
    code = f"import socket; s=socket.socket(); s.bind(('0.0.0.0', {port})); s.listen()"
    return lab.in_host(sys.executable, "-c", code).returncode == 0


def _serve_args(*run_args: str) -> tuple[str, ...]:
    return (*run_args, sys.executable, PROBE, "serve", "tcp", "80")


def test_a_container_killed_from_outside_leaves_nothing_behind(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    spec = ("--name", "victim", "--net", "n1", "--ip", "10.88.0.10", "-p", "8080:80")
    cid = lab.serve(*spec)
    info = lab.inspect(cid)
    pin = info["NetworkSettings"]["SandboxKey"]
    assert _veths(lab) and lab.map_elements("publish_any") and os.path.exists(pin)
    assert not _port_free(lab, 8080)
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    lab.eventually(lambda: not lab.inspect(cid)["State"]["Running"], what="the exit recorded")
    state = lab.inspect(cid)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    lab.eventually(lambda: _veths(lab) == [], what="veth removed")
    assert lab.map_elements("publish_any") == []
    assert not os.path.exists(pin)
    assert _port_free(lab, 8080)
    _assert_consistent(lab)
    # The same address and port can be taken again, and answer.
    lab.dy_ok("rm", "victim")
    lab.serve(*spec)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    _assert_consistent(lab)


def test_a_failure_right_after_the_spawn_leaves_no_process(lab: Lab) -> None:
    """A start that fails once its process runs (here: recording it) kills that process itself."""
    daemon = _daemon(lab, {"DOCKYARD_FAULT": "run.spawned:error"})
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    spec = ("--name", "web", "--net", "n1", "--ip", "10.88.0.10", "-p", "8080:80")
    r = lab.dy("run", "-d", *_serve_args(*spec))
    assert r.returncode == 125 and "injected failure at step run.spawned" in r.stderr, r.stderr
    assert daemon.poll() is None  # a handled failure, not a crash
    lab.eventually(lambda: _shim_children(lab) == [], what="the started process killed")
    assert lab.dy_ok("ps", "-aq") == ""
    assert _veths(lab) == [] and lab.map_elements("publish_any") == [] and _port_free(lab, 8080)
    assert not (lab.root / "netns").exists() or os.listdir(lab.root / "netns") == []
    # The fault was for the first passage only: the same run succeeds now.
    lab.serve(*spec)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    _assert_consistent(lab)


def test_a_rollback_that_fails_is_reported_and_gc_finishes_it(lab: Lab) -> None:
    """A start fails once its process runs, and the removal of its sandbox fails too while
    it is undone: the user is told what could not be undone, the daemon's log has both
    failures with their tracebacks, and `system gc` removes the pin that was left."""
    daemon = _daemon(lab, {"DOCKYARD_FAULT": "run.spawned:error,undo.run.sandbox:error"})
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    spec = ("--name", "web", "--net", "n1", "--ip", "10.88.0.10", "-p", "8080:80")
    r = lab.dy("run", "-d", *_serve_args(*spec))
    assert r.returncode == 125, r.stderr
    assert "injected failure at step run.spawned" in r.stderr, r.stderr
    assert "rollback also failed: injected failure at step undo.run.sandbox" in r.stderr, r.stderr
    assert daemon.poll() is None  # a handled failure, not a crash
    # Every other undo step ran: no process, veth, published port nor record is left...
    lab.eventually(lambda: _shim_children(lab) == [], what="the started process killed")
    assert lab.dy_ok("ps", "-aq") == ""
    assert _veths(lab) == [] and lab.map_elements("publish_any") == [] and _port_free(lab, 8080)
    # ...but the sandbox's pin is, until gc.
    pins = os.listdir(lab.root / "netns")
    assert len(pins) == 1, pins
    out = lab.dy_ok("system", "gc").splitlines()
    assert f"sandbox pin {pins[0]}: removed" in out, out
    assert os.listdir(lab.root / "netns") == []
    # The daemon's log: the start's failure with its traceback, and the undo step's.
    lab.dy_ok("daemon", "stop")
    assert daemon.wait(timeout=30) == 0
    assert daemon.stderr is not None
    log = daemon.stderr.read()
    assert (
        "start of container web failed (injected failure at step run.spawned); rollback also failed: " in log
    ), log
    assert "rollback step of start of container web failed" in log, log
    assert log.count("Traceback (most recent call last)") >= 2, log
    # The fault was for the first passages only: the same run succeeds now.
    lab.serve(*spec)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    _assert_consistent(lab)


def _ports_in_use(lab: Lab, first: int, last: int) -> list[int]:
    """The ports of first-last that the host namespace would not let a process bind (TCP, every address)."""
    code = textwrap.dedent(f"""
        import socket
        for port in range({first}, {last} + 1):
            s = socket.socket()
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                print(port)
            s.close()
    """)
    r = lab.in_host(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    return [int(line) for line in r.stdout.split()]


def test_a_failed_start_lets_every_port_of_a_range_go(lab: Lab) -> None:
    """A start with a long range fails after its ports were reserved (at the veth): it is
    undone whole, every port of the range let go; a port of the range that a host process
    holds fails the start before anything is made, and the others stay free."""
    _daemon(lab, {"DOCKYARD_FAULT": "endpoint.join:error"})
    lab.dy_ok("ps")
    spec = ("-p", "30001-30200:30001-30200", "sleep", "300")
    r = lab.dy("run", "-d", "--name", "ra", *spec)
    assert r.returncode == 125 and "injected failure at step endpoint.join" in r.stderr, r.stderr
    assert lab.dy_ok("ps", "-aq") == ""
    assert _veths(lab) == [] and lab.map_elements("publish_any") == []
    assert _ports_in_use(lab, 30001, 30200) == []
    # A host process holds a port in the middle: its refusal is what the user reads.
    holder = lab.hold_port(30150)
    r = lab.dy("run", "-d", "--name", "rb", *spec)
    assert r.returncode == 125, r.stderr
    assert r.stderr.strip() == (
        "dockyard: cannot publish 0.0.0.0:30150/tcp: address already in use by another process"
    ), r.stderr
    assert _veths(lab) == [] and lab.map_elements("publish_any") == []
    assert _ports_in_use(lab, 30001, 30200) == [30150]
    holder.kill()
    holder.wait()
    # The fault was for the first passage only: the same range publishes now.
    lab.run_d("--name", "rc", *spec)
    assert len(lab.map_elements("publish_any")) == 200
    assert _ports_in_use(lab, 30001, 30200) == list(range(30001, 30201))
    _assert_consistent(lab)


def test_gc_kills_a_process_that_no_record_owns(lab: Lab) -> None:
    cid = lab.run_d("--name", "lost", "--net", "none", "sleep", "300")
    pid = lab.inspect(cid)["State"]["Pid"]
    lab.dy_ok("daemon", "stop")
    # The state forgets the container (as a state restored from an older copy would).
    db = sqlite3.connect(lab.root / "dockyard.db")
    with db:
        db.execute("DELETE FROM containers WHERE id=?", (cid,))
    db.close()
    assert pid_alive(pid)
    out = lab.dy_ok("system", "gc").splitlines()
    assert f"process {pid} of container {cid[:12]}: killed, no running container owns it" in out, out
    assert f"sandbox pin {cid[:16]}: removed" in out, out
    lab.eventually(lambda: not pid_alive(pid), what="the process gone")
    assert lab.dy_ok("system", "gc") == "nothing to remove\n"
    _assert_consistent(lab)


def test_the_next_command_records_an_exit_nobody_reported(lab: Lab) -> None:
    """The shim died, then the container: no exit is reported, and the next
    ordinary command (no gc; the monitor kept out of the way) records it."""
    _daemon(lab, {"DOCKYARD_MONITOR_INTERVAL": "3600", "DOCKYARD_CHECK_INTERVAL": "0"})
    cid = lab.serve("--name", "orphan", "-p", "8080:80")
    pid = lab.inspect(cid)["State"]["Pid"]
    shim = int((lab.root / "shim.pid").read_text())
    os.kill(shim, signal.SIGKILL)
    lab.eventually(lambda: not pid_alive(shim), what="the shim gone")
    os.kill(pid, signal.SIGKILL)
    lab.eventually(lambda: not pid_alive(pid), what="the container's process gone")
    assert _veths(lab) and lab.map_elements("publish_any")
    state = lab.inspect("orphan")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    lab.eventually(lambda: _veths(lab) == [], what="veth removed")
    assert lab.map_elements("publish_any") == [] and _port_free(lab, 8080)


def test_the_next_command_finishes_a_release_that_failed(lab: Lab) -> None:
    """A disconnect fails half-way and leaves its endpoint 'releasing' (veth,
    published port, address): the next ordinary command finishes it, no gc."""
    _daemon(lab, {"DOCKYARD_FAULT": "endpoint.release:error", "DOCKYARD_MONITOR_INTERVAL": "3600"})
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    spec = ("--net", "n1", "--ip", "10.88.0.10", "-p", "8080:80")
    lab.serve("--name", "web", *spec)
    r = lab.dy("network", "disconnect", "n1", "web")
    assert r.returncode == 125 and "injected failure at step endpoint.release" in r.stderr, r.stderr
    assert _veths(lab) and lab.map_elements("publish_any") and not _port_free(lab, 8080)
    # Commands throttle the check to once a second: the first one after that does it.
    lab.eventually(lambda: lab.dy_ok("ps") and _veths(lab) == [], what="the release finished by ps")
    assert lab.map_elements("publish_any") == [] and _port_free(lab, 8080)
    # The address and the port are free again.
    lab.serve("--name", "web2", *spec)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")


def test_a_failed_network_rm_keeps_the_network_whole(lab: Lab) -> None:
    """The kernel step of `network rm` fails: the network stays as recorded,
    bridge and elements made again, and no intent is left for a gc to finish."""
    _daemon(lab, {"DOCKYARD_FAULT": "network.rm.kernel:error"})
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    before = _nft_sets(lab), sorted(lab.links())
    r = lab.dy("network", "rm", "n1")
    assert r.returncode == 125 and "injected failure at step network.rm.kernel" in r.stderr, r.stderr
    assert (_nft_sets(lab), sorted(lab.links())) == before
    assert lab.dy_ok("system", "gc") == "nothing to remove\n"
    assert "n1" in lab.dy_ok("network", "ls").split()
    cid = lab.serve("--net", "n1", "-p", "8080:80")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    lab.dy_ok("rm", "-f", cid)
    lab.dy_ok("network", "rm", "n1")
    assert "n1" not in lab.dy_ok("network", "ls").split()


def test_a_network_removal_cut_short_keeps_a_network_with_endpoints(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    lab.serve("--name", "web", "--net", "n1", "-p", "8080:80")
    network_id = json.loads(lab.dy_ok("network", "inspect", "n1"))[0]["Id"]
    lab.dy_ok("daemon", "stop")
    # A removal's intent, left by a crash, for a network that has an endpoint
    # (which `network rm` itself refuses, under the engine's lock).
    db = sqlite3.connect(lab.root / "dockyard.db")
    with db:
        db.execute("INSERT INTO intents(op, subject, created) VALUES('network.rm', ?, '')", (network_id,))
    db.close()
    out = lab.dy_ok("system", "gc").splitlines()
    assert "not removed: network n1: kept, its removal was cut short and it has endpoints" in out, out
    assert "n1" in lab.dy_ok("network", "ls").split()
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    _assert_consistent(lab)


def test_the_reaper_behind_a_command_is_never_seen(lab: Lab) -> None:
    """The reaper finishes an ended container's release after the command has
    answered (here it is held at a gate the test opens): what a user does next must not see
    it. A disconnected container is off the network at once; an address asked for again, and
    a prune, wait for the reaper rather than fail or skip."""
    gate = lab.root.parent / "reaper-gate"
    _daemon(lab, {"DOCKYARD_DELAY": f"endpoint.reaped={gate}"})
    try:
        _the_reaper_is_never_seen(lab, gate)
    finally:
        gate.touch()  # a failed assertion must not leave the reaper held for the teardown


def _open_soon(gate: Path) -> None:
    """Open the reaper's gate a moment from now: the command the test runs next finds the
    reaper held (or, on a slow machine, already through: it must answer the same either way)."""
    opener = threading.Timer(0.5, gate.touch)
    opener.daemon = True
    opener.start()


def _the_reaper_is_never_seen(lab: Lab, gate: Path) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.88.0.0/24", "n1")
    lab.dy_ok("network", "create", "--subnet", "10.89.0.0/24", "n2")
    spec = ("--name", "web", "--net", "n1", "--ip", "10.88.0.10", "-p", "8080:80")
    lab.serve(*spec)
    lab.dy_ok("network", "connect", "n2", "web")
    lab.dy_ok("network", "disconnect", "n2", "web")
    assert lab.dy_ok("exec", "web", "ls", "/sys/class/net").split() == ["eth0", "lo"]
    assert lab.releasing() == 0
    lab.dy_ok("rm", "-f", "web")
    assert lab.releasing() == 1  # web's address is still leased: the reaper is held
    _open_soon(gate)  # while the next command, asking for that address, waits for the reaper
    lab.serve(*spec)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    gate.unlink()
    lab.dy_ok("rm", "-f", "web")
    assert lab.releasing() == 1
    _open_soon(gate)
    assert lab.dy_ok("network", "prune", "-f").split() == ["Deleted", "Networks:", "n1", "n2"]
    assert lab.releasing() == 0 and _veths(lab) == []
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "host", "none"]
