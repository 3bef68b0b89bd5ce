"""Crash safety of the CNI verbs: the daemon killed at every step of ADD, DEL and GC.

As in test_crash.py, the daemon runs with DOCKYARD_FAULT=<step>@<n> and dies
with SIGKILL the n-th time it passes that step. Then a new daemon (started
by any dockyard command, or by the plugin of the runtime's next call)
finishes or undoes at its start what was cut short, and the runtime goes on
as runtimes do: the DEL after a failed ADD, a DEL again, a GC again.
Afterwards `dockyard network inspect` lists only the attachments whose verb
had done its work, the host has one veth and the publish maps one element
per port of each of them and nothing else, no host port is held (the
runtime holds them, as with portmap), no address is given twice, and the
same attachments, with the same addresses and host ports, can be made again
and answer.

One lab per verb: each point is one round in it that starts from no
attachment and ends with none, so the rounds need no lab of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import Outcome, PluginFailed, Runtime, Sandboxes, dockyard_conflist, plugin_dir

from dockyard.clients.api import Client
from lab import HOST_ADDR, PROBE, UP_ADDR, Lab

NETWORK = "crashnet"
SUBNET = "10.46.0.0/24"
BRIDGE = "cni-crash0"
# The attachments the rounds make: a's address is the allocator's choice, b's and
# c's are asked for (runtimeConfig `ips`), so a second ADD must get the same one.
PORTS = {"a": 8081, "b": 8082, "c": 8083}
IPS = {"b": "10.46.0.50", "c": "10.46.0.51"}

# The steps each verb passes, in order, as DOCKYARD_TRACE shows them; the
# first test checks these lists against a trace, so a new step cannot go
# untested. The first ADD on a node also makes the network.
ADD_FIRST = [
    "network.create.recorded",
    "network.create.done",
    "cni.add.begin",
    "endpoint.recorded",
    "cni.add.recorded",
    "endpoint.join",
    "endpoint.publish",
    "endpoint.plugged",
    "cni.add.plugged",
    "cni.add.done",
]
ADD = ADD_FIRST[2:]
DEL = ["cni.del.begin", "endpoint.release", "cni.del.done", "endpoint.reaping", "endpoint.reaped"]
# GC releasing two attachments; the reaper's steps may come between the others.
GC = [
    "cni.gc.begin",
    "endpoint.release",
    "endpoint.release",
    "cni.gc.done",
    "endpoint.reaping",
    "endpoint.reaped",
    "endpoint.reaping",
    "endpoint.reaped",
]

# Where each round kills the daemon, and which attachments then count as made
# (None: not looked at before the verb is run again).
# ADD round: ADD a (the network's first), ADD b. Its network steps are killed in
# a's ADD, every other step in b's, next to a.
ADD_POINTS = {
    "network.create.recorded@1": "",
    "network.create.done@1": "",
    **{f"{s}@2": "a" for s in ADD},
    "cni.add.done@2": "ab",  # the work was done; only the answer was lost
}
# DEL round: ADD a, ADD b, DEL b; the new daemon is the one the runtime's next
# DEL starts, as the plugin does when none answers.
DEL_POINTS: dict[str, str | None] = {f"{s}@1": None for s in DEL}
# GC round: ADD a, b, c, then GC keeping a; it releases b, then c.
GC_POINTS = {
    "cni.gc.begin@1": "abc",
    "endpoint.release@1": "ac",
    "endpoint.release@2": "a",
    "cni.gc.done@1": "a",
    "endpoint.reaping@1": "a",
    "endpoint.reaped@1": "a",
    "endpoint.reaping@2": "a",
    "endpoint.reaped@2": "a",
}
POINTS: dict[str, dict[str, str | None]] = {"ADD": ADD_POINTS, "DEL": DEL_POINTS, "GC": GC_POINTS}


def _label(name: str) -> str:
    return f"cni:ctr-{name}/eth0"


class Round:
    """The lab, a runtime, and one namespace per attachment (kept for all rounds)."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.rt = Runtime([plugin_dir(tmp / "cni-bin")], prefix=["nsenter", f"--net=/run/netns/{lab.host}"])
        self.sandboxes = Sandboxes(f"dyt-k-{lab.host[-6:]}-")
        self.netns = {name: self.sandboxes.new() for name in PORTS}
        self.conflist = dockyard_conflist("1.1.0", NETWORK, SUBNET, BRIDGE, lab.root)
        self.daemons = 0
        # A server in b's namespace, for the DNAT from the upstream namespace.
        lab.spawn_in(Path(self.netns["b"]).name, sys.executable, PROBE, "serve", "tcp", "80")

    # -- the daemon ------------------------------------------------------------------

    def daemon(self, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
        """A daemon of the lab's root with env added; its stderr goes to the file returned."""
        self.lab.root.mkdir(parents=True, exist_ok=True)
        self.daemons += 1
        err = self.tmp / f"daemon-{self.daemons}.err"
        cmd = [
            sys.executable, "-m", "dockyard.daemon.main", "--root", str(self.lab.root),
            "--host-netns", self.lab.host,
        ]  # fmt: skip
        with open(err, "w") as f:
            p = subprocess.Popen(
                cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=f, text=True
            )
        self.lab.procs.append(p)
        client = Client(str(self.lab.root), autostart=False)
        deadline = time.monotonic() + 30
        while not client.ping():
            assert p.poll() is None and time.monotonic() < deadline, (env, p.poll(), err.read_text())
            time.sleep(0.02)
        return p, err

    def settle(self) -> None:
        Client(str(self.lab.root), autostart=False).settle()

    # -- the runtime's calls -----------------------------------------------------------

    def rc(self, name: str) -> dict[str, Any]:
        rc: dict[str, Any] = {
            "portMappings": [{"hostPort": PORTS[name], "containerPort": 80, "protocol": "tcp"}]
        }
        if name in IPS:
            rc["ips"] = [f"{IPS[name]}/24"]
        return rc

    def call(self, command: str, name: str = "", valid: str = "") -> Outcome:
        """One plugin execution, as the runtime makes it; its Outcome."""
        if command == "GC":
            conf = Runtime.plugin_conf(self.conflist, self.conflist["plugins"][0], None, None)
            conf["cni.dev/valid-attachments"] = [{"containerID": f"ctr-{n}", "ifname": "eth0"} for n in valid]
            return self.rt.exec("dockyard", self.rt.env("GC"), conf)
        conf = Runtime.plugin_conf(self.conflist, self.conflist["plugins"][0], None, self.rc(name))
        return self.rt.exec("dockyard", self.rt.env(command, f"ctr-{name}", self.netns[name], "eth0"), conf)

    def ok(self, command: str, name: str = "", valid: str = "") -> None:
        outcome = self.call(command, name, valid)
        if not outcome.ok:
            raise PluginFailed(outcome)

    # -- what the host shows -------------------------------------------------------------

    def members(self) -> dict[str, str]:
        """Label -> address of the network's users, as `dockyard network inspect` lists them."""
        r = self.lab.dy("network", "inspect", NETWORK)
        if r.returncode != 0:
            assert f"network {NETWORK} not found" in r.stderr, r.stderr
            return {}
        info = json.loads(r.stdout)[0]
        return {m["Name"]: m["IPv4Address"].split("/")[0] for m in info["Containers"].values()}

    def guards(self) -> tuple[list[list[str]], list[list[str]]]:
        """Each attachment's bridge port with its address and MAC: as `network inspect` implies
        them (the port is named after the endpoint id), and as the bridge table's guard holds them."""
        r = self.lab.dy("network", "inspect", NETWORK)
        members = json.loads(r.stdout)[0]["Containers"].values() if r.returncode == 0 else []
        implied = sorted(
            ["veth" + m["EndpointID"][:7], m["IPv4Address"].split("/")[0], m["MacAddress"]] for m in members
        )
        addrs = dict(e["concat"] for e in self.lab.map_elements("port_addrs", "bridge"))
        macs = dict(e["concat"] for e in self.lab.map_elements("port_macs", "bridge"))
        assert set(addrs) == set(macs) == set(self.lab.map_elements("guarded_ports", "bridge")), (addrs, macs)
        return implied, sorted([port, addrs[port], macs[port]] for port in addrs)

    def published(self) -> list[int]:
        return sorted(
            int(key["concat"][-1])
            for name in ("publish_any", "publish_addr")
            for key, _target in self.lab.map_elements(name)
        )

    def ports_free(self) -> bool:
        """The runtime can bind every host port: the daemon holds none of them."""
        code = (
            "import socket\n"
            f"for port in {sorted(PORTS.values())}:\n"
            "    s = socket.socket(); s.bind(('0.0.0.0', port)); s.listen(); s.close()\n"
        )
        r = self.lab.in_host(sys.executable, "-c", code)
        return r.returncode == 0

    def assert_made(self, names: str) -> None:
        """Exactly these attachments exist, in the state and in the kernel."""
        members = self.members()
        assert set(members) == {_label(n) for n in names}, (members, names)
        addresses = list(members.values())
        assert len(set(addresses)) == len(addresses), f"an address given twice: {members}"
        for n in names:
            if n in IPS:
                assert members[_label(n)] == IPS[n], members
        listed = Client(str(self.lab.root), autostart=False).request("GET", "/dockyard/cni/attachments")
        assert sorted(a["ContainerID"] for a in listed["Attachments"]) == [f"ctr-{n}" for n in sorted(names)]
        veths = [link for link in self.lab.links() if link.startswith("veth")]
        assert len(veths) == len(names), (veths, names)
        for n, path in self.netns.items():
            assert ("eth0" in self.lab.links(Path(path).name)) == (n in names), (n, names)
        assert self.published() == sorted(PORTS[n] for n in names)
        implied, guarded = self.guards()
        assert guarded == implied and len(guarded) == len(names), (guarded, implied)
        assert self.ports_free(), "a host port is held by the daemon"


@pytest.fixture
def rounds(lab: Lab, tmp_path: Path) -> Iterator[Round]:
    r = Round(lab, tmp_path)
    try:
        yield r
    finally:
        Lab.made |= set(r.sandboxes.names)
        r.sandboxes.close()


def _points(trace: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for name in trace:
        seen[name] += 1
        out.append(f"{name}@{seen[name]}")
    return out


def _traced(err: Path, since: int) -> tuple[list[str], int]:
    lines = err.read_text().splitlines()
    return [line.split()[2] for line in lines[since:] if line.startswith("trace ")], len(lines)


def test_the_verbs_pass_the_steps_tested(rounds: Round) -> None:
    daemon, err = rounds.daemon({"DOCKYARD_TRACE": "1"})
    seen = 0

    def steps() -> list[str]:
        nonlocal seen
        rounds.settle()
        out, seen = _traced(err, seen)
        return out

    rounds.ok("ADD", "a")
    assert steps() == ADD_FIRST
    rounds.ok("ADD", "b")
    assert steps() == ADD
    rounds.ok("DEL", "b")
    assert Counter(steps()) == Counter(DEL)  # the reaper's step may come before del.done
    rounds.ok("ADD", "b")
    rounds.ok("ADD", "c")
    steps()
    rounds.ok("GC", valid="a")
    assert Counter(steps()) == Counter(GC)
    rounds.ok("GC")
    rounds.lab.dy_ok("daemon", "stop")
    daemon.wait(timeout=10)
    # Every step of each verb is killed once (an ADD's in the second ADD, the
    # network's in the first), both releases of a GC and both reapings.
    assert {p.split("@")[0] for p in ADD_POINTS} == set(ADD_FIRST)
    assert set(DEL_POINTS) == set(_points(DEL))
    assert set(GC_POINTS) == set(_points(GC))


def test_a_gc_lets_the_reaper_start_only_once_all_its_releases_are_recorded(rounds: Round) -> None:
    # Its last step made slow: a reaper started by the first release would reap within it.
    daemon, err = rounds.daemon({"DOCKYARD_TRACE": "1", "DOCKYARD_DELAY": "cni.gc.done=1"})
    for name in "abc":
        rounds.ok("ADD", name)
    before = len(err.read_text().splitlines())
    rounds.ok("GC", valid="a")
    rounds.settle()
    traced = [line.split() for line in err.read_text().splitlines()[before:] if line.startswith("trace ")]
    done = [float(t) for _, t, name in traced if name == "cni.gc.done"]
    reaping = [float(t) for _, t, name in traced if name == "endpoint.reaping"]
    assert len(done) == 1 and len(reaping) == 2, traced
    # 1 s after gc.done's mark: the GC's block had ended, both releases recorded.
    assert min(reaping) >= done[0] + 1000, traced
    rounds.assert_made("a")
    rounds.ok("GC")
    rounds.lab.dy_ok("daemon", "stop")
    daemon.wait(timeout=10)


def _round(r: Round, verb: str, fault: str) -> None:
    """Kill the daemon at fault in the verb's round, recover, run the verb again."""
    daemon, _ = r.daemon({"DOCKYARD_FAULT": fault})
    setup, calls = {
        "ADD": ([], [("ADD", "a"), ("ADD", "b")]),
        "DEL": ([("ADD", "a"), ("ADD", "b")], [("DEL", "b")]),
        "GC": ([("ADD", "a"), ("ADD", "b"), ("ADD", "c")], [("GC", "")]),
    }[verb]
    for command, name in setup:
        r.ok(command, name)
    failed = None
    for command, name in calls:
        outcome = r.call(command, name, valid="a")
        if not outcome.ok:
            # The daemon died under the call: the plugin says "try again later".
            assert outcome.json["code"] == 11, outcome
            failed = (command, name)
            break
    # The reaper's steps come after the verb has answered.
    try:
        daemon.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon never reached {fault}")
    assert daemon.returncode == -9, (fault, daemon.returncode)
    if not fault.startswith("endpoint.reap"):  # the reaper's: the verb may have answered
        assert failed is not None, fault

    # A new daemon settles what was cut short: the one a dockyard command starts
    # (network inspect, in assert_made), or in the DEL round the one the plugin
    # of the runtime's next DEL starts.
    made = POINTS[verb][fault]
    if made is not None:
        r.assert_made(made)

    # The runtime goes on, and the verb run again succeeds.
    if verb == "ADD":
        assert failed is not None and made is not None
        r.ok("DEL", failed[1])  # the runtime's DEL after a failed ADD
        r.ok("DEL", failed[1])  # and DEL is idempotent
        for name in "ab":
            if name == failed[1] or name not in made:
                r.ok("ADD", name)
        r.assert_made("ab")
    elif verb == "DEL":
        r.ok("DEL", "b")  # DEL again succeeds...
        r.assert_made("a")
        r.ok("ADD", "b")  # ...and b's address and host port are free again
        r.assert_made("ab")
    else:
        r.ok("GC", valid="a")  # GC again succeeds, and frees b's and c's addresses and ports
        r.ok("ADD", "b")
        r.ok("ADD", "c")
        r.assert_made("abc")
    answer = r.lab.wait_answer(r.lab.up, "tcp", HOST_ADDR, PORTS["b"])
    assert answer.startswith(f"peer={UP_ADDR}:"), answer

    # Back to no attachment (and, for ADD, no network) for the next round, which
    # would see anything left.
    r.ok("GC")
    if verb == "ADD":
        r.settle()
        r.lab.dy_ok("network", "rm", NETWORK)
    r.lab.dy_ok("daemon", "stop")


@pytest.mark.parametrize("verb", ["ADD", "DEL", "GC"])
def test_a_crash_at_any_step_of_a_verb_is_recovered(rounds: Round, verb: str) -> None:
    for fault in POINTS[verb]:
        _round(rounds, verb, fault)
    rounds.assert_made("")
