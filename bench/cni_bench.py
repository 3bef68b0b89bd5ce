"""Endpoint set-up: dockyard-cni ADD and DEL beside the reference chain and netavark.

    .venv/bin/python bench/cni_bench.py [--counts 50,200,500,1000] [--json PATH]
    .venv/bin/python bench/cni_bench.py --smoke     # tiny counts, dockyard only: for the test suite

As root. Each tool has a lab of its own (tests/lab.py through
demo/netlab.py), whose host namespace this process enters around each
plugin it execs (so the plugin runs there, as under a runtime, and no tool's
firewall rules slow another's), and one namespace per attachment, made in
that lab and deleted with it (also on Ctrl-C). The root namespace is never
touched.

For each count N, the tools attach N namespaces, alternating attachment by
attachment (A B C, B C A, ...), so that drift on the machine hits every tool
alike; then they detach them all, alternating likewise. After the N ADDs the
firewall of each tool's host namespace is counted: iptables and nft rules
for the anchors; nft rules plus set and map elements for dockyard (whose
rules are fixed and whose elements grow):

- dockyard: the conflist [dockyard] (publishing its port itself), each ADD a
  new `dockyard-cni` process talking to dockyardd (started by the first ADD
  of a warm-up, not timed; its data directory is the lab's $ROOT);
- reference: [bridge + host-local, portmap], Debian's containernetworking-plugins;
- netavark: `netavark setup/teardown` with podman's options (its IPAM being
  podman's, the static address is given), when /usr/lib/podman/netavark exists.

Every plugin (and netavark) runs in a mount namespace of its own, made
private in its process before the exec, as a runtime's harness under
`unshare -m` runs it: dockyard-cni opens CNI_NETNS there and passes the
descriptor to the daemon.

dockyard-cni also runs a second way, side by side with the first in the same
rounds (its own lab, daemon and subnet): as an independent harness built on
`ip netns exec` runs it (issue 20). The attachments' namespaces are made in
a private mount namespace of the harness (a process `unshare --mount
--propagation private` started, where `ip netns add` mounts them), so that
from the daemon's mount namespace /run/netns/<name> is an empty file; each
plugin process enters that mount namespace before its exec. The daemon
works only on the descriptor the plugin passes. Its ADD and DEL are printed
beside the plain way's, with their ratio. What passing it costs is measured apart too (a
note and the JSON's `descriptor`): one request's message over a unix
socket pair, plainly and with the namespace opened, passed with
SCM_RIGHTS and closed on both ends.

Every attachment publishes one TCP port. A figure is the wall time of the
process(es) a runtime would exec for that verb. Printed: per tool and N, the
median ADD with its p10-p90, the median ADD of the first and of the last
tenth, the median ADD around the 50th attachment (the 41st to the 60th), the
median DEL and the firewall's size; per-batch medians (batches of a tenth);
the ratios against each reference and the goals of issues 7 and 19. For
dockyard the growth goal also says the daemon's user and system CPU per ADD
of the first and last tenth: its own work against the kernel's work for it;
the goal around the 50th, the floor of any Python plugin, timed in the same
rounds (one `python -c 'import json, socket'` after each of those ADDs).
Medians, because other jobs on a shared machine make outliers. Times are
reported, never asserted.

dockyard-cni runs with Python's bytecode cache on, as an installed plugin
does, even where PYTHONDONTWRITEBYTECODE is set: the script `make deps`
writes starts it isolated (`python -I -S`), deaf to PYTHON* variables, on
the bytecode make deps compiled (a plugin started without -I, pip's script,
gets its cache in a directory of the run).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "tools"))

from cni_runtime import REFERENCE_DIR, Runtime, plugin_dir

from _common import BenchError, cpu_ms, rotated, run_cmd
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import Run, ScriptLab, main, options
from netlab import NETNS_DIR, record

NETAVARK = Path("/usr/lib/podman/netavark")
CNI_VERSION = "1.0.0"  # the newest the reference plugins here speak
PORT_BASE = {"dockyard": 20000, "reference": 30000, "netavark": 40000, "private": 50000}
SUBNETS = {
    "dockyard": "10.201.0.0/16",
    "reference": "10.202.0.0/16",
    "netavark": "10.203.0.0/16",
    "private": "10.204.0.0/16",
}
GOAL_AT_50_MS = 20.0  # issue 19: ADD around the 50th
GOAL_GROWTH = 1.10  # issue 7: the last tenth of the largest count against the first
LABELS = {
    "dockyard": "dockyard-cni",
    "private": "dockyard-cni, netns in the harness's mount namespace",
    "reference": "bridge+host-local+portmap",
    "netavark": "netavark",
}


@dataclass
class Attachments:
    """One tool's N attachments: every ADD and DEL time, and the firewall after the ADDs."""

    tool: str
    count: int
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)
    firewall: dict[str, int] = field(default_factory=dict)
    # dockyard: its daemon's (user, system) CPU ms of each ADD (its own work, the kernel's for it)
    add_cpu: list[tuple[float, float]] = field(default_factory=list)

    def cpu_tenth(self, last: bool) -> tuple[float, float] | None:
        """The daemon's mean CPU per ADD, (user, system) ms, of the first or last tenth."""
        k = max(1, len(self.add_cpu) // 10)
        part = self.add_cpu[-k:] if last else self.add_cpu[:k]
        if not part:
            return None
        return sum(u for u, _ in part) / len(part), sum(s for _, s in part) / len(part)

    def tenth(self, last: bool) -> float:
        """The median ADD of the first or last tenth: other jobs on the machine make outliers."""
        k = max(1, len(self.add_ms) // 10)
        return statistics.median(self.add_ms[-k:] if last else self.add_ms[:k])

    def at_50(self) -> float | None:
        return statistics.median(self.add_ms[40:60]) if len(self.add_ms) >= 60 else None

    def batches(self) -> list[float]:
        """The median ADD of each tenth of the attachments, in order."""
        k = max(1, len(self.add_ms) // 10)
        return [statistics.median(self.add_ms[i : i + k]) for i in range(0, len(self.add_ms) - k + 1, k)]

    def summary(self) -> dict[str, float | None]:
        return {
            "add_median": statistics.median(self.add_ms),
            "add_mean": statistics.mean(self.add_ms),
            "add_first_tenth": self.tenth(False),
            "add_last_tenth": self.tenth(True),
            "add_at_50": self.at_50(),
            "del_median": statistics.median(self.del_ms),
            "del_mean": statistics.mean(self.del_ms),
        }


# -- the tools ------------------------------------------------------------------


def own_mount_namespace() -> None:
    """In a plugin's process, before its exec: a private mount namespace of its own (unshare -m)."""
    from dockyard.kernel import netns

    netns.unshare(netns.CLONE_NEWNS)
    netns.mount(None, "/", None, netns.MS_REC | netns.MS_PRIVATE)


def descriptor_cost(netns: str, rounds: int = 3000) -> dict[str, float]:
    """Microseconds per request: a 600-byte message over a unix socket pair, and the same with
    the namespace opened, passed (SCM_RIGHTS), received and both descriptors closed."""
    from dockyard.wire.http import MAX_FDS, Stream, send_message

    message = b"x" * 600
    out = {}
    a, b = socket.socketpair()
    with a, b:
        for name, passing in (("plain_us", False), ("with_descriptor_us", True)):
            stream = Stream(b, MAX_FDS if passing else 0)
            t0 = time.perf_counter()
            for _ in range(rounds):
                fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK) if passing else None
                send_message(a, message, [fd] if fd is not None else None)
                stream.buf = b""
                stream.read_exact(len(message))
                for got in (fd, *stream.fds):
                    if got is not None:
                        os.close(got)
                stream.fds = []
            out[name] = (time.perf_counter() - t0) / rounds * 1e6
    out["cost_us"] = out["with_descriptor_us"] - out["plain_us"]
    return out


class Tool:
    """One tool in its lab: ADD and DEL of attachment i, each timed in ms."""

    name = ""

    def __init__(self, lab: ScriptLab, work: Path) -> None:
        self.lab = lab
        self.work = work
        self.subnet = ipaddress.IPv4Network(SUBNETS[self.name])
        self.hosts = list(self.subnet.hosts())
        self.namespaces: dict[int, str] = {}
        self.bridge = f"{lab.host[-6:]}-{self.name[:2]}"  # the lab's random part: a name of this run

    def netns(self, i: int) -> str:
        """Attachment i's container namespace, in this tool's lab."""
        if i not in self.namespaces:
            self.namespaces[i] = str(self.lab.add_netns(self.lab.host.replace("-h-", f"-c{i}-")))
        return self.namespaces[i]

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """This thread, and what it execs, in the tool's host namespace until the block ends."""
        from dockyard.kernel import netns

        return netns.entered(f"/run/netns/{self.lab.host}")

    def add(self, i: int) -> float:
        raise NotImplementedError

    def daemon_cpu(self) -> tuple[float, float] | None:
        """The CPU its daemon has used so far, (user, system) ms, for a tool that has one."""
        return None

    def delete(self, i: int) -> float:
        raise NotImplementedError

    def settle(self) -> None:
        """Wait for work a tool finishes after answering (none but dockyard's reaper)."""

    def firewall(self) -> dict[str, int]:
        """The size of the firewall in this tool's host namespace (this thread is in it)."""
        rules = sum(
            1 for line in run_cmd(["iptables-save"], "iptables-save").splitlines() if line.startswith("-A")
        )
        listing = run_cmd(["nft", "-j", "list", "ruleset"], "nft list ruleset") or '{"nftables": []}'
        nft = json.loads(listing)["nftables"]
        # iptables-nft's own tables show in nft too: count nft rules of other tables only.
        own = {f"{f} {t}" for f in ("ip", "ip6") for t in ("nat", "filter", "mangle", "raw")}
        nft_rules = sum(
            1 for o in nft if "rule" in o and f"{o['rule']['family']} {o['rule']['table']}" not in own
        )
        elements = sum(len(o[k].get("elem", [])) for o in nft for k in ("set", "map") if k in o)
        return {"iptables_rules": rules, "nft_rules": nft_rules, "set_map_elements": elements}

    def container_id(self, i: int) -> str:
        return f"dybench{i:05d}"

    def port(self, i: int) -> int:
        return PORT_BASE[self.name] + i


class ChainTool(Tool):
    """A CNI conflist run through the test suite's runtime (libcni's way)."""

    def __init__(self, lab: ScriptLab, work: Path, bin_dir: Path, env: dict[str, str | None]) -> None:
        super().__init__(lab, work)
        self.conflist = self.make_conflist()
        self.rt = Runtime([str(bin_dir)], preexec=own_mount_namespace)
        self.env_patch = env  # changes to the runtime's environment: None removes a variable
        self.results: dict[int, dict] = {}

    def make_conflist(self) -> dict[str, Any]:
        raise NotImplementedError

    def _timed(self, command: str, i: int, prev: dict | None) -> float:
        rc = {
            "portMappings": [{"hostPort": self.port(i), "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
        }
        plugins = self.conflist["plugins"]
        total, result = 0.0, prev
        for plugin in plugins if command == "ADD" else list(reversed(plugins)):
            conf = self.rt.plugin_conf(self.conflist, plugin, result, rc)
            env = self.rt.env(command, self.container_id(i), self.netns(i), "eth0")
            for key, value in self.env_patch.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            outcome = self.rt.exec(plugin["type"], env, conf)
            if not outcome.ok:
                raise BenchError(f"{self.name}: {outcome}")
            total += outcome.seconds
            if command == "ADD":
                result = outcome.json
        if command == "ADD":
            self.results[i] = result or {}
        return total * 1000

    def add(self, i: int) -> float:
        return self._timed("ADD", i, None)

    def delete(self, i: int) -> float:
        return self._timed("DEL", i, self.results.pop(i, None))


class Dockyard(ChainTool):
    name = "dockyard"

    def __init__(self, lab: ScriptLab, work: Path) -> None:
        env = {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        super().__init__(lab, work, plugin_dir(work / "bin"), env)

    def make_conflist(self) -> dict[str, Any]:
        plugin = {
            "type": "dockyard",
            "bridge": self.bridge,
            "subnet": SUBNETS["dockyard"],
            "ipMasq": True,
            "dataDir": str(self.lab.root),  # the lab's teardown stops its daemon
            "capabilities": {"portMappings": True},
        }
        return {"cniVersion": CNI_VERSION, "name": self.bridge, "plugins": [plugin]}

    def settle(self) -> None:
        from dockyard.clients.api import Client

        Client(str(self.lab.root), autostart=False).settle()

    def daemon_cpu(self) -> tuple[float, float] | None:
        pid = self.lab.pid_of("dockyardd.pid")
        return cpu_ms([pid]) if pid else None


class PrivateNetns(Dockyard):
    """dockyard-cni as a harness on `ip netns exec` runs it: the attachments' namespaces mounted
    only in the harness's private mount namespace, every plugin process run in it."""

    name = "private"

    def __init__(self, lab: ScriptLab, work: Path) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        lab.remember_pid(self.holder.pid)
        ours = os.stat("/proc/self/ns/mnt").st_ino
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{self.holder.pid}/ns/mnt").st_ino == ours:
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise BenchError("`unshare --mount` made no mount namespace of its own")
            time.sleep(0.005)
        self.mnt = f"/proc/{self.holder.pid}/ns/mnt"
        # Started from this process's mount namespace, not by a plugin's first ADD from the harness's.
        lab.start_daemon()
        super().__init__(lab, work)
        self.rt.preexec = self.enter_harness

    def enter_harness(self) -> None:
        """In a plugin's process, before its exec: the harness's mount namespace."""
        from dockyard.kernel import netns

        fd = os.open(self.mnt, os.O_RDONLY | os.O_CLOEXEC)
        netns.setns(fd, netns.CLONE_NEWNS)
        os.close(fd)

    def in_harness(self, *argv: str) -> None:
        run_cmd(["nsenter", f"--mount={self.mnt}", *argv], f"{argv[0]} in the harness's mount namespace")

    def netns(self, i: int) -> str:
        if i not in self.namespaces:
            name = self.lab.host.replace("-h-", f"-c{i}-")
            record("netns", name)
            self.lab.extra_netns.append(name)
            self.in_harness("ip", "netns", "add", name)
            path = NETNS_DIR / name
            if not os.path.exists(path) or os.path.getsize(path) != 0 or os.path.ismount(path):
                raise BenchError(f"{path} should be an empty file outside the harness's mount namespace")
            self.namespaces[i] = str(path)
        return self.namespaces[i]

    def stop(self) -> list[str]:
        """The namespaces deleted where they are mounted, then the harness stopped by its PID."""
        problems = []
        for path in self.namespaces.values():
            try:
                self.in_harness("ip", "netns", "del", Path(path).name)
            except BenchError as e:
                problems.append(str(e))
        self.namespaces.clear()
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=10)
        return problems


class Reference(ChainTool):
    name = "reference"

    def __init__(self, lab: ScriptLab, work: Path) -> None:
        super().__init__(lab, work, REFERENCE_DIR, {})

    def make_conflist(self) -> dict[str, Any]:
        ipam = {
            "type": "host-local",
            "subnet": SUBNETS["reference"],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(self.work / "host-local"),
        }
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
        }
        portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
        return {
            "cniVersion": CNI_VERSION,
            "name": self.bridge,
            "plugins": [{**bridge, "ipam": ipam}, portmap],
        }


class Netavark(Tool):
    name = "netavark"

    def __init__(self, lab: ScriptLab, work: Path) -> None:
        super().__init__(lab, work)
        self.config = work / "netavark"
        self.config.mkdir()

    def _options(self, i: int) -> Path:
        path = self.work / f"netavark-{i}.json"
        if not path.exists():
            mapping = {
                "host_ip": "",
                "container_port": 80,
                "host_port": self.port(i),
                "range": 1,
                "protocol": "tcp",
            }
            network = {
                "name": "bench",
                "id": "b" * 64,
                "driver": "bridge",
                "network_interface": self.bridge,
                "subnets": [{"subnet": str(self.subnet), "gateway": str(self.hosts[0])}],
                "ipv6_enabled": False,
                "internal": False,
                "dns_enabled": False,
                "ipam_options": {"driver": "host-local"},
            }
            options = {
                "container_id": self.container_id(i) + "0" * 52,
                "container_name": f"bench{i}",
                "port_mappings": [mapping],
                "networks": {"bench": {"static_ips": [str(self.hosts[i + 1])], "interface_name": "eth0"}},
                "network_info": {"bench": network},
            }
            path.write_text(json.dumps(options))
        return path

    def _run(self, verb: str, i: int) -> float:
        cmd = [
            str(NETAVARK),
            "--config",
            str(self.config),
            "--file",
            str(self._options(i)),
            verb,
            self.netns(i),
        ]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=own_mount_namespace)
        elapsed = time.monotonic() - t0
        if r.returncode != 0:
            raise BenchError(f"netavark {verb}: {r.stderr.strip() or r.stdout.strip()}")
        return elapsed * 1000

    def add(self, i: int) -> float:
        return self._run("setup", i)

    def delete(self, i: int) -> float:
        return self._run("teardown", i)


def floor_once() -> float:
    """The ms of one `python -c 'import json, socket'` exec'd as every plugin here is (its own
    mount namespace, stdin and stdout piped): the floor of any Python plugin that speaks JSON
    over a socket, which the ADD goal is read against."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import json, socket"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=own_mount_namespace,
    )
    proc.communicate(b"{}", timeout=60)
    took = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise BenchError(f"python -c 'import json, socket' exited {proc.returncode}")
    return took


def goal_count(counts: list[int]) -> int | None:
    """The count whose 41st-60th ADDs the goal around the 50th is judged on."""
    return next((c for c in sorted(counts) if c >= 60), None)


def kernel_steps(lab: ScriptLab, count: int) -> dict[str, tuple[float, float]]:
    """The kernel's own steps of an attachment, timed alone: for `count` attachments, in a
    namespace of their own (one more of the lab's), a veth pair, its host end put on a bridge,
    then set up (pyroute2, one request each). Per step, the median ms of the first and of the
    last tenth: what the kernel itself adds as its bridge grows. The namespace goes with the
    lab, its links with it at once."""
    from pyroute2 import IPRoute

    from dockyard.kernel import netns

    name = lab.host.replace("-h-", "-k-")
    lab.add_netns(name)
    took: dict[str, list[float]] = {"veth pair": [], "on the bridge": [], "up": []}
    with netns.entered(f"/run/netns/{name}"), IPRoute() as ip:
        ip.link("add", ifname="kbr0", kind="bridge")
        bridge = ip.link_lookup(ifname="kbr0")[0]
        ip.link("set", index=bridge, state="up")
        for i in range(count):
            t0 = time.perf_counter()
            ip.link("add", ifname=f"kh{i}", kind="veth", peer=f"kc{i}")
            t1 = time.perf_counter()
            index = ip.link_lookup(ifname=f"kh{i}")[0]
            t2 = time.perf_counter()
            ip.link("set", index=index, master=bridge)
            t3 = time.perf_counter()
            ip.link("set", index=index, state="up")
            t4 = time.perf_counter()
            for step, ms in zip(took, ((t1 - t0), (t3 - t2), (t4 - t3)), strict=True):
                took[step].append(ms * 1000)
    k = max(1, count // 10)
    return {step: (statistics.median(xs[:k]), statistics.median(xs[-k:])) for step, xs in took.items()}


# -- the run ------------------------------------------------------------------------


def wanted_tools(run: Run, args: argparse.Namespace) -> list[type[Tool]]:
    tools: list[type[Tool]] = [Dockyard, PrivateNetns]
    for cls, skip, present in (
        (Reference, args.no_reference, (REFERENCE_DIR / "bridge").exists()),
        (Netavark, args.no_netavark, NETAVARK.exists()),
    ):
        if skip:
            run.notes.append(f"{cls.name}: not asked for (--smoke or --no-{cls.name})")
        elif not present:
            run.notes.append(f"{cls.name}: not installed, no side-by-side figures")
        else:
            tools.append(cls)
    return tools


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    tools: list[Tool] = []
    for cls in wanted_tools(run, args):
        lab = run.lab()
        lab.in_host("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        (run.work / cls.name).mkdir()
        tool = cls(lab, run.work / cls.name)
        if isinstance(tool, PrivateNetns):
            run.daemons.append(tool)  # stopped before the labs go
        tools.append(tool)
    print(f"cni_bench: {', '.join(t.name for t in tools)}; counts {args.counts}", file=sys.stderr, flush=True)
    warm_up = max(args.counts)  # an attachment number no count reaches (they run 0 to count - 1)
    for tool in tools:  # one untimed ADD and DEL per tool: daemons, bridges and caches are made here
        with tool.entered():
            tool.add(warm_up)
            tool.delete(warm_up)
            tool.settle()
        tool.lab.remember_daemon()  # dockyard's, started by its first ADD
    descriptor = descriptor_cost(tools[0].netns(warm_up))
    run.notes.append(
        f"dockyard-cni passes CNI_NETNS as a descriptor: {descriptor['cost_us']:.1f} us per request "
        f"(open, SCM_RIGHTS, close on both ends; {descriptor['plain_us']:.1f} us for the message alone)"
    )
    print(f"  descriptor passing: {descriptor}", file=sys.stderr, flush=True)
    done: list[Attachments] = []
    # The floor, timed in the same rounds as the ADDs the goal is judged on (the 41st-60th of
    # its count): a floor timed at another moment of this shared machine says nothing of them.
    floors: list[float] = []
    floor_count = goal_count(args.counts)
    for count in args.counts:
        runs = {tool.name: Attachments(tool.name, count) for tool in tools}
        for i in range(count):
            for tool in rotated(tools, i):
                with tool.entered():
                    before = tool.daemon_cpu()
                    runs[tool.name].add_ms.append(tool.add(i))
                    after = tool.daemon_cpu()
                    if before and after:
                        runs[tool.name].add_cpu.append((after[0] - before[0], after[1] - before[1]))
            if count == floor_count and 40 <= i < 60:
                floors.append(floor_once())
        for tool in tools:
            with tool.entered():
                tool.settle()
                runs[tool.name].firewall = tool.firewall()
        for i in range(count):
            for tool in rotated(tools, i):
                with tool.entered():
                    runs[tool.name].del_ms.append(tool.delete(i))
        for tool in tools:
            with tool.entered():
                tool.settle()
            a = runs[tool.name]
            done.append(a)
            add, delete = statistics.median(a.add_ms), statistics.median(a.del_ms)
            print(
                f"  {tool.name:<10} {count:>5} attachments: ADD median {add:6.1f} ms, "
                f"DEL median {delete:6.1f} ms, firewall {a.firewall}",
                file=sys.stderr,
                flush=True,
            )
    kernel = kernel_steps(tools[0].lab, max(args.counts))
    print(f"  kernel-only steps (first, last tenth ms): {kernel}", file=sys.stderr, flush=True)
    floor = statistics.median(floors or [floor_once() for _ in range(3)])
    print(f"  python -c 'import json, socket' under the harness: {floor:.1f} ms", file=sys.stderr, flush=True)
    raw = {
        "counts": args.counts,
        "descriptor": descriptor,
        "kernel_steps": kernel,
        "harness_floor_ms": floor,
        "runs": [
            {
                "tool": a.tool,
                "count": a.count,
                "add_ms": a.add_ms,
                "del_ms": a.del_ms,
                "firewall": a.firewall,
                "add_cpu_ms": a.add_cpu,
            }
            | a.summary()
            for a in done
        ],
    }
    return build_report(done, args.counts, [t.name for t in tools], kernel, floor), raw


# -- the report -----------------------------------------------------------------------


def build_report(
    done: list[Attachments],
    counts: list[int],
    tools: list[str],
    kernel: dict[str, tuple[float, float]],
    floor: float,
) -> Report:
    got = {(a.tool, a.count): a for a in done}

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}"

    rows = []
    for a in done:
        m, fw = a.summary(), a.firewall
        size = f"{fw.get('iptables_rules', 0) + fw.get('nft_rules', 0)}"
        if a.tool in ("dockyard", "private"):
            size += f" + {fw.get('set_map_elements', 0)} elements"
        firsts = (m["add_first_tenth"], m["add_last_tenth"], m["add_at_50"], m["del_median"])
        rows.append([f"{a.count}", LABELS[a.tool], spread(a.add_ms), *(ms(x) for x in firsts), size])
    ratio_rows = []
    for other in ("reference", "netavark"):
        for count in counts:
            if ("dockyard", count) in got and (other, count) in got:
                a, b = got[("dockyard", count)].summary(), got[(other, count)].summary()
                cells = [f"{count}", f"dockyard / {LABELS[other]}"]
                for key in ("add_median", "add_at_50", "add_last_tenth", "del_median"):
                    x, y = a[key], b[key]
                    cells.append(times(x / y) if x is not None and y else "-")
                ratio_rows.append(cells)
    for count in counts:
        if ("dockyard", count) in got and ("private", count) in got:
            a, b = got[("private", count)].summary(), got[("dockyard", count)].summary()
            cells = [f"{count}", "netns in the harness's mount namespace / plain"]
            for key in ("add_median", "add_at_50", "add_last_tenth", "del_median"):
                x, y = a[key], b[key]
                cells.append(times(x / y) if x is not None and y else "-")
            ratio_rows.append(cells)
    largest = max(counts)
    step = max(1, largest // 10)
    plots = [
        Plot(
            "cni_add_batches",
            f"ADD per tenth of {largest} attachments (median of each tenth)",
            "line",
            "attachments already present",
            "ms",
            [
                Series(LABELS[t], [i * step for i in range(len(a.batches()))], a.batches())
                for t in tools
                if (a := got.get((t, largest)))
            ],
        ),
        Plot(
            "cni_add_by_count",
            "median ADD by number of attachments (p10-p90)",
            "bar",
            "attachments",
            "ms",
            [
                Series.of(LABELS[t], [str(c) for c in counts], [got[(t, c)].add_ms for c in counts])
                for t in tools
            ],
        ),
    ]
    return Report(
        key="cni_bench",
        title="2. Endpoint set-up (CNI ADD and DEL)",
        method=(
            "Each attachment a new network namespace with one published TCP port; a figure is the wall "
            "time of the process(es) a runtime execs for the verb (dockyard-cni: one process talking "
            "to dockyardd; the reference chain: bridge + host-local, then portmap; netavark: "
            "`netavark setup`/`teardown`). The tools alternate attachment by attachment, each in a host "
            "namespace of its own. Firewall size after the N ADDs: iptables and nft rules (dockyard: "
            "its fixed rules plus set and map elements)."
        ),
        tables=[
            Table(
                "ADD and DEL (ms)",
                [
                    "N",
                    "tool",
                    "ADD median (p10-p90)",
                    "first tenth",
                    "last tenth",
                    "41st-60th",
                    "DEL median",
                    "firewall after N",
                ],
                rows,
            ),
            Table(
                "ratios", ["N", "", "ADD median", "ADD 41st-60th", "ADD last tenth", "DEL median"], ratio_rows
            ),
            kernel_table(kernel, max(counts)),
        ],
        goals=goals(got, counts, floor),
        notes=[
            "DEL times leave out the veth deletion dockyard's reaper does right after answering "
            "(an RCU grace period, 15-40 ms); the address is free once the link is gone.",
            "Reference figures measured on this machine kind earlier: the reference chain's ADD 62 ms at "
            "50 endpoints and 240 ms for the last tenth of 500; netavark 46 ms growing to 110 ms.",
        ],
        plots=plots,
    )


def kernel_table(kernel: dict[str, tuple[float, float]], count: int) -> Table:
    rows = [
        [step, f"{first:.3f}", f"{last:.3f}", times(last / first)] for step, (first, last) in kernel.items()
    ]
    first_sum, last_sum = (sum(pair[i] for pair in kernel.values()) for i in (0, 1))
    rows.append(["all three", f"{first_sum:.3f}", f"{last_sum:.3f}", times(last_sum / first_sum)])
    return Table(
        f"the kernel's own steps of an attachment, timed alone as {count} attachments join one bridge (ms; "
        "a bridge walks every port when one joins: its MTU, features and promiscuity, net/bridge/br_if.c)",
        ["step", "first tenth", "last tenth", "last / first"],
        rows,
    )


def goals(got: dict[tuple[str, int], Attachments], counts: list[int], floor: float) -> list[Goal]:
    out = []
    at = goal_count(counts)
    dy = got.get(("dockyard", at)) if at else None
    if dy is not None and (dy_at_50 := dy.at_50()) is not None:
        others = [
            f"{other} {x:.1f} ms ({times(dy_at_50 / x)})"
            for other in ("reference", "netavark")
            if (a := got.get((other, at))) and (x := a.at_50())
        ]
        others.append(
            f"python -c 'import json, socket' exec'd the same way alone, in the same rounds, {floor:.1f} ms"
        )
        out.append(
            Goal(
                f"ADD around the 50th endpoint (41st-60th) within {GOAL_AT_50_MS:.0f} ms",
                dy_at_50 <= GOAL_AT_50_MS,
                f"{dy_at_50:.1f} ms",
                ", ".join(others) or "no reference tool run",
            )
        )
    private = got.get(("private", at)) if at else None
    if dy is not None and private is not None and (p_at_50 := private.at_50()) is not None:
        plain = dy.at_50() or 0.0
        out.append(
            Goal(
                f"with the namespace only in the harness's mount namespace (issue 20), ADD around the 50th "
                f"within {GOAL_AT_50_MS:.0f} ms",
                p_at_50 <= GOAL_AT_50_MS,
                f"{p_at_50:.1f} ms; DEL {statistics.median(private.del_ms):.1f} ms",
                f"the plain way {plain:.1f} ms ({times(p_at_50 / plain) if plain else '-'}); "
                f"DEL {statistics.median(dy.del_ms):.1f} ms",
            )
        )
    largest = max(counts)
    dy = got.get(("dockyard", largest))
    if dy is not None and largest >= 10:
        growth = dy.tenth(True) / dy.tenth(False)
        others = [
            f"{other} {first:.0f} -> {last:.0f} ms ({times(last / first)})"
            for other in ("reference", "netavark")
            if (a := got.get((other, largest)))
            for first, last in [(a.tenth(False), a.tenth(True))]
        ]
        cpu = ""
        if (first_cpu := dy.cpu_tenth(False)) and (last_cpu := dy.cpu_tenth(True)):
            cpu = (
                f"; dockyardd CPU per ADD user {first_cpu[0]:.1f} -> {last_cpu[0]:.1f}, "
                f"system {first_cpu[1]:.1f} -> {last_cpu[1]:.1f} ms"
            )
        out.append(
            Goal(
                f"the last tenth of {largest:,} ADDs within {GOAL_GROWTH:.2f}x the first",
                growth <= GOAL_GROWTH,
                f"{dy.tenth(False):.1f} -> {dy.tenth(True):.1f} ms ({times(growth)}){cpu}",
                ", ".join(others) or "no reference tool run",
            )
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "counts 1 and 3, dockyard only", ("reference", "netavark"))
    p.add_argument("--counts", default="50,200,500,1000", help="attachment counts, comma-separated")
    args = p.parse_args(argv)
    args.counts = [1, 3] if args.smoke else sorted({int(x) for x in args.counts.split(",") if x})
    if args.smoke:
        args.no_reference = args.no_netavark = True
    # A /16 per tool, and host ports from its base: 10,000 apart.
    if not args.counts or min(args.counts) < 1 or max(args.counts) > 9_999:
        p.error("--counts must be between 1 and 9,999")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("cni_bench", arguments, lambda run: measure(run, arguments)))
