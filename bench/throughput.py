"""Throughput with iperf3 (issue 7, comparison 3): dockyard beside Docker 20.10 with docker-proxy.

    .venv/bin/python bench/throughput.py [--rounds N] [--seconds S] [--crowd N] [--json PATH]
    .venv/bin/python bench/throughput.py --smoke     # 1 round of 1 s flows, 3 crowd containers, dockyard only

As root. Each tool works in a throwaway lab of its own (demo/netlab.py: a host
namespace, an upstream namespace on TEST-NET addresses; the root namespace is
never touched), so that their firewalls never mix: dockyardd with
--host-netns in one, a private dockerd (bench/_reference.py, its default
userland proxy on, its bridge on 198.18.0.0/16) in the other. In each lab a
server container runs `iperf3 -s` published with `-p PORT:PORT`, and a
client container sleeps. dockyard's containers see the host's file system
(its iperf3); Docker's run a busybox image with iperf3 and its libraries,
imported locally.

One TCP stream, `iperf3 -t S -O 1 -J` (the first second of slow start left
out), the rate the server received. The flows, for each tool:

  a. container to container, on the same bridge;
  b. host to the container's address (no NAT): the direct reference;
  c. host to 127.0.0.1:PORT (dockyard: kernel DNAT; Docker: docker-proxy);
  d. the upstream namespace to the host's address:PORT (DNAT, forwarded);
  e. hairpin: the client container to the host's address:PORT
     (dockyard: kernel DNAT; Docker: docker-proxy).

Every flow runs once untimed first (1 s, which also waits for its server).
Then each round runs every flow of every tool once, the tools alternating
(A B A B ...) and the order rotated by one each round, so that drift on the
machine hits every flow alike. A figure is the median of the rounds with its
min-max; the ratios are of medians, and against b also paired (the median of
the per-round ratios, in which drift cancels out: the goals on c/b and e/b
are judged on it).

f. Crowd: flows b and d with N other endpoints on the same bridge (N
   `dockyard run -d -p P:80 sleep infinity` containers, one published port
   each, so the firewall holds N more map elements), against the same flows
   alone, measured just before the N start and again after they are removed
   (alone = both pooled). dockyard only unless --crowd-docker (N docker
   containers mean N docker-proxy processes and N shims).

Goals of the issue, printed met or NOT met with the measured value:
127.0.0.1 and hairpin published-port throughput at least 95% of the direct
flow (c/b, e/b), and a bridged flow with 500 other endpoints within 5% of
the flow alone. Rates are reported, never asserted: the exit status is 0
unless a measured command failed or cleanup had to force something (1), or
the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import HOST_ADDR, Interrupted, Lab, LabError, raise_on_termination  # noqa: E402

from _common import (  # noqa: E402
    BenchError,
    load_average,
    machine,
    machine_line,
    ratio,
    rotated,
    run_cmd,
    summary,
)
from _reference import PrivateDocker, rootfs_tar  # noqa: E402
from _report import Goal, Plot, Report, Series, Table  # noqa: E402
from _script import clean_up, exit_status, failure_status, labs_for, write_results  # noqa: E402

IMAGE = "dybench-iperf3:latest"
DOCKER_BIP = "198.18.0.1/16"  # RFC 2544's benchmarking range, inside Docker's lab only; room for a crowd
SERVER, CLIENT = "tput-srv", "tput-cli"
CROWD_PORT = 20000  # the crowd publishes CROWD_PORT, CROWD_PORT + 1, ...
MAX_CROWD = 1000  # a bridge holds at most 1,024 ports
GOAL_PUBLISHED = 0.95  # c/b and e/b at least this
GOAL_CROWD = 0.05  # a flow with the crowd within this of the flow alone
TOOLS = ("dockyard", "docker")
# kind -> (row label, short label for plots)
KINDS = {
    "c2c": ("a. container -> container", "a. c2c"),
    "direct": ("b. host -> container's address", "b. direct"),
    "localhost": ("c. host -> 127.0.0.1:port", "c. 127.0.0.1"),
    "outside": ("d. outside -> host address:port", "d. outside"),
    "hairpin": ("e. container -> host address:port", "e. hairpin"),
}
CROWD_KINDS = ("direct", "outside")
# Measured on this machine kind before dockyard existed (issue 7).
REFERENCE = (
    "docker-proxy delivers 57-65% of loopback throughput on 127.0.0.1 and hairpin; "
    "a bridged flow behind 1,000 iptables rules loses about 30%"
)


@dataclass
class Flow:
    """One iperf3 client command of one tool, and the rates it measured (Gbit/s)."""

    tool: str
    kind: str
    path: str  # what carries it: "no NAT", "kernel DNAT", "docker-proxy", ...
    argv: list[str]  # the client up to its target and port; -t, -O and -J are added
    env: dict[str, str] | None = None
    gbps: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.tool} {self.kind}"

    def fresh(self) -> Flow:
        return Flow(self.tool, self.kind, self.path, self.argv, self.env)


def iperf3(target: str, port: int) -> list[str]:
    return ["iperf3", "-c", target, "-p", str(port)]


def run_flow(flow: Flow, seconds: int, omit: int, extra: tuple[str, ...] = ()) -> float:
    """One iperf3 run; the rate the server received, in Gbit/s."""
    argv = [*flow.argv, "-t", str(seconds), "-O", str(omit), "-J", *extra]
    out = run_cmd(argv, flow.key, timeout=seconds + omit + 30, env=flow.env)
    try:
        result = json.loads(out)
    except json.JSONDecodeError as e:
        raise BenchError(f"{flow.key}: iperf3 printed no JSON: {out[-300:]!r}") from e
    if result.get("error"):
        raise BenchError(f"{flow.key}: iperf3: {result['error']}")
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def warm_up(flow: Flow, timeout: float = 30) -> None:
    """One untimed 1-second run, retried until the server answers (it may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run_flow(flow, 1, 0, ("--connect-timeout", "2000"))
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def measure(flows: list[Flow], rounds: int, seconds: int, omit: int) -> list[list[str]]:
    """`rounds` rounds, every flow once a round, in an order rotated by one each round."""
    orders: list[list[str]] = []
    for r in range(rounds):
        order = rotated(flows, r)
        for flow in order:
            flow.gbps.append(run_flow(flow, seconds, omit))
        orders.append([f.key for f in order])
    return orders


def interleaved(flows: list[Flow]) -> list[Flow]:
    """Flow by flow, tool by tool: dockyard a, docker a, dockyard b, docker b, ..."""
    return sorted(flows, key=lambda f: (list(KINDS).index(f.kind), TOOLS.index(f.tool)))


def container_ip(inspect_json: str) -> str:
    """The address in `inspect` output (the top-level field, else the first network's)."""
    settings = json.loads(inspect_json)[0]["NetworkSettings"]
    address = settings.get("IPAddress") or next(
        (n["IPAddress"] for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), ""
    )
    if not address:
        raise BenchError("the server container has no IPv4 address in `inspect`")
    return str(address)


def firewall_size(ns: str) -> dict[str, int]:
    """Rules and set/map elements of the whole nft ruleset of a namespace (iptables-nft included)."""
    out = run_cmd(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], f"nft list ruleset in {ns}")
    objects = json.loads(out)["nftables"]
    rules = sum(1 for o in objects if "rule" in o)
    elements = sum(len(o[k].get("elem", [])) for o in objects for k in ("set", "map") if k in o)
    return {"rules": rules, "elements": elements}


