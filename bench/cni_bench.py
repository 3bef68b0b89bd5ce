"""Endpoint set-up: dockyard-cni ADD and DEL beside the reference chain and netavark.

    .venv/bin/python bench/cni_bench.py [--counts 50,200,500,1000] [--json PATH]
    .venv/bin/python bench/cni_bench.py --smoke     # tiny counts, dockyard only: for the test suite

As root. Everything happens in namespaces made here and deleted at the end
(also on Ctrl-C): a "host" namespace per tool, which this process enters
around each plugin it execs (so the plugin runs there, as under a runtime,
and no tool's firewall rules slow another's), and one namespace per
attachment. The root namespace is never touched.

For each count N, the tools attach N namespaces, alternating attachment by
attachment (A B C, B C A, ...), so that drift on the machine hits every tool
alike; then they detach them all, alternating likewise. After the N ADDs the
firewall of each tool's host namespace is counted: iptables and nft rules
for the anchors; nft rules plus set and map elements for dockyard (whose
rules are fixed and whose elements grow):

- dockyard: the conflist [dockyard] (publishing its port itself), each ADD a
  new `dockyard-cni` process talking to dockyardd (started by the first ADD
  of a warm-up, not timed);
- reference: [bridge + host-local, portmap], Debian's containernetworking-plugins;
- netavark: `netavark setup/teardown` with podman's options (its IPAM being
  podman's, the static address is given), when /usr/lib/podman/netavark exists.

Every attachment publishes one TCP port. A figure is the wall time of the
process(es) a runtime would exec for that verb. Printed: per tool and N, the
median ADD with its p10-p90, the median ADD of the first and of the last
tenth, the median ADD around the 50th attachment (the 41st to the 60th), the
median DEL and the firewall's size; per-batch medians (batches of a tenth);
the ratios against each reference and the goals of issues 6 and 7. Medians,
because other jobs on a shared machine make outliers. Times are reported,
never asserted.

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

from _common import BenchError, load_average, machine, machine_line, ratio, rotated, summary  # noqa: E402
from _report import Goal, Plot, Report, Series, Table  # noqa: E402

NETAVARK = Path("/usr/lib/podman/netavark")
NETNS_DIR = Path("/run/netns")
CNI_VERSION = "1.0.0"  # the newest the reference plugins here speak
PORT_BASE = {"dockyard": 20000, "reference": 30000, "netavark": 40000}
SUBNETS = {"dockyard": "10.201.0.0/16", "reference": "10.202.0.0/16", "netavark": "10.203.0.0/16"}
GOAL_AT_50 = 0.5  # of the reference chain's ADD
GOAL_GROWTH = 0.10  # last tenth against the first, at the largest count
LABELS = {"dockyard": "dockyard-cni", "reference": "bridge+host-local+portmap", "netavark": "netavark"}


def sh(*cmd: str) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


@dataclass
class Run:
    """One tool's N attachments: every ADD and DEL time, and the firewall after the ADDs."""

    tool: str
    count: int
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)
    firewall: dict[str, int] = field(default_factory=dict)

    def tenth(self, last: bool) -> float:
        """The median ADD of the first or last tenth: other jobs on the machine make outliers."""
        k = max(1, len(self.add_ms) // 10)
        part = self.add_ms[-k:] if last else self.add_ms[:k]
        return statistics.median(part)

    def at_50(self) -> float | None:
        if len(self.add_ms) < 60:
            return None
        return statistics.median(self.add_ms[40:60])

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


class Tool:
    name = ""

    def __init__(self, work: Path, tag: str) -> None:
        self.work = work
        self.tag = tag
        self.host = f"{tag}-h{self.name[0]}"  # this tool's host namespace, made by Bench.setup
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

    def firewall(self) -> dict[str, int]:
        """The size of the firewall in this tool's host namespace (this process is in it)."""
        rules = sum(1 for line in sh("iptables-save").splitlines() if line.startswith("-A"))
        nft = json.loads(sh("nft", "-j", "list", "ruleset") or '{"nftables": []}')["nftables"]
        # iptables-nft's own tables show in nft too: count nft rules of other tables only.
        own = {"ip nat", "ip filter", "ip mangle", "ip raw", "ip6 nat", "ip6 filter", "ip6 mangle", "ip6 raw"}
        nft_rules = sum(
            1 for o in nft if "rule" in o and f"{o['rule']['family']} {o['rule']['table']}" not in own
        )
        elements = sum(len(o[k].get("elem", [])) for o in nft for k in ("set", "map") if k in o)
        return {"iptables_rules": rules, "nft_rules": nft_rules, "set_map_elements": elements}

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
        from dockyard.clients.api import Client

        Client(str(self.root), autostart=False).settle()

    def close(self) -> None:
        from dockyard.clients.api import Client

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
        self.tag = "dybench" + secrets.token_hex(2)
        self.counts = counts
        self.wanted = tools
        self.work = Path(tempfile.mkdtemp(prefix="dockyard-cni-bench-"))
        self.namespaces: list[str] = []
        self.tools: list[Tool] = []
        self.runs: list[Run] = []

    def netns(self, tool: Tool, i: int) -> str:
        """Attachment i's container namespace for this tool: each tool's eth0 in its own."""
        name = f"{self.tag}-c{tool.name[0]}{i}"
        if name not in self.namespaces:
            sh("ip", "netns", "add", name)
            self.namespaces.append(name)
        return str(NETNS_DIR / name)

    def setup(self) -> None:
        classes = {"dockyard": Dockyard, "reference": Reference, "netavark": Netavark}
        for name in self.wanted:
            tool = classes[name](self.work, self.tag)
            sh("ip", "netns", "add", tool.host)
            self.namespaces.append(tool.host)
            sh("ip", "-n", tool.host, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", tool.host, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.tools.append(tool)

    def in_host(self, tool: Tool) -> contextlib.AbstractContextManager[None]:
        """This thread, and what it execs, in the tool's host namespace until the block ends."""
        from dockyard.kernel import netns

        return netns.entered(NETNS_DIR / tool.host)

    def warm_up(self) -> None:
        """One untimed ADD and DEL per tool: daemons, bridges and caches are made here."""
        for tool in self.tools:
            # An attachment number no count reaches (they run 0 to count - 1).
            warm_up = max(self.counts)
            ns = self.netns(tool, warm_up)
            with self.in_host(tool):
                tool.add(warm_up, ns)
                tool.delete(warm_up, ns)
                tool.settle()

    def measure(self) -> None:
        for count in self.counts:
            runs = {tool.name: Run(tool.name, count) for tool in self.tools}
            for i in range(count):
                for tool in rotated(self.tools, i):
                    with self.in_host(tool):
                        runs[tool.name].add_ms.append(tool.add(i, self.netns(tool, i)))
            for tool in self.tools:
                with self.in_host(tool):
                    tool.settle()
                    runs[tool.name].firewall = tool.firewall()
            for i in range(count):
                for tool in rotated(self.tools, i):
                    with self.in_host(tool):
                        runs[tool.name].del_ms.append(tool.delete(i, self.netns(tool, i)))
            for tool in self.tools:
                with self.in_host(tool):
                    tool.settle()
                r = runs[tool.name]
                self.runs.append(r)
                print(
                    f"  {tool.name:<10} {count:>5} attachments: "
                    f"ADD median {statistics.median(r.add_ms):6.1f} ms, "
                    f"DEL median {statistics.median(r.del_ms):6.1f} ms, firewall {r.firewall}",
                    file=sys.stderr,
                    flush=True,
                )

    def teardown(self) -> list[str]:
        problems = []
        for tool in self.tools:
            try:
                with self.in_host(tool):
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

    def get(self, tool: str, count: int) -> Run | None:
        return next((r for r in self.runs if r.tool == tool and r.count == count), None)

    def report(self, info: dict[str, object], notes: list[str]) -> Report:
        def ms(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"

        rows = []
        for r in self.runs:
            m, s = r.summary(), summary(r.add_ms)
            fw = r.firewall
            size = f"{fw.get('iptables_rules', 0) + fw.get('nft_rules', 0)}"
            if r.tool == "dockyard":
                size += f" + {fw.get('set_map_elements', 0)} elements"
            rows.append(
                [
                    f"{r.count}",
                    LABELS[r.tool],
                    f"{s['median']:.1f} ({s['p10']:.0f}-{s['p90']:.0f})",
                    ms(m["add_first_tenth"]),
                    ms(m["add_last_tenth"]),
                    ms(m["add_at_50"]),
                    ms(m["del_median"]),
                    size,
                ]
            )
        ratio_rows = []
        for other in ("reference", "netavark"):
            for count in self.counts:
                dy, ref = self.get("dockyard", count), self.get(other, count)
                if dy is None or ref is None:
                    continue
                a, b = dy.summary(), ref.summary()
                cells = [f"{count}", f"dockyard / {LABELS[other]}"]
                for key in ("add_median", "add_at_50", "add_last_tenth", "del_median"):
                    cells.append(f"{ratio(a[key], b[key]):.2f}x" if a[key] is not None and b[key] else "-")
                ratio_rows.append(cells)
        largest = max(self.counts)
        plots = [
            Plot(
                "cni_add_batches",
                f"ADD per tenth of {largest} attachments (median of each tenth)",
                "line",
                "attachments already present",
                "ms",
                [
                    Series(
                        LABELS[r.tool],
                        [i * max(1, largest // 10) for i in range(len(r.batches()))],
                        r.batches(),
                    )
                    for r in self.runs
                    if r.count == largest
                ],
            ),
            Plot(
                "cni_add_by_count",
                "median ADD by number of attachments (p10-p90)",
                "bar",
                "attachments",
                "ms",
                [
                    Series(
                        LABELS[t.name],
                        [str(r.count) for r in self.runs if r.tool == t.name],
                        [summary(r.add_ms)["median"] for r in self.runs if r.tool == t.name],
                        [summary(r.add_ms)["p10"] for r in self.runs if r.tool == t.name],
                        [summary(r.add_ms)["p90"] for r in self.runs if r.tool == t.name],
                    )
                    for t in self.tools
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
                "its fixed rules plus set and map elements). " + machine_line(info)
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
                    "ratios",
                    ["N", "", "ADD median", "ADD 41st-60th", "ADD last tenth", "DEL median"],
                    ratio_rows,
                ),
            ],
            goals=self.goals(),
            notes=[
                *notes,
                "DEL times leave out the veth deletion dockyard's reaper does right after answering "
                "(an RCU grace period, 15-40 ms); the address is free once the link is gone.",
                "Reference figures measured on this machine kind earlier: the reference chain's ADD 62 ms at "
                "50 endpoints and 240 ms for the last tenth of 500; netavark 46 ms growing to 110 ms.",
            ],
            plots=plots,
        )

    def goals(self) -> list[Goal]:
        out = []
        at = next((c for c in sorted(self.counts) if c >= 60), None)
        dy, ref = (self.get("dockyard", at), self.get("reference", at)) if at else (None, None)
        if dy and ref and dy.at_50() and ref.at_50():
            r = dy.at_50() / ref.at_50()  # type: ignore[operator]
            out.append(
                Goal(
                    "ADD at 50 endpoints under half the reference chain's",
                    r < GOAL_AT_50,
                    f"{dy.at_50():.1f} ms",
                    f"reference {ref.at_50():.1f} ms ({r:.2f}x)",
                )
            )
        largest = max(self.counts)
        dyl = self.get("dockyard", largest)
        if dyl and largest >= 10:
            growth = dyl.tenth(True) / dyl.tenth(False) - 1
            others = []
            for other in ("reference", "netavark"):
                o = self.get(other, largest)
                if o:
                    others.append(
                        f"{other} {o.tenth(False):.0f} -> {o.tenth(True):.0f} ms "
                        f"({o.tenth(True) / o.tenth(False) - 1:+.0%})"
                    )
            out.append(
                Goal(
                    f"the last tenth of {largest} ADDs within {GOAL_GROWTH:.0%} of the first",
                    growth <= GOAL_GROWTH,
                    f"{dyl.tenth(False):.1f} -> {dyl.tenth(True):.1f} ms ({growth:+.0%})",
                    ", ".join(others) or "no reference tool run",
                )
            )
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="50,200,500,1000", help="attachment counts, comma-separated")
    p.add_argument("--smoke", action="store_true", help="counts 1 and 3, dockyard only")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-netavark", action="store_true")
    p.add_argument("--json", help="write the report and the raw figures here")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("cni_bench: needs root (network namespaces)", file=sys.stderr)
        return 1
    load_before = load_average()
    counts = [1, 3] if a.smoke else sorted({int(x) for x in a.counts.split(",") if x})
    # A /16 per tool, and host ports from its base: 10,000 apart.
    if not counts or min(counts) < 1 or max(counts) > 9_999:
        p.error("--counts must be between 1 and 9,999")
    tools = ["dockyard"]
    notes = []
    if a.smoke or a.no_reference:
        notes.append("reference chain: not asked for (--smoke or --no-reference)")
    elif (REFERENCE_DIR / "bridge").exists():
        tools.append("reference")
    else:
        notes.append("reference chain: containernetworking-plugins not installed, no side-by-side figures")
    if a.smoke or a.no_netavark:
        notes.append("netavark: not asked for (--smoke or --no-netavark)")
    elif NETAVARK.exists():
        tools.append("netavark")
    else:
        notes.append("netavark: not installed, no side-by-side figures")
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
    if bench.runs and status == 0:
        info = machine(load_before)
        report = bench.report(info, notes)
        print(report.text())
        if a.json:
            raw = {
                "machine": info,
                "counts": counts,
                "runs": [
                    {
                        "tool": r.tool,
                        "count": r.count,
                        "add_ms": r.add_ms,
                        "del_ms": r.del_ms,
                        "firewall": r.firewall,
                        **r.summary(),
                    }
                    for r in bench.runs
                ],
            }
            Path(a.json).write_text(json.dumps({"report": report.to_dict(), "raw": raw}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
