"""CNI ADD and DEL latency: dockyard-cni beside the reference chain and netavark.

    .venv/bin/python bench/cni_bench.py [--counts 1,100,500] [--json PATH]
    .venv/bin/python bench/cni_bench.py --smoke     # tiny counts, dockyard only: for the test suite

As root. Everything happens in namespaces made here and deleted at the end
(also on Ctrl-C): a "host" namespace that this process enters (so every
plugin it execs runs there, as under a runtime) and one namespace per
attachment. The root namespace is never touched.

For each count N, each tool attaches N namespaces one after the other, then
detaches them all, in the same run, in turn:

- dockyard: the conflist [dockyard] (publishing its port itself), each ADD a
  new `dockyard-cni` process talking to dockyardd (started by the first ADD
  of a warm-up, not timed);
- reference: [bridge + host-local, portmap], Debian's containernetworking-plugins;
- netavark: `netavark setup/teardown` with podman's options (its IPAM being
  podman's, the static address is given), when /usr/lib/podman/netavark exists.

Every attachment publishes one TCP port. A figure is the wall time of the
process(es) a runtime would exec for that verb. Printed: per tool and N, the
mean ADD, the median ADD of the first and of the last tenth, the median ADD
around the 50th attachment (the 41st to the 60th) and the mean DEL; then the
ratios against each reference and the goals of issue 6. Medians, because
other jobs on a shared machine make outliers. Times are reported, never
asserted.

dockyard-cni runs with Python's bytecode cache on (in a directory of the
run), as an installed plugin does, even where PYTHONDONTWRITEBYTECODE is set.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "tools"))

from cni_runtime import REFERENCE_DIR, Runtime, plugin_dir  # noqa: E402

NETAVARK = Path("/usr/lib/podman/netavark")
NETNS_DIR = Path("/run/netns")
CNI_VERSION = "1.0.0"  # the newest the reference plugins here speak
PORT_BASE = {"dockyard": 20000, "reference": 30000, "netavark": 40000}
SUBNETS = {"dockyard": "10.201.0.0/16", "reference": "10.202.0.0/16", "netavark": "10.203.0.0/16"}
WARM_UP = 900  # the attachment number of the warm-up (counts stay below it)
GOAL_AT_50 = 0.5  # of the reference chain's ADD
GOAL_GROWTH = 0.10  # last tenth of 500 against the first


class BenchError(Exception):
    pass


def sh(*cmd: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


@dataclass
class Series:
    tool: str
    count: int
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)

    def tenth(self, last: bool) -> float:
        """The median ADD of the first or last tenth: other jobs on the machine make outliers."""
        k = max(1, len(self.add_ms) // 10)
        part = self.add_ms[-k:] if last else self.add_ms[:k]
        return statistics.median(part)

    def at_50(self) -> float | None:
        if len(self.add_ms) < 60:
            return None
        return statistics.median(self.add_ms[40:60])

    def summary(self) -> dict[str, float | None]:
        return {
            "add_mean": statistics.mean(self.add_ms),
            "add_first_tenth": self.tenth(False),
            "add_last_tenth": self.tenth(True),
            "add_at_50": self.at_50(),
            "del_mean": statistics.mean(self.del_ms),
        }


# -- the tools ------------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, work: Path, tag: str) -> None:
        self.work = work
        self.tag = tag
        subnet = ipaddress.IPv4Network(SUBNETS[self.name])
        self.hosts = list(subnet.hosts())
        self.gateway = self.hosts[0]
        self.subnet = subnet

    def add(self, i: int, netns: str) -> float:
        raise NotImplementedError

    def delete(self, i: int, netns: str) -> float:
        raise NotImplementedError

    def settle(self) -> None:
        """Wait for work a tool finishes after answering (none but dockyard's reaper)."""

    def close(self) -> None:
        pass

    def container_id(self, i: int) -> str:
        return f"{self.tag}{i:05d}"

    def port(self, i: int) -> int:
        return PORT_BASE[self.name] + i


class ChainTool(Tool):
    """A CNI conflist run through the test suite's runtime (libcni's way)."""

    def __init__(
        self, work: Path, tag: str, conflist: dict, bin_dirs: list[str], env: dict[str, str | None]
    ) -> None:
        super().__init__(work, tag)
        self.conflist = conflist
        self.rt = Runtime(bin_dirs)
        # Changes to the runtime's environment: None removes a variable.
        self.env_patch = env
        self.results: dict[int, dict] = {}

    def _timed(self, command: str, i: int, netns: str, prev: dict | None) -> float:
        rc = {
            "portMappings": [{"hostPort": self.port(i), "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
        }
        total = 0.0
        plugins = self.conflist["plugins"]
        order = plugins if command == "ADD" else list(reversed(plugins))
        result = prev
        for plugin in order:
            conf = self.rt.plugin_conf(self.conflist, plugin, result, rc)
            env = self.rt.env(command, self.container_id(i), netns, "eth0")
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

    def add(self, i: int, netns: str) -> float:
        return self._timed("ADD", i, netns, None)

    def delete(self, i: int, netns: str) -> float:
        return self._timed("DEL", i, netns, self.results.pop(i, None))


class Dockyard(ChainTool):
    name = "dockyard"

    def __init__(self, work: Path, tag: str) -> None:
        self.root = work / "dockyard-root"
        conflist = {
            "cniVersion": CNI_VERSION,
            "name": f"{tag}-dy",
            "plugins": [
                {
                    "type": "dockyard",
                    "bridge": f"{tag}-dy",
                    "subnet": SUBNETS["dockyard"],
                    "ipMasq": True,
                    "dataDir": str(self.root),
                    "capabilities": {"portMappings": True},
                }
            ],
        }
        env: dict[str, str | None] = {
            "PYTHONDONTWRITEBYTECODE": None,
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        }
        super().__init__(work, tag, conflist, [str(plugin_dir(work / "bin"))], env)

    def settle(self) -> None:
        from dockyard.client import Client

        Client(str(self.root), autostart=False).settle()

    def close(self) -> None:
        from dockyard.client import Client

        shim = self.root / "shim.pid"
        shim_pid = int(shim.read_text()) if shim.exists() and shim.read_text().strip().isdigit() else 0
        with contextlib.suppress(Exception):
            Client(str(self.root), autostart=False).stop_daemon()
        deadline = time.monotonic() + 5
        while shim_pid and Path(f"/proc/{shim_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if shim_pid and Path(f"/proc/{shim_pid}").exists():
            os.kill(shim_pid, 9)
            raise BenchError(f"dockyard's shim (pid {shim_pid}) did not stop with the daemon")


class Reference(ChainTool):
    name = "reference"

    def __init__(self, work: Path, tag: str) -> None:
        conflist = {
            "cniVersion": CNI_VERSION,
            "name": f"{tag}-ref",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": f"{tag}-ref",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "subnet": SUBNETS["reference"],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(work / "host-local"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        }
        super().__init__(work, tag, conflist, [str(REFERENCE_DIR)], {})


class Netavark(Tool):
    name = "netavark"

    def __init__(self, work: Path, tag: str) -> None:
        super().__init__(work, tag)
        self.config = work / "netavark"
        self.config.mkdir()

    def _options(self, i: int) -> Path:
        path = self.work / f"netavark-{i}.json"
        if not path.exists():
            options = {
                "container_id": self.container_id(i) + "0" * 52,
                "container_name": f"bench{i}",
                "port_mappings": [
                    {
                        "host_ip": "",
                        "container_port": 80,
                        "host_port": self.port(i),
                        "range": 1,
                        "protocol": "tcp",
                    }
                ],
                "networks": {"bench": {"static_ips": [str(self.hosts[i + 1])], "interface_name": "eth0"}},
                "network_info": {
                    "bench": {
                        "name": "bench",
                        "id": "b" * 64,
                        "driver": "bridge",
                        "network_interface": f"{self.tag}-nv",
                        "subnets": [{"subnet": str(self.subnet), "gateway": str(self.gateway)}],
                        "ipv6_enabled": False,
                        "internal": False,
                        "dns_enabled": False,
                        "ipam_options": {"driver": "host-local"},
                    }
                },
            }
            path.write_text(json.dumps(options))
        return path

    def _run(self, verb: str, i: int, netns: str) -> float:
        cmd = [str(NETAVARK), "--config", str(self.config), "--file", str(self._options(i)), verb, netns]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if r.returncode != 0:
            raise BenchError(f"netavark {verb}: {r.stderr.strip() or r.stdout.strip()}")
        return elapsed * 1000

    def add(self, i: int, netns: str) -> float:
        return self._run("setup", i, netns)

    def delete(self, i: int, netns: str) -> float:
        return self._run("teardown", i, netns)


# -- the run ------------------------------------------------------------------------


class Bench:
    def __init__(self, tools: list[str], counts: list[int]) -> None:
        self.tag = "dyb" + secrets.token_hex(2)
        self.host = f"{self.tag}-h"
        self.counts = counts
        self.wanted = tools
        self.work = Path(tempfile.mkdtemp(prefix="dockyard-cni-bench-"))
        self.namespaces: list[str] = []
        self.tools: list[Tool] = []
        self.series: list[Series] = []

    def netns(self, i: int) -> str:
        name = f"{self.tag}-c{i}"
        if name not in self.namespaces:
            sh("ip", "netns", "add", name)
            self.namespaces.append(name)
        return str(NETNS_DIR / name)

    def setup(self) -> None:
        from dockyard.kernel import netns

        sh("ip", "netns", "add", self.host)
        self.namespaces.append(self.host)
        # From here on this process, and every plugin it execs, works in the bench's host namespace.
        netns.enter_for_process(NETNS_DIR / self.host)
        sh("ip", "link", "set", "lo", "up")
        sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        classes = {"dockyard": Dockyard, "reference": Reference, "netavark": Netavark}
        for name in self.wanted:
            self.tools.append(classes[name](self.work, self.tag))

    def warm_up(self) -> None:
        """One untimed ADD and DEL per tool: daemons, bridges and caches are made here."""
        for tool in self.tools:
            ns = self.netns(WARM_UP)
            tool.add(WARM_UP, ns)
            tool.delete(WARM_UP, ns)
            tool.settle()

    def measure(self) -> None:
        for count in self.counts:
            for tool in self.tools:
                s = Series(tool.name, count)
                for i in range(count):
                    s.add_ms.append(tool.add(i, self.netns(i)))
                for i in range(count):
                    s.del_ms.append(tool.delete(i, self.netns(i)))
                tool.settle()
                self.series.append(s)
                print(
                    f"  {tool.name:<10} {count:>4} attachments: ADD {statistics.mean(s.add_ms):6.1f} ms, "
                    f"DEL {statistics.mean(s.del_ms):6.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )

    def teardown(self) -> list[str]:
        problems = []
        for tool in self.tools:
            try:
                tool.close()
            except Exception as e:
                problems.append(f"{tool.name}: {e}")
        for name in reversed(self.namespaces):
            r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"netns {name}: {r.stderr.strip()}")
        shutil.rmtree(self.work, ignore_errors=True)
        return problems

    # -- report -----------------------------------------------------------------------

    def get(self, tool: str, count: int) -> Series | None:
        return next((s for s in self.series if s.tool == tool and s.count == count), None)

    def report(self) -> dict:
        def ms(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"

        print()
        print(
            "| attachments | tool | ADD mean | ADD first tenth, median | ADD last tenth, median "
            "| ADD 41st-60th, median | DEL mean |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|")
        for s in self.series:
            m = s.summary()
            print(
                f"| {s.count} | {s.tool} | {ms(m['add_mean'])} | {ms(m['add_first_tenth'])} | "
                f"{ms(m['add_last_tenth'])} | {ms(m['add_at_50'])} | {ms(m['del_mean'])} |"
            )
        print("\n(milliseconds, wall time of the processes a runtime execs for the verb)\n")
        ratios = {}
        for other in ("reference", "netavark"):
            for count in self.counts:
                dy, ref = self.get("dockyard", count), self.get(other, count)
                if dy is None or ref is None:
                    continue
                a, b = dy.summary(), ref.summary()
                parts = []
                for key in ("add_mean", "add_at_50", "add_last_tenth", "del_mean"):
                    if a[key] is not None and b[key]:
                        ratios[f"{other}.{count}.{key}"] = a[key] / b[key]
                        parts.append(f"{key.replace('_', ' ')} {a[key] / b[key]:.2f}x")
                print(f"  dockyard / {other} at {count}: " + ", ".join(parts))
        goals = self.goals()
        for text in goals.values():
            print(text)
        return {
            "series": [
                {"tool": s.tool, "count": s.count, "add_ms": s.add_ms, "del_ms": s.del_ms}
                for s in self.series
            ],
            "summaries": [{"tool": s.tool, "count": s.count, **s.summary()} for s in self.series],
            "ratios": ratios,
            "goals": goals,
        }

    def goals(self) -> dict[str, str]:
        out = {}
        dy100, ref100 = self.get("dockyard", 100), self.get("reference", 100)
        if dy100 and ref100 and dy100.at_50() and ref100.at_50():
            r = dy100.at_50() / ref100.at_50()  # type: ignore[operator]
            verdict = "met" if r < GOAL_AT_50 else "not met"
            out["at_50"] = f"goal: ADD at 50 under half the reference chain's: {verdict} ({r:.2f}x)"
        dy500 = self.get("dockyard", 500)
        if dy500:
            growth = dy500.tenth(True) / dy500.tenth(False) - 1
            verdict = "met" if growth <= GOAL_GROWTH else "not met"
            out["growth"] = (
                f"goal: last tenth of 500 within 10% of the first: {verdict} "
                f"({dy500.tenth(False):.1f} -> {dy500.tenth(True):.1f} ms, {growth:+.0%})"
            )
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="1,100,500", help="attachment counts, comma-separated")
    p.add_argument("--smoke", action="store_true", help="counts 1 and 3, dockyard only")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-netavark", action="store_true")
    p.add_argument("--json", help="write the raw figures here")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("cni_bench: needs root (network namespaces)", file=sys.stderr)
        return 1
    counts = [1, 3] if a.smoke else [int(x) for x in a.counts.split(",") if x]
    tools = ["dockyard"]
    if not a.smoke and not a.no_reference:
        if (REFERENCE_DIR / "bridge").exists():
            tools.append("reference")
        else:
            print(
                "reference: containernetworking-plugins not installed, no side-by-side figures",
                file=sys.stderr,
            )
    if not a.smoke and not a.no_netavark:
        if NETAVARK.exists():
            tools.append("netavark")
        else:
            print("netavark: not installed, no side-by-side figures", file=sys.stderr)
    bench = Bench(tools, counts)
    status = 0
    try:
        bench.setup()
        print(f"cni_bench: {', '.join(tools)}; counts {counts}; namespaces {bench.tag}-*", file=sys.stderr)
        bench.warm_up()
        bench.measure()
    except (BenchError, KeyboardInterrupt) as e:
        print(f"cni_bench: {e or 'interrupted'}", file=sys.stderr)
        status = 1
    finally:
        problems = bench.teardown()
    for problem in problems:
        print(f"cni_bench: cleanup: {problem}", file=sys.stderr)
        status = 1
    if bench.series:
        data = bench.report()
        if a.json:
            Path(a.json).write_text(json.dumps(data, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