# -- the tools -----------------------------------------------------------------------


def dockyard_flows(lab: Lab, port: int) -> list[Flow]:
    lab.dy("run", "-d", "--name", SERVER, "-p", f"{port}:{port}", "iperf3", "-s", "-p", str(port))
    lab.remember_container(SERVER)
    lab.dy("run", "-d", "--name", CLIENT, "sleep", "infinity")
    lab.remember_container(CLIENT)
    server = container_ip(lab.dy("inspect", SERVER).stdout)
    host, up = ["ip", "netns", "exec", lab.host], ["ip", "netns", "exec", lab.up]
    exec_ = lab.dy_cmd("exec", CLIENT)

    def flow(kind: str, path: str, argv: list[str]) -> Flow:
        return Flow("dockyard", kind, path, argv)

    return [
        flow("c2c", "bridge", [*exec_, *iperf3(server, port)]),
        flow("direct", "no NAT", [*host, *iperf3(server, port)]),
        flow("localhost", "kernel DNAT", [*host, *iperf3("127.0.0.1", port)]),
        flow("outside", "kernel DNAT, forwarded", [*up, *iperf3(HOST_ADDR, port)]),
        flow("hairpin", "kernel DNAT, hairpin", [*exec_, *iperf3(HOST_ADDR, port)]),
    ]


