"""Publishing ports at scale and the throughput of kernel NAT (issue 3, "Scale and speed").

    .venv/bin/python bench/publish_ports.py [--runs N] [--rounds N] [--seconds S] [--json PATH]
    .venv/bin/python bench/publish_ports.py --smoke     # tiny counts, no Docker: for the test suite

As root, in a throwaway lab (demo/netlab.py: a host namespace where dockyardd
runs, an upstream namespace on TEST-NET addresses, a fresh $ROOT; the root
namespace is never touched, everything is removed at the end, also on Ctrl-C).

1. Start-up with many published ports. The whole command
   `dockyard run -d -p SPEC sleep 600` with 1, 100 and 1,000 published ports
   (`-p 10000:10000`, `-p 10000-10099:10000-10099`, `-p 10000-10999:10000-10999`),
   then `dockyard rm -f`, in rounds that rotate the order of the cases. After
   each start: the processes dockyardd, its shim and their descendants count
   (the container's own process is the only one there should be more of),
   the processes on the machine (other jobs included, so only indicative),
   the daemon's open descriptors (its host-port holds are sockets, not
   processes), and the elements of the `publish_any` map; after each removal,
   the elements left (there should be none).
2. Throughput with iperf3 (`-t S`, median of the rounds, flows alternating
   within each round): a server container published with `-p 5201:5201`,
   reached from the upstream namespace on the host's address (DNAT,
   forwarded), from the host on its own address (DNAT in output, the same
   single veth hop as the direct flow), from the host on 127.0.0.1, from
   another container through the host's address (hairpin), and from the host
   straight to the container's address (no NAT: the reference). When Docker
   can run here (a docker client and a dockerd binary), a private dockerd in
   the lab's host namespace serves the same flows with `-p 5202:5201`, its
   127.0.0.1 going through docker-proxy; a dockerd already running on the
   machine is never used.

Times and rates are reported, never asserted: the exit status is 0 unless a
command failed or something had to be cleaned up by force (1), or the run
was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import (  # noqa: E402
    HOST_ADDR,
    Interrupted,
    Lab,
    LabError,
    raise_on_termination,
    signals_ignored,
)

# (published ports, -p spec): one map element per port, whatever the spec.
PORT_CASES: tuple[tuple[int, str], ...] = (
    (1, "10000:10000"),
    (100, "10000-10099:10000-10099"),
    (1000, "10000-10999:10000-10999"),
)
IPERF_PORT = 5201
DOCKER_HOST_PORT = 5202  # dockyard holds 5201 on the host
GOAL_NAT_LOSS = 0.10  # issue 3: kernel NAT should lose under 10%
DOCKER_IMAGE = "dybench-iperf3:latest"
DOCKER_BIP = "192.0.2.1/24"  # TEST-NET-1, inside the lab's host namespace only


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
    return {
        "median": statistics.median(values),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
    }


def run_cmd(argv: list[str], what: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """stdout of a command that must succeed; a BenchError otherwise."""
    try:
        r = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: did not finish within {timeout:.0f} s") from e
    if r.returncode != 0:
        said = r.stderr.strip() or r.stdout.strip()[-500:]
        raise BenchError(f"{what}: `{' '.join(argv)}` exited {r.returncode}: {said}")
    return r.stdout


def timed(argv: list[str], what: str) -> float:
    """Wall time of the whole command in milliseconds."""
    start = time.perf_counter_ns()
    run_cmd(argv, what, timeout=60)
    return (time.perf_counter_ns() - start) / 1e6


# -- processes -----------------------------------------------------------------


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


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@dataclass(frozen=True)
class Processes:
    daemon_children: int  # direct children of dockyardd (the shim, a resolver if any)
    shim_children: int  # direct children of the shim: the containers' first processes
    tree: int  # dockyardd and every descendant
    total: int  # every process on the machine, other jobs' too
    daemon_fds: int  # dockyardd's open descriptors (host-port holds are sockets)

    @staticmethod
    def now(lab: Lab) -> Processes:
        daemon = int((lab.root / "dockyardd.pid").read_text().strip())
        shim = int((lab.root / "shim.pid").read_text().strip())
        table = process_table()
        return Processes(
            daemon_children=sum(1 for parent in table.values() if parent == daemon),
            shim_children=sum(1 for parent in table.values() if parent == shim),
            tree=1 + len(descendants(table, daemon)),
            total=len(table),
            daemon_fds=open_fds(daemon),
        )


def map_elements(lab: Lab, name: str = "publish_any") -> int:
    out = lab.in_ns(lab.host, "nft", "-j", "list", "map", "inet", "dockyard", name).stdout
    for obj in json.loads(out)["nftables"]:
        if "map" in obj:
            return len(obj["map"].get("elem", []))
    raise BenchError(f"`nft -j list map inet dockyard {name}` printed no map")


# -- 1. start-up with 1, 100, 1,000 published ports ----------------------------


@dataclass
class StartCase:
    ports: int
    spec: str
    start_ms: list[float] = field(default_factory=list)
    rm_ms: list[float] = field(default_factory=list)
    extra_processes: list[int] = field(default_factory=list)
    daemon_children: list[int] = field(default_factory=list)
    shim_children: list[int] = field(default_factory=list)
    total_delta: list[int] = field(default_factory=list)
    fds_delta: list[int] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)
    elements_after_rm: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"pp-{self.ports}"


def start_once(lab: Lab, case: StartCase, record: bool) -> None:
    before = Processes.now(lab)
    start_ms = timed(lab.dy_cmd("run", "-d", "--name", case.name, "-p", case.spec, "sleep", "600"), case.spec)
    lab.remember_container(case.name)
    elements = map_elements(lab)
    after = Processes.now(lab)
    rm_ms = timed(lab.dy_cmd("rm", "-f", case.name), f"rm -f {case.name}")
    left = map_elements(lab)
    if not record:
        return
    case.start_ms.append(start_ms)
    case.rm_ms.append(rm_ms)
    # The container's own process (`sleep`) is the one expected newcomer.
    case.extra_processes.append(after.tree - before.tree - 1)
    case.daemon_children.append(after.daemon_children)
    case.shim_children.append(after.shim_children)
    case.total_delta.append(after.total - before.total)
    case.fds_delta.append(after.daemon_fds - before.daemon_fds)
    case.elements.append(elements)
    case.elements_after_rm.append(left)


def measure_starts(lab: Lab, runs: int, warmup: int) -> tuple[list[StartCase], Processes]:
    cases = [StartCase(n, spec) for n, spec in PORT_CASES]
    idle = Processes.now(lab)
    for _ in range(warmup):
        for case in cases:
            start_once(lab, case, record=False)
    for r in range(runs):
        shift = r % len(cases)
        for case in cases[shift:] + cases[:shift]:
            start_once(lab, case, record=True)
    return cases, idle


def start_report(cases: list[StartCase], idle: Processes, runs: int) -> tuple[list[str], dict[str, object]]:
    out = [
        f"start-up: `dockyard run -d -p SPEC sleep 600`, whole command, {runs} runs per case, rotated",
        "",
    ]
    head = (
        f"{'published ports':>15} {'median':>8} {'p10':>8} {'p90':>8} {'min':>8} {'max':>8}"
        f" {'rm -f':>8} {'extra procs':>11} {'map elems':>9} {'after rm':>8} {'holds (fds)':>11}"
    )
    out += [head + "   (ms)", "-" * len(head)]
    for c in cases:
        s = summary(c.start_ms)
        figures = " ".join(f"{s[k]:8.1f}" for k in ("median", "p10", "p90", "min", "max"))
        out.append(
            f"{c.ports:>15,} {figures} {statistics.median(c.rm_ms):8.1f}"
            f" {max(c.extra_processes):>11} {max(c.elements):>9} {max(c.elements_after_rm):>8}"
            f" {'+' + str(int(statistics.median(c.fds_delta))):>11}"
        )
    by_ports = {c.ports: c for c in cases}
    one, hundred, thousand = by_ports[1], by_ports[100], by_ports[1000]
    ratio = statistics.median(thousand.start_ms) / statistics.median(one.start_ms)
    paired = statistics.median([a / b for a, b in zip(thousand.start_ms, one.start_ms, strict=True)])
    per_port_low = (statistics.median(hundred.start_ms) - statistics.median(one.start_ms)) / 99
    per_port_high = (statistics.median(thousand.start_ms) - statistics.median(hundred.start_ms)) / 900
    extra = max(max(c.extra_processes) for c in cases)
    out.append("")
    out.append(f"1,000 ports / 1 port: {ratio:.2f}x (median of per-round ratios {paired:.2f}x)")
    out.append(
        f"cost of one more published port: {per_port_low * 1000:.0f} us between 1 and 100 ports, "
        f"{per_port_high * 1000:.0f} us between 100 and 1,000"
    )
    out.append(
        f"processes: {extra} extra beyond each container's own; idle, dockyardd has {idle.daemon_children} "
        f"child(ren) and the shim {idle.shim_children}; with a container, dockyardd "
        f"{max(max(c.daemon_children) for c in cases)} and the shim "
        f"{max(max(c.shim_children) for c in cases)}"
    )
    out.append(
        f"machine-wide process count during a start: {min(min(c.total_delta) for c in cases):+d} to "
        f"{max(max(c.total_delta) for c in cases):+d} (other jobs on the machine included)"
    )
    out.append(
        "holds (fds): dockyardd's extra open descriptors while the ports are published "
        "(a bound socket per port, as docker-proxy's bind, without its process)"
    )
    derived: dict[str, object] = {
        "ratio_1000_over_1": ratio,
        "ratio_1000_over_1_paired": paired,
        "ms_per_port_1_to_100": per_port_low,
        "ms_per_port_100_to_1000": per_port_high,
        "extra_processes": extra,
        "no_process_per_port": extra == 0,
        "map_elements_match_ports": all(max(c.elements) == c.ports for c in cases),
        "map_empty_after_rm": all(max(c.elements_after_rm) == 0 for c in cases),
    }
    return out, derived


# -- 2. throughput -------------------------------------------------------------


@dataclass
class Flow:
    tool: str  # "dockyard" or "docker"
    kind: str  # published, published-local, localhost, hairpin, direct
    label: str
    argv: list[str]
    env: dict[str, str] | None = None
    gbps: list[float] = field(default_factory=list)


def iperf_client(target: str, port: int, seconds: int, program: str = "iperf3") -> list[str]:
    return [program, "-c", target, "-p", str(port), "-t", str(seconds), "-J"]


def run_flow(flow: Flow, seconds: int) -> float:
    """One iperf3 run; the rate the server received, in Gbit/s."""
    out = run_cmd(flow.argv, f"{flow.tool} {flow.kind}", timeout=seconds + 30, env=flow.env)
    try:
        result = json.loads(out)
    except json.JSONDecodeError as e:
        raise BenchError(f"{flow.tool} {flow.kind}: iperf3 printed no JSON: {out[-300:]!r}") from e
    if result.get("error"):
        raise BenchError(f"{flow.tool} {flow.kind}: iperf3: {result['error']}")
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def wait_for_server(flow: Flow, timeout: float = 20) -> None:
    """Until the server container answers (a 1-second run, also a warm-up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run_flow(Flow(flow.tool, flow.kind, flow.label, [*flow.argv[:-3], "-t", "1", "-J"], flow.env), 1)
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def container_ip(inspect_json: str) -> str:
    """The address in `inspect` output; Docker is leaving the top-level field out, so also Networks."""
    settings = json.loads(inspect_json)[0]["NetworkSettings"]
    address = settings.get("IPAddress") or next(
        (n["IPAddress"] for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), ""
    )
    if not address:
        raise BenchError("the server container has no IPv4 address in `inspect`")
    return str(address)


def dockyard_flows(lab: Lab, seconds: int) -> list[Flow]:
    lab.dy("run", "-d", "--name", "iperf-srv", "-p", f"{IPERF_PORT}:{IPERF_PORT}", "iperf3", "-s")
    lab.remember_container("iperf-srv")
    lab.dy("run", "-d", "--name", "iperf-cli", "sleep", "600")
    lab.remember_container("iperf-cli")
    server = container_ip(lab.dy("inspect", "iperf-srv").stdout)
    host = ["ip", "netns", "exec", lab.host]
    up = ["ip", "netns", "exec", lab.up]
    p = IPERF_PORT

    def flow(kind: str, label: str, argv: list[str]) -> Flow:
        return Flow("dockyard", kind, label, argv)

    return [
        flow("published", f"upstream -> {HOST_ADDR}:{p} (DNAT)", [*up, *iperf_client(HOST_ADDR, p, seconds)]),
        flow("direct", f"host -> {server}:{p} (no NAT)", [*host, *iperf_client(server, p, seconds)]),
        flow(
            "published-local",
            f"host -> {HOST_ADDR}:{p} (DNAT, output)",
            [*host, *iperf_client(HOST_ADDR, p, seconds)],
        ),
        flow("localhost", f"host -> 127.0.0.1:{p}", [*host, *iperf_client("127.0.0.1", p, seconds)]),
        flow(
            "hairpin",
            f"container -> {HOST_ADDR}:{p} (hairpin)",
            lab.dy_cmd("exec", "iperf-cli", *iperf_client(HOST_ADDR, p, seconds)),
        ),
    ]


class PrivateDocker:
    """A dockerd of the benchmark's own, inside the lab's host namespace (as in run_latency.py).

    Its data and exec roots live under the lab's $ROOT, its bridge on TEST-NET-1,
    its iptables rules in the lab's namespace: deleting the lab removes it all.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.root / "docker"
        self.sock = self.dir / "exec" / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.containers: list[str] = []

    @staticmethod
    def why_not() -> str | None:
        """None when a side-by-side run is possible, else the reason it is not."""
        if not shutil.which("docker"):
            return "no docker client"
        if not shutil.which("dockerd"):
            return f"the docker client is at {shutil.which('docker')}, but there is no dockerd to run"
        return None

    def docker(self, *args: str, timeout: float = 60) -> str:
        return run_cmd(["docker", *args], f"docker {args[0]}", timeout=timeout, env=self.env)

    def start(self) -> None:
        (self.dir / "exec").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                # `ip netns exec` also mounts a /sys of the lab's namespace, which dockerd reads.
                [
                    *("ip", "netns", "exec", self.lab.host, "dockerd"),
                    *("--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec")),
                    *("--host", f"unix://{self.sock}", "--pidfile", str(self.dir / "dockerd.pid")),
                    *("--bip", DOCKER_BIP),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.lab.remember_pid(self.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"dockerd exited {self.proc.returncode}; see {self.dir / 'dockerd.log'}")
            probe = subprocess.run(["docker", "info"], capture_output=True, env=self.env, timeout=30)
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise BenchError(f"dockerd did not answer within 60 s; see {self.dir / 'dockerd.log'}")
        self._import_image()

    def _import_image(self) -> None:
        """An image holding iperf3 and sleep with their libraries, and /tmp (no registry)."""
        tar_path = self.dir / "image.tar"
        members: dict[str, str] = {}  # path in the image -> the host file it copies
        for binary in (shutil.which("iperf3") or "/usr/bin/iperf3", "/bin/sleep"):
            members[binary.lstrip("/")] = os.path.realpath(binary)
            ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
            for line in ldd.stdout.splitlines():
                paths = [w for w in line.split() if w.startswith("/")]
                if paths:
                    members[paths[0].lstrip("/")] = os.path.realpath(paths[0])
        with tarfile.open(tar_path, "w") as tar:
            tmp = tarfile.TarInfo("tmp")  # iperf3 keeps its buffers in a file under /tmp
            tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(tmp)
            for arcname, source in sorted(members.items()):
                tar.add(source, arcname=arcname)
        self.docker("import", str(tar_path), DOCKER_IMAGE, timeout=120)

    def flows(self, seconds: int) -> list[Flow]:
        iperf3 = shutil.which("iperf3") or "/usr/bin/iperf3"
        publish = f"{DOCKER_HOST_PORT}:{IPERF_PORT}"
        self.docker("run", "-d", "--name", "dyb-iperf-srv", "-p", publish, DOCKER_IMAGE, iperf3, "-s")
        self.containers.append("dyb-iperf-srv")
        self.docker("run", "-d", "--name", "dyb-iperf-cli", DOCKER_IMAGE, "/bin/sleep", "infinity")
        self.containers.append("dyb-iperf-cli")
        server = container_ip(self.docker("inspect", "dyb-iperf-srv"))
        host = ["ip", "netns", "exec", self.lab.host]
        up = ["ip", "netns", "exec", self.lab.up]
        docker = shutil.which("docker") or "docker"
        p, d = DOCKER_HOST_PORT, IPERF_PORT

        def flow(kind: str, label: str, argv: list[str]) -> Flow:
            return Flow("docker", kind, label, argv, self.env)

        return [
            flow(
                "published",
                f"upstream -> {HOST_ADDR}:{p} (DNAT)",
                [*up, *iperf_client(HOST_ADDR, p, seconds)],
            ),
            flow("direct", f"host -> {server}:{d} (no NAT)", [*host, *iperf_client(server, d, seconds)]),
            flow(
                "published-local",
                f"host -> {HOST_ADDR}:{p} (DNAT, output)",
                [*host, *iperf_client(HOST_ADDR, p, seconds)],
            ),
            flow(
                "localhost",
                f"host -> 127.0.0.1:{p} (docker-proxy)",
                [*host, *iperf_client("127.0.0.1", p, seconds)],
            ),
            flow(
                "hairpin",
                f"container -> {HOST_ADDR}:{p} (hairpin, docker-proxy)",
                [docker, "exec", "dyb-iperf-cli", *iperf_client(HOST_ADDR, p, seconds, iperf3)],
            ),
        ]

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            if self.containers:
                try:
                    self.docker("rm", "-f", *self.containers, timeout=30)
                except BenchError as e:
                    problems.append(str(e))
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd (pid {self.proc.pid}) ignored SIGTERM for 30 s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        return problems


def measure_flows(flows: list[Flow], rounds: int, seconds: int) -> list[list[str]]:
    """Each round runs every flow once, in turn (A B C A B C ...)."""
    for tool in dict.fromkeys(f.tool for f in flows):
        wait_for_server(next(f for f in flows if f.tool == tool and f.kind == "direct"))
    orders: list[list[str]] = []
    for _ in range(rounds):
        for flow in flows:
            flow.gbps.append(run_flow(flow, seconds))
        orders.append([f"{f.tool} {f.kind}" for f in flows])
    return orders


def verdict(met: bool, ratio: float) -> str:
    change = f"loses {1 - ratio:.0%}" if ratio < 1 else f"gains {ratio - 1:.0%}"
    return f"{'met' if met else 'NOT met'} ({change})"


def flow_report(flows: list[Flow], rounds: int, seconds: int) -> tuple[list[str], dict[str, object]]:
    out = [f"throughput: iperf3 -t {seconds}, one TCP stream, median of {rounds} alternating rounds", ""]
    head = f"{'flow (Gbit/s)':<56} {'median':>7} {'min':>7} {'max':>7} {'/direct':>8}"
    out += [head, "-" * len(head)]
    med = {(f.tool, f.kind): statistics.median(f.gbps) for f in flows}
    for f in flows:
        m = med[(f.tool, f.kind)]
        ratio = m / med[(f.tool, "direct")]
        label = f"{f.tool} {f.label}"
        out.append(f"{label:<56} {m:7.2f} {min(f.gbps):7.2f} {max(f.gbps):7.2f} {ratio:8.2f}")
    ratios = {f"{t} {k}/direct": v / med[(t, "direct")] for (t, k), v in med.items() if k != "direct"}
    published = ratios["dockyard published/direct"]
    local = ratios["dockyard published-local/direct"]
    out.append("")
    out.append(
        f"published/direct (upstream through DNAT and forwarding, against host to container): {published:.2f}"
    )
    out.append(f"published/direct on the same single veth hop (host to its own address, DNAT): {local:.2f}")
    goal = {
        "ratio": published,
        "ratio_same_hop": local,
        "goal_loss": GOAL_NAT_LOSS,
        "met": published >= 1 - GOAL_NAT_LOSS,
        "met_same_hop": local >= 1 - GOAL_NAT_LOSS,
    }
    out.append(
        f"goal (issue 3) kernel NAT loses under {GOAL_NAT_LOSS:.0%}: "
        f"{verdict(bool(goal['met']), published)}; "
        f"on the same hop: {verdict(bool(goal['met_same_hop']), local)}"
    )
    if ("docker", "localhost") in med:
        side = med[("dockyard", "localhost")] / med[("docker", "localhost")]
        ratios["dockyard localhost/docker localhost"] = side
        out.append(f"127.0.0.1: dockyard (kernel NAT) / docker (docker-proxy): {side:.2f}x")
        hair = med[("dockyard", "hairpin")] / med[("docker", "hairpin")]
        ratios["dockyard hairpin/docker hairpin"] = hair
        out.append(f"hairpin: dockyard / docker: {hair:.2f}x")
    return out, {"ratios": ratios, "goal_nat": goal}


# -- main ----------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="timed starts per port count (default 10)")
    p.add_argument("--warmup", type=int, default=1, help="untimed starts per port count first (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="iperf3 rounds, each flow once a round (default 3)")
    p.add_argument("--seconds", type=int, default=3, help="iperf3 -t, seconds per flow (default 3)")
    p.add_argument("--no-docker", action="store_true", help="never start a private dockerd")
    p.add_argument("--smoke", action="store_true", help="2 starts per case, 1 s flows, 1 round, no Docker")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.rounds, args.seconds, args.no_docker = 2, 0, 1, 1, True
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1 or args.seconds < 1:
        p.error("--runs, --rounds and --seconds must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("publish_ports: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    lab = Lab("dypub")
    docker_note = "not run (--smoke or --no-docker)" if args.no_docker else PrivateDocker.why_not()
    docker = PrivateDocker(lab) if docker_note is None else None
    iperf_note = None if shutil.which("iperf3") else "no iperf3 (apt-get install iperf3, or make deps)"
    status = 0
    problems: list[str] = []
    try:
        lab.setup()
        lab.start_daemon()
        print(
            f"starting containers with 1, 100 and 1,000 published ports: {args.warmup} warm-up and "
            f"{args.runs} timed runs each ...",
            flush=True,
        )
        cases, idle = measure_starts(lab, args.runs, args.warmup)
        lines, start_derived = start_report(cases, idle, args.runs)
        print("\n".join(["", *lines]), flush=True)

        flows: list[Flow] = []
        orders: list[list[str]] = []
        flow_derived: dict[str, object] = {}
        if iperf_note is None:
            flows = dockyard_flows(lab, args.seconds)
            if docker is not None:
                docker.start()
                flows += docker.flows(args.seconds)
            print(
                f"\nthroughput: {len(flows)} flows, {args.rounds} round(s), {args.seconds} s each ...",
                flush=True,
            )
            orders = measure_flows(flows, args.rounds, args.seconds)
            lines, flow_derived = flow_report(flows, args.rounds, args.seconds)
            print("\n".join(["", *lines]), flush=True)
        else:
            print(f"\nthroughput: not measured: {iperf_note}", flush=True)
            if not args.smoke:
                status = 1
        print("")
        if args.no_docker:
            print(f"docker: {docker_note}, no side-by-side figures")
        elif docker_note:
            print(f"docker: not installed, no side-by-side figures ({docker_note})")
        else:
            print("docker: measured side by side above (a private dockerd in the lab's host namespace)")
        host_info = {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": load_average(),
        }
        print(
            f"machine: {host_info['cpus']} CPUs, Linux {host_info['kernel']}, Python {host_info['python']}; "
            f"load average {load_before} before, {host_info['load_after']} after"
        )
        if args.json:
            raw = {
                "machine": host_info,
                "runs": args.runs,
                "warmup": args.warmup,
                "idle_processes": idle.__dict__,
                "starts": [
                    {**c.__dict__, "summary_ms": summary(c.start_ms), "rm_summary_ms": summary(c.rm_ms)}
                    for c in cases
                ],
                "start": start_derived,
                "throughput": {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "flows": [
                        {"tool": f.tool, "kind": f.kind, "label": f.label, "argv": f.argv, "gbps": f.gbps}
                        for f in flows
                    ],
                    "order": orders,
                    "not_measured": iperf_note,
                    **flow_derived,
                },
                "docker": None if docker_note else "side by side",
                "docker_note": docker_note,
            }
            Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
            print(f"raw results written to {args.json}")
    except (BenchError, LabError) as e:
        print(f"publish_ports: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\npublish_ports: interrupted", file=sys.stderr)
        status = 130
    except Interrupted as e:
        print(f"\npublish_ports: interrupted ({e})", file=sys.stderr)
        status = 128 + e.signum
    finally:
        with signals_ignored():
            if docker is not None:
                problems += docker.stop()
            problems += lab.teardown()
            problems += [f"left behind: {thing}" for thing in lab.leftovers()]
    for problem in problems:
        print(f"publish_ports: cleanup: {problem}", file=sys.stderr)
    if problems and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