def docker_flows(docker: PrivateDocker, lab: Lab, port: int) -> list[Flow]:
    docker.docker(
        "run", "-d", "--name", SERVER, "-p", f"{port}:{port}", IMAGE, "iperf3", "-s", "-p", str(port)
    )
    docker.docker("run", "-d", "--name", CLIENT, IMAGE, "sleep", "100000")
    server = container_ip(docker.docker("inspect", SERVER))
    host, up = ["ip", "netns", "exec", lab.host], ["ip", "netns", "exec", lab.up]
    exec_ = docker.argv("exec", CLIENT)

    def flow(kind: str, path: str, argv: list[str]) -> Flow:
        return Flow("docker", kind, path, argv, docker.env)

    return [
        flow("c2c", "bridge", [*exec_, *iperf3(server, port)]),
        flow("direct", "no NAT", [*host, *iperf3(server, port)]),
        flow("localhost", "docker-proxy", [*host, *iperf3("127.0.0.1", port)]),
        flow("outside", "iptables DNAT, forwarded", [*up, *iperf3(HOST_ADDR, port)]),
        flow("hairpin", "docker-proxy, hairpin", [*exec_, *iperf3(HOST_ADDR, port)]),
    ]


@dataclass
class Crowd:
    """N idle containers of one tool with one published port each: how to start and remove them."""

    tool: str
    ns: str  # the tool's host namespace, for the firewall's size
    start_one: Callable[[int], list[str]]  # index -> the command that starts it
    remove_some: Callable[[list[str]], list[str]]  # names -> the command that removes them
    env: dict[str, str] | None = None
    start_s: float = 0.0
    rm_s: float = 0.0

    @staticmethod
    def name(i: int) -> str:
        return f"crowd-{i}"

    def start(self, count: int, jobs: int) -> None:
        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(
                pool.map(
                    lambda i: run_cmd(self.start_one(i), f"{self.tool} crowd start", env=self.env),
                    range(count),
                )
            )
        self.start_s = time.monotonic() - begin

    def remove(self, count: int, jobs: int, batch: int = 25) -> None:
        begin = time.monotonic()
        names = [self.name(i) for i in range(count)]
        batches = [names[i : i + batch] for i in range(0, count, batch)]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(
                pool.map(
                    lambda b: run_cmd(
                        self.remove_some(b), f"{self.tool} crowd rm", timeout=300, env=self.env
                    ),
                    batches,
                )
            )
        self.rm_s = time.monotonic() - begin


def dockyard_crowd(lab: Lab) -> Crowd:
    return Crowd(
        "dockyard",
        lab.host,
        lambda i: lab.dy_cmd(
            "run", "-d", "--name", Crowd.name(i), "-p", f"{CROWD_PORT + i}:80", "sleep", "infinity"
        ),
        lambda names: lab.dy_cmd("rm", "-f", *names),
    )


def docker_crowd(docker: PrivateDocker, lab: Lab) -> Crowd:
    return Crowd(
        "docker",
        lab.host,
        lambda i: docker.argv(
            "run", "-d", "--name", Crowd.name(i), "-p", f"{CROWD_PORT + i}:80", IMAGE, "sleep", "100000"
        ),
        lambda names: docker.argv("rm", "-f", *names),
        docker.env,
    )


# -- the report ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def cell(gbps: list[float]) -> str:
    s = summary(gbps)
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def paired(a: Flow, b: Flow) -> float:
    """Median of the per-round ratios a/b (the two ran in the same round, close in time)."""
    return median([ratio(x, y) for x, y in zip(a.gbps, b.gbps, strict=True)])


def spread_series(name: str, labels: list[str], flows: list[list[float]]) -> Series:
    return Series(
        name,
        labels,
        [median(g) for g in flows],
        [min(g) for g in flows],
        [max(g) for g in flows],
    )


@dataclass
class CrowdResult:
    count: int
    phases: dict[str, list[Flow]]  # "before", "with", "after" -> the crowd's flows
    firewall: dict[str, dict[str, dict[str, int]]]  # tool -> phase -> rules, elements
    crowds: list[Crowd]

    def alone(self, tool: str, kind: str) -> list[float]:
        return [
            g
            for ph in ("before", "after")
            for f in self.phases[ph]
            if f.key == f"{tool} {kind}"
            for g in f.gbps
        ]

    def with_crowd(self, tool: str, kind: str) -> list[float]:
        return next(f.gbps for f in self.phases["with"] if f.key == f"{tool} {kind}")

    def ratio(self, tool: str, kind: str) -> float:
        """Median with the crowd over median alone."""
        return ratio(median(self.with_crowd(tool, kind)), median(self.alone(tool, kind)))

    def tools(self) -> list[str]:
        return list(dict.fromkeys(f.tool for f in self.phases["with"]))


def build_report(
    flows: list[Flow],
    crowd: CrowdResult | None,
    args: argparse.Namespace,
    notes: list[str],
    info: dict[str, object],
) -> Report:
    by = {(f.tool, f.kind): f for f in flows}
    tools = [t for t in TOOLS if (t, "direct") in by]
    med = {k: median(f.gbps) for k, f in by.items()}
    columns = ["flow", *(f"{t} Gbit/s (min-max)" for t in tools)]
    if "docker" in tools:
        columns.append("dockyard / docker")
    columns += [f"{t} / b (paired)" for t in tools]
    rows = []
    for kind, (label, _) in KINDS.items():
        row = [label, *(cell(by[(t, kind)].gbps) for t in tools)]
        if "docker" in tools:
            row.append(f"{ratio(med[('dockyard', kind)], med[('docker', kind)]):.2f}x")
        for t in tools:
            over, direct = by[(t, kind)], by[(t, "direct")]
            row.append(f"{ratio(med[(t, kind)], med[(t, 'direct')]):.2f} ({paired(over, direct):.2f})")
        rows.append(row)
    path_rows = [[KINDS[k][0], *(by[(t, k)].path for t in tools)] for k in KINDS]

    goals = []
    for kind, what, letters in (("localhost", "127.0.0.1", "c/b"), ("hairpin", "hairpin", "e/b")):
        # Judged on the paired ratio: the two flows ran in the same rounds, so drift cancels out.
        r = ratio(med[("dockyard", kind)], med[("dockyard", "direct")])
        p = paired(by[("dockyard", kind)], by[("dockyard", "direct")])
        side = (
            f"docker ({by[('docker', kind)].path}) "
            f"{paired(by[('docker', kind)], by[('docker', 'direct')]):.2f} of its direct (paired); "
            f"dockyard {ratio(med[('dockyard', kind)], med[('docker', kind)]):.2f}x docker"
            if "docker" in tools
            else "Docker not run"
        )
        goals.append(
            Goal(
                f"{what} published-port throughput at least {GOAL_PUBLISHED:.0%} of the direct flow "
                f"({letters})",
                p >= GOAL_PUBLISHED,
                f"{p:.3f} paired ({r:.3f} of medians)",
                side,
            )
        )

    tables = [
        Table(
            f"one TCP stream, iperf3 -t {args.seconds} -O {args.omit}: median (min-max) of {args.rounds} "
            "round(s); ratios of medians, and (paired) the median of the per-round ratios",
            columns,
            rows,
        ),
        Table("what carries each flow", ["flow", *tools], path_rows),
    ]
    plots = [
        Plot(
            "throughput",
            f"iperf3, one TCP stream (median, min-max of {args.rounds} rounds)",
            "bar",
            "flow",
            "Gbit/s",
            [
                spread_series(t, [s for _, s in KINDS.values()], [by[(t, k)].gbps for k in KINDS])
                for t in tools
            ],
        )
    ]

    crowd_notes = []
    if crowd is not None:
        n = crowd.count
        crowd_notes = [
            f"f.: {c.tool} started its {n} containers in {c.start_s:.1f} s ({args.crowd_jobs} at a time) "
            f"and removed them in {c.rm_s:.1f} s"
            for c in crowd.crowds
        ]
        crowd_rows = []
        series = []
        for t in crowd.tools():
            alone_all, with_all = [], []
            for kind in CROWD_KINDS:
                before = next(f.gbps for f in crowd.phases["before"] if f.key == f"{t} {kind}")
                after = next(f.gbps for f in crowd.phases["after"] if f.key == f"{t} {kind}")
                alone, with_n = crowd.alone(t, kind), crowd.with_crowd(t, kind)
                r = crowd.ratio(t, kind)
                crowd_rows.append(
                    [
                        f"{t} {KINDS[kind][0]}",
                        cell(before),
                        cell(with_n),
                        cell(after),
                        cell(alone),
                        f"{r:.2f} ({ratio(median(with_n), median(before)):.2f}; "
                        f"{ratio(median(with_n), median(after)):.2f})",
                    ]
                )
                alone_all.append(alone)
                with_all.append(with_n)
            labels = [KINDS[k][1] for k in CROWD_KINDS]
            series += [
                spread_series(f"{t} alone", labels, alone_all),
                spread_series(f"{t} with {n}", labels, with_all),
            ]
        fw_rows = [
            [
                t,
                *(
                    f"{crowd.firewall[t][ph]['rules']} / {crowd.firewall[t][ph]['elements']}"
                    for ph in ("before", "with", "after")
                ),
            ]
            for t in crowd.tools()
        ]
        tables += [
            Table(
                f"f. the same flow with {n} other endpoints on the bridge (Gbit/s, median (min-max) of "
                f"{args.rounds} round(s); alone = before and after pooled)",
                [
                    "flow",
                    "alone before",
                    f"with {n}",
                    "alone after",
                    "alone",
                    f"with {n} / alone (/ before; / after)",
                ],
                crowd_rows,
            ),
            Table(
                "f. firewall of the tool's host namespace (nft rules / set and map elements)",
                ["", "before", f"with {n}", "after"],
                fw_rows,
            ),
        ]
        for kind in CROWD_KINDS:
            r = crowd.ratio("dockyard", kind)
            side = (
                f"docker {crowd.ratio('docker', kind):.2f}"
                if "docker" in crowd.tools()
                else "Docker not run (--crowd-docker)"
            )
            goals.append(
                Goal(
                    f"a bridged flow ({KINDS[kind][1]}) with {n} other endpoints within "
                    f"{GOAL_CROWD:.0%} of the flow alone",
                    abs(r - 1) <= GOAL_CROWD,
                    f"{r:.3f}",
                    side,
                )
            )
        plots.append(
            Plot(
                "throughput_crowd",
                f"a bridged flow alone and with {n} other endpoints (median, min-max)",
                "bar",
                "flow",
                "Gbit/s",
                series,
            )
        )
    return Report(
        key="throughput",
        title="3. Throughput",
        method=(
            f"iperf3, one TCP stream, {args.seconds} s after {args.omit} s left out, the rate the server "
            f"received; {args.rounds} round(s), each running every flow of every tool once, the tools "
            "alternating and the order rotated by one each round; every flow warmed up once first. Each "
            "tool in a throwaway host namespace of its own, its server container published with "
            f"`-p {args.port}:{args.port}`; Docker 20.10 with its default userland proxy. "
            + machine_line(info)
        ),
        tables=tables,
        goals=goals,
        notes=[*notes, *crowd_notes, f"reference figures measured on this machine kind earlier: {REFERENCE}"],
        plots=plots,
    )


# -- main ------------------------------------------------------------------------------


def measure_crowd(
    flows: list[Flow], crowds: list[Crowd], args: argparse.Namespace
) -> tuple[CrowdResult, dict[str, list[list[str]]]]:
    """The crowd's flows alone, with the crowd, alone again (each phase its own rounds)."""
    phases: dict[str, list[Flow]] = {}
    orders: dict[str, list[list[str]]] = {}
    firewall: dict[str, dict[str, dict[str, int]]] = {c.tool: {} for c in crowds}

    def phase(name: str) -> None:
        for c in crowds:
            firewall[c.tool][name] = firewall_size(c.ns)
        phases[name] = [f.fresh() for f in flows]
        orders[name] = measure(phases[name], args.rounds, args.seconds, args.omit)

    print(f"crowd: {len(flows)} flows alone, {args.rounds} round(s) ...", flush=True)
    phase("before")
    for c in crowds:
        print(
            f"crowd: starting {args.crowd} {c.tool} containers, {args.crowd_jobs} at a time ...", flush=True
        )
        c.start(args.crowd, args.crowd_jobs)
    print(f"crowd: the same flows with {args.crowd} other endpoints ...", flush=True)
    phase("with")
    for c in crowds:
        c.remove(args.crowd, args.crowd_jobs)
    print("crowd: the same flows alone again ...", flush=True)
    phase("after")
    return CrowdResult(args.crowd, phases, firewall, crowds), orders


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="rounds, each flow once a round (default 5)")
    p.add_argument("--seconds", type=int, default=4, help="iperf3 -t, measured seconds per flow (default 4)")
    p.add_argument("--omit", type=int, default=1, help="iperf3 -O, seconds left out first (default 1)")
    p.add_argument("--port", type=int, default=5201, help="the server's published port (default 5201)")
    p.add_argument("--crowd", type=int, default=500, help="other endpoints for f.; 0: no f. (default 500)")
    p.add_argument("--crowd-jobs", type=int, default=8, help="crowd containers started at once (default 8)")
    p.add_argument("--crowd-docker", action="store_true", help="also measure f. for Docker (heavy)")
    p.add_argument("--no-docker", action="store_true", help="do not measure Docker")
    p.add_argument("--smoke", action="store_true", help="1 round of 1 s flows, a crowd of 3, dockyard only")
    p.add_argument("--json", metavar="PATH", help="also write the report and raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.omit, args.crowd, args.crowd_jobs = 1, 1, 0, 3, 3
        args.no_docker, args.crowd_docker = True, False
    if args.rounds < 1 or args.seconds < 1 or args.omit < 0 or args.crowd_jobs < 1:
        p.error("--rounds, --seconds and --crowd-jobs must be at least 1, --omit at least 0")
    if not 0 <= args.crowd <= MAX_CROWD:
        p.error(f"--crowd must be between 0 and {MAX_CROWD} (a bridge holds at most 1,024 ports)")
    if not 1 <= args.port < CROWD_PORT:
        p.error(f"--port must be a port number under {CROWD_PORT} (the crowd's ports start there)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("throughput: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    if not shutil.which("iperf3"):
        print("throughput: no iperf3 (apt-get install iperf3; make bench does)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    labs, notes = labs_for([("docker", args.no_docker, PrivateDocker)])
    docker = None
    status = 0
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="dybench-tput-"))
    try:
        for lab in labs.values():
            lab.setup()
        lab = labs["dockyard"]
        lab.start_daemon()
        flows = dockyard_flows(lab, args.port)
        crowds = [dockyard_crowd(lab)]
        if "docker" in labs:
            docker = PrivateDocker(labs["docker"].host, work / "docker", bip=DOCKER_BIP)
            docker.start()
            docker.import_image(rootfs_tar(work / "image.tar", ["iperf3"]), IMAGE)
            flows += docker_flows(docker, labs["docker"], args.port)
            notes.append(
                f"docker: {docker.version()}, a private dockerd in its lab's host namespace, "
                "userland proxy on (its default)"
            )
            if args.crowd_docker:
                crowds.append(docker_crowd(docker, labs["docker"]))
            elif args.crowd:
                notes.append("docker: f. not measured (--crowd-docker to add it: heavy)")
        flows = interleaved(flows)
        print(f"warming up {len(flows)} flows (1 s each) ...", flush=True)
        for flow in flows:
            warm_up(flow)
        print(
            f"measuring {len(flows)} flows: {args.rounds} round(s) of {args.seconds} s each ...", flush=True
        )
        orders = measure(flows, args.rounds, args.seconds, args.omit)
        crowd, crowd_orders = None, {}
        if args.crowd:
            crowd_flows = [f for f in flows if f.kind in CROWD_KINDS and f.tool in {c.tool for c in crowds}]
            crowd, crowd_orders = measure_crowd(crowd_flows, crowds, args)
        info = machine(load_before)
        report = build_report(flows, crowd, args, notes, info)
        print(report.text(), flush=True)
        if args.json:

            def dump(fs: list[Flow]) -> list[dict[str, object]]:
                return [
                    {
                        "tool": f.tool,
                        "kind": f.kind,
                        "path": f.path,
                        "argv": f.argv,
                        "gbps": f.gbps,
                        **summary(f.gbps),
                    }
                    for f in fs
                ]

            raw: dict[str, object] = {
                "args": vars(args),
                "machine": info,
                "flows": dump(flows),
                "rounds": orders,
            }
            if crowd is not None:
                raw["crowd"] = {
                    "count": crowd.count,
                    "phases": {ph: dump(fs) for ph, fs in crowd.phases.items()},
                    "rounds": crowd_orders,
                    "firewall": crowd.firewall,
                    "start_s": {c.tool: c.start_s for c in crowd.crowds},
                    "rm_s": {c.tool: c.rm_s for c in crowd.crowds},
                }
            write_results(args.json, report, raw)
    except (BenchError, LabError, KeyboardInterrupt, Interrupted) as e:
        status = failure_status("throughput", e)
    finally:
        problems += clean_up([docker], labs.values(), work)
    return exit_status("throughput", status, problems)


if __name__ == "__main__":
    sys.exit(main())
