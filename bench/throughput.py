"""Throughput with iperf3 (issue 7, comparison 3): dockyard beside Docker 20.10 with docker-proxy.

    .venv/bin/python bench/throughput.py [--rounds N] [--seconds S] [--crowd N] [--json PATH]
    .venv/bin/python bench/throughput.py --smoke     # 1 round of 1 s flows, 3 crowd containers, dockyard only

As root. Each tool works in a throwaway lab of its own (tests/lab.py through
demo/netlab.py: a host namespace, an upstream namespace on TEST-NET
addresses; the root namespace is never touched), so that their firewalls
never mix: dockyardd with --host-netns in one, a private dockerd
(bench/_reference.py, its default userland proxy on, its bridge on
198.18.0.0/16) in the other. In each lab a server container runs `iperf3
-s` published with `-p PORT:PORT`, and a client container sleeps.
dockyard's containers see the host's file system (its iperf3); Docker's run
a busybox image with iperf3 and its libraries, imported locally.

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

g. Kernel-only baseline (unless --no-baseline): the five flows through a
   bridge, a client and a server namespace and hand-written nft rules
   doing only what publishing needs (bench/_kernel.py: `ip daddr HOST tcp
   dport PORT dnat to SERVER`, the same from 127.0.0.1 with route_localnet
   on the bridge, `ct status dnat ... masquerade` on the hairpin's way back
   into the bridge), in a lab of their own, in the same rounds as the
   tools' flows. Its c/b and e/b are what the kernel itself gives a
   published flow on this machine: dockyard's are printed beside them, and
   the difference is what dockyard's own rules cost (its port guard, its
   forward chain).

f. Crowd: flows b and d with N other endpoints on the same bridge (N
   `dockyard run -d -p P:80 sleep infinity` containers, one published port
   each, so the firewall holds N more map elements), against the same flows
   alone, measured just before the N start and again after they are removed
   (alone = both pooled). dockyard only unless --crowd-docker (N docker
   containers mean N docker-proxy processes and N shims).

Goals of the issues, printed met or NOT met with the measured value:
127.0.0.1 and hairpin published-port throughput at least 95% of the direct
flow (c/b, e/b), and a bridged flow with 500 other endpoints within 5% of
the flow alone. Rates are reported, never asserted: the exit status is 0
unless a measured command failed or cleanup had to force something (1), or
the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from _common import BenchError, ratio, rotated, run_cmd, summary
from _kernel import TOOL as BASELINE
from _kernel import beside_baseline, kernel_lab
from _reference import PrivateDocker, rootfs_tar
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import HOST_ADDR, Run, ScriptLab, main, options

IMAGE = "dybench-iperf3:latest"
DOCKER_BIP = "198.18.0.1/16"  # RFC 2544's benchmarking range, inside Docker's lab only; room for a crowd
SERVER, CLIENT = "tput-srv", "tput-cli"
CROWD_PORT = 20000  # the crowd publishes CROWD_PORT, CROWD_PORT + 1, ...
MAX_CROWD = 1000  # a bridge holds at most 1,024 ports
GOAL_PUBLISHED = 0.95  # c/b and e/b at least this (issues 7 and 19)
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
# What carries each flow, per tool.
PATHS = {
    "dockyard": ("bridge", "no NAT", "kernel DNAT", "kernel DNAT, forwarded", "kernel DNAT, hairpin"),
    "docker": ("bridge", "no NAT", "docker-proxy", "iptables DNAT, forwarded", "docker-proxy, hairpin"),
}
BASELINE_PATHS = (
    "bridge",
    "no NAT",
    "hand-written DNAT",
    "hand-written DNAT, forwarded",
    "hand-written DNAT + masquerade, hairpin",
)
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

    def dump(self) -> dict[str, Any]:
        figures = {
            "tool": self.tool,
            "kind": self.kind,
            "path": self.path,
            "argv": self.argv,
            "gbps": self.gbps,
        }
        return {**figures, **(summary(self.gbps) if self.gbps else {})}


# iperf3's server runs one test at a time and takes a moment after a test ends before it
# accepts the next: a client that comes in between is told so ("busy") or has its control
# connection reset, before anything is measured. It says "try again later": so we do.
NOT_YET = ("the server is busy", "unable to receive control message", "Connection reset by peer")


def run_flow(flow: Flow, seconds: int, omit: int, extra: tuple[str, ...] = (), tries: int = 20) -> float:
    """One iperf3 run; the rate the server received, in Gbit/s."""
    argv = [*flow.argv, "-t", str(seconds), "-O", str(omit), "-J", *extra]
    for attempt in range(tries):
        try:
            out = run_cmd(argv, flow.key, timeout=seconds + omit + 30, env=flow.env)
        except BenchError as e:  # -J: iperf3 may exit 1 with its error in the JSON it printed
            if not any(s in str(e) for s in NOT_YET) or attempt == tries - 1:
                raise
            time.sleep(0.2)
            continue
        try:
            result = json.loads(out)
        except json.JSONDecodeError as e:
            raise BenchError(f"{flow.key}: iperf3 printed no JSON: {out[-300:]!r}") from e
        error = result.get("error")
        if not error:
            return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
        if not any(s in error for s in NOT_YET) or attempt == tries - 1:
            raise BenchError(f"{flow.key}: iperf3: {error}")
        time.sleep(0.2)
    raise AssertionError("unreachable")


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


def measure_flows(flows: list[Flow], args: argparse.Namespace) -> list[list[str]]:
    """`rounds` rounds, every flow once a round, in an order rotated by one each round."""
    orders: list[list[str]] = []
    for r in range(args.rounds):
        order = rotated(flows, r)
        for flow in order:
            flow.gbps.append(run_flow(flow, args.seconds, args.omit))
        orders.append([f.key for f in order])
    return orders


def tool_flows(tool: str, lab: ScriptLab, inspect: str, exec_: list[str], port: int, env=None) -> list[Flow]:
    """The five flows of one tool, its server's `inspect` output given."""
    settings = json.loads(inspect)[0]["NetworkSettings"]
    networks = (settings.get("Networks") or {}).values()
    server = settings.get("IPAddress") or next((n["IPAddress"] for n in networks if n.get("IPAddress")), "")
    if not server:
        raise BenchError(f"{tool}: the server container has no IPv4 address in `inspect`")
    host, up = ["ip", "netns", "exec", lab.host], ["ip", "netns", "exec", lab.up]
    ends = [(exec_, server), (host, server), (host, "127.0.0.1"), (up, HOST_ADDR), (exec_, HOST_ADDR)]
    return [
        Flow(tool, kind, path, [*where, "iperf3", "-c", target, "-p", str(port)], env)
        for kind, path, (where, target) in zip(KINDS, PATHS[tool], ends, strict=True)
    ]


def firewall_size(ns: str) -> dict[str, int]:
    """Rules and set/map elements of the whole nft ruleset of a namespace (iptables-nft included)."""
    out = run_cmd(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], f"nft list ruleset in {ns}")
    objects = json.loads(out)["nftables"]
    rules = sum(1 for o in objects if "rule" in o)
    elements = sum(len(o[k].get("elem", [])) for o in objects for k in ("set", "map") if k in o)
    return {"rules": rules, "elements": elements}


@dataclass
class Crowd:
    """N idle containers of one tool with one published port each: how to start and remove them."""

    tool: str
    ns: str  # the tool's host namespace, for the firewall's size
    run: list[str]  # `run -d` up to the name; then `--name crowd-I -p PORT:80` and `then`
    then: list[str]
    rm: list[str]  # `rm -f`; the names follow
    env: dict[str, str] | None = None
    start_s: float = 0.0
    rm_s: float = 0.0

    def start(self, count: int, jobs: int) -> None:
        def one(i: int) -> str:
            argv = [*self.run, "--name", f"crowd-{i}", "-p", f"{CROWD_PORT + i}:80", *self.then]
            return run_cmd(argv, f"{self.tool} crowd start", env=self.env)

        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, range(count)))
        self.start_s = time.monotonic() - begin

    def remove(self, count: int, jobs: int, batch: int = 25) -> None:
        names = [f"crowd-{i}" for i in range(count)]
        batches = [names[i : i + batch] for i in range(0, count, batch)]
        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda b: run_cmd([*self.rm, *b], f"{self.tool} crowd rm", 300, self.env), batches))
        self.rm_s = time.monotonic() - begin


def measure_crowd(flows: list[Flow], crowds: list[Crowd], args: argparse.Namespace) -> dict[str, Any]:
    """The crowd's flows alone, with the crowd, alone again (each phase its own rounds)."""
    phases: dict[str, list[Flow]] = {}
    orders: dict[str, list[list[str]]] = {}
    firewall: dict[str, dict[str, dict[str, int]]] = {c.tool: {} for c in crowds}

    def phase(name: str) -> None:
        for c in crowds:
            firewall[c.tool][name] = firewall_size(c.ns)
        phases[name] = [f.fresh() for f in flows]
        orders[name] = measure_flows(phases[name], args)

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
    return {
        "count": args.crowd,
        "phases": phases,
        "rounds": orders,
        "firewall": firewall,
        "start_s": {c.tool: c.start_s for c in crowds},
        "rm_s": {c.tool: c.rm_s for c in crowds},
    }


def baseline_flows(run: Run, port: int) -> list[Flow]:
    """g.: the five flows through a bridge, a client and a server namespace, and only the rules
    publishing needs (bench/_kernel.py)."""
    k = kernel_lab(run, port, port)
    ends = [
        (k.client, k.server4),
        (k.host, k.server4),
        (k.host, "127.0.0.1"),
        (k.up, HOST_ADDR),
        (k.client, HOST_ADDR),
    ]
    return [
        Flow(BASELINE, kind, path, [*where, "iperf3", "-c", target, "-p", str(port)])
        for kind, path, (where, target) in zip(KINDS, BASELINE_PATHS, ends, strict=True)
    ]


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    if not shutil.which("iperf3"):
        raise BenchError("no iperf3 (apt-get install iperf3; make bench does)")
    lab = run.lab(daemon=True)
    lab.dy_ok(
        "run", "-d", "--name", SERVER, "-p", f"{args.port}:{args.port}", "iperf3", "-s", "-p", str(args.port)
    )
    lab.remember_container(SERVER)
    lab.dy_ok("run", "-d", "--name", CLIENT, "sleep", "infinity")
    lab.remember_container(CLIENT)
    flows = tool_flows("dockyard", lab, lab.dy_ok("inspect", SERVER), lab.dy_cmd("exec", CLIENT), args.port)
    crowds = [
        Crowd("dockyard", lab.host, lab.dy_cmd("run", "-d"), ["sleep", "infinity"], lab.dy_cmd("rm", "-f"))
    ]
    if run.can_run("docker", PrivateDocker, args.no_docker):
        docker_lab = run.lab()
        docker = run.docker(docker_lab, bip=DOCKER_BIP)
        docker.import_image(rootfs_tar(run.work / "image.tar", ["iperf3"]), IMAGE)
        server = (
            "--name",
            SERVER,
            "-p",
            f"{args.port}:{args.port}",
            IMAGE,
            "iperf3",
            "-s",
            "-p",
            str(args.port),
        )
        docker.docker("run", "-d", *server)
        docker.docker("run", "-d", "--name", CLIENT, IMAGE, "sleep", "100000")
        inspect, exec_ = docker.docker("inspect", SERVER), docker.argv("exec", CLIENT)
        flows += tool_flows("docker", docker_lab, inspect, exec_, args.port, docker.env)
        run.notes.append("docker: userland proxy on (its default)")
        if args.crowd_docker:
            run_d, rm = docker.argv("run", "-d"), docker.argv("rm", "-f")
            crowds.append(Crowd("docker", docker_lab.host, run_d, [IMAGE, "sleep", "100000"], rm, docker.env))
        elif args.crowd:
            run.notes.append("docker: f. not measured (--crowd-docker to add it: heavy)")
    if not args.no_baseline:
        flows += baseline_flows(run, args.port)
    # Flow by flow, tool by tool: dockyard a, docker a, dockyard b, docker b, ...
    flows.sort(key=lambda f: (list(KINDS).index(f.kind), (*TOOLS, BASELINE).index(f.tool)))
    print(f"warming up {len(flows)} flows (1 s each) ...", flush=True)
    for flow in flows:
        warm_up(flow)
    print(f"measuring {len(flows)} flows: {args.rounds} round(s) of {args.seconds} s each ...", flush=True)
    orders = measure_flows(flows, args)
    crowd = None
    if args.crowd:
        crowd_tools = {c.tool for c in crowds}
        crowd = measure_crowd(
            [f for f in flows if f.kind in CROWD_KINDS and f.tool in crowd_tools], crowds, args
        )
    raw: dict[str, Any] = {"args": vars(args), "flows": [f.dump() for f in flows], "rounds": orders}
    if crowd is not None:
        raw["crowd"] = {**crowd, "phases": {ph: [f.dump() for f in fs] for ph, fs in crowd["phases"].items()}}
    return build_report(flows, crowd, args), raw


# -- the report ------------------------------------------------------------------------


def cell(gbps: list[float]) -> str:
    return spread(gbps, 2, 2, "min", "max")


def paired(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b (the two ran in the same round, close in time)."""
    return statistics.median(ratio(x, y) for x, y in zip(a, b, strict=True))


def build_report(flows: list[Flow], crowd: dict[str, Any] | None, args: argparse.Namespace) -> Report:
    by = {(f.tool, f.kind): f for f in flows}
    tools = [t for t in TOOLS if (t, "direct") in by]
    med = {k: statistics.median(f.gbps) for k, f in by.items()}
    two = "docker" in tools
    columns = ["flow", *(f"{t} Gbit/s (min-max)" for t in tools), *(["dockyard / docker"] if two else [])]
    columns += [f"{t} / b (paired)" for t in tools]
    rows = []
    for kind, (label, _) in KINDS.items():
        row = [label, *(cell(by[(t, kind)].gbps) for t in tools)]
        if two:
            row.append(times(ratio(med[("dockyard", kind)], med[("docker", kind)])))
        for t in tools:
            over_b = ratio(med[(t, kind)], med[(t, "direct")])
            row.append(f"{over_b:.2f} ({paired(by[(t, kind)].gbps, by[(t, 'direct')].gbps):.2f})")
        rows.append(row)
    goals = []
    for kind, what, letters in (("localhost", "127.0.0.1", "c/b"), ("hairpin", "hairpin", "e/b")):
        # Judged on the paired ratio: the two flows ran in the same rounds, so drift cancels out.
        p = paired(by[("dockyard", kind)].gbps, by[("dockyard", "direct")].gbps)
        side = "Docker not run"
        if two:
            d = paired(by[("docker", kind)].gbps, by[("docker", "direct")].gbps)
            side = (
                f"docker ({by[('docker', kind)].path}) {d:.2f} of its direct (paired); "
                f"dockyard {ratio(med[('dockyard', kind)], med[('docker', kind)]):.2f}x docker"
            )
        if (BASELINE, kind) in by:
            k = paired(by[(BASELINE, kind)].gbps, by[(BASELINE, "direct")].gbps)
            side += f"; kernel-only baseline (g.) {k:.2f} of its direct (paired)"
        of_medians = ratio(med[("dockyard", kind)], med[("dockyard", "direct")])
        goals.append(
            Goal(
                f"{what} published-port throughput at least {GOAL_PUBLISHED:.0%} of the direct flow "
                f"({letters})",
                p >= GOAL_PUBLISHED,
                f"{p:.3f} paired ({of_medians:.3f} of medians)",
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
        Table(
            "what carries each flow",
            ["flow", *tools],
            [[KINDS[k][0], *(by[(t, k)].path for t in tools)] for k in KINDS],
        ),
    ]
    short = [s for _, s in KINDS.values()]
    plots = [
        Plot(
            "throughput",
            f"iperf3, one TCP stream (median, min-max of {args.rounds} rounds)",
            "bar",
            "flow",
            "Gbit/s",
            [Series.of(t, short, [by[(t, k)].gbps for k in KINDS], "min", "max") for t in tools],
        )
    ]
    notes = [f"reference figures measured on this machine kind earlier: {REFERENCE}"]
    if (BASELINE, "hairpin") in by:
        tables.append(baseline_table(by))
    if crowd is not None:
        crowd_report(crowd, args, tables, goals, plots, notes)
    return Report(
        key="throughput",
        title="3. Throughput",
        method=(
            f"iperf3, one TCP stream, {args.seconds} s after {args.omit} s left out, the rate the server "
            f"received; {args.rounds} round(s), each running every flow of every tool once, the tools "
            "alternating and the order rotated by one each round; every flow warmed up once first. Each "
            "tool in a throwaway host namespace of its own, its server container published with "
            f"`-p {args.port}:{args.port}`; Docker 20.10 with its default userland proxy."
        ),
        tables=tables,
        goals=goals,
        notes=notes,
        plots=plots,
    )


def baseline_table(by: dict[tuple[str, str], Flow]) -> Table:
    """g.: every flow of dockyard beside the same flow through the kernel-only baseline, each
    over its own direct flow, and the hairpin over the container-to-container flow."""

    def over(tool: str, kind: str, of: str = "direct") -> float:
        return paired(by[(tool, kind)].gbps, by[(tool, of)].gbps)

    rows = []
    for kind, (label, _) in KINDS.items():
        d, k = over("dockyard", kind), over(BASELINE, kind)
        rows.append(
            [
                label,
                cell(by[("dockyard", kind)].gbps),
                cell(by[(BASELINE, kind)].gbps),
                f"{d:.3f}",
                f"{k:.3f}",
                f"{ratio(d, k):.3f}",
            ]
        )
    d, k = over("dockyard", "hairpin", "c2c"), over(BASELINE, "hairpin", "c2c")
    rows.append(
        ["e. hairpin over a. container -> container", "", "", f"{d:.3f}", f"{k:.3f}", f"{ratio(d, k):.3f}"]
    )
    return beside_baseline("g.", rows)


def crowd_report(
    crowd: dict[str, Any],
    args: argparse.Namespace,
    tables: list[Table],
    goals: list[Goal],
    plots: list[Plot],
    notes: list[str],
) -> None:
    """Part f.: its tables, goals, plot and notes, added to the report's."""
    n, phases, firewall = crowd["count"], crowd["phases"], crowd["firewall"]
    tools = list(firewall)

    def gbps(phase: str, tool: str, kind: str) -> list[float]:
        return next(f.gbps for f in phases[phase] if f.key == f"{tool} {kind}")

    def alone(tool: str, kind: str) -> list[float]:
        return gbps("before", tool, kind) + gbps("after", tool, kind)

    def with_over_alone(tool: str, kind: str) -> float:
        return ratio(statistics.median(gbps("with", tool, kind)), statistics.median(alone(tool, kind)))

    rows, series = [], []
    for t in tools:
        for kind in CROWD_KINDS:
            before, with_n, after = (gbps(ph, t, kind) for ph in ("before", "with", "after"))
            m = statistics.median(with_n)
            rows.append(
                [
                    f"{t} {KINDS[kind][0]}",
                    *(cell(x) for x in (before, with_n, after, alone(t, kind))),
                    f"{with_over_alone(t, kind):.2f} ({ratio(m, statistics.median(before)):.2f}; "
                    f"{ratio(m, statistics.median(after)):.2f})",
                ]
            )
        labels = [KINDS[k][1] for k in CROWD_KINDS]
        series += [
            Series.of(f"{t} alone", labels, [alone(t, k) for k in CROWD_KINDS], "min", "max"),
            Series.of(f"{t} with {n}", labels, [gbps("with", t, k) for k in CROWD_KINDS], "min", "max"),
        ]
    phase_names = ("before", "with", "after")
    fw_rows = [
        [t, *(f"{firewall[t][ph]['rules']} / {firewall[t][ph]['elements']}" for ph in phase_names)]
        for t in tools
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
            rows,
        ),
        Table(
            "f. firewall of the tool's host namespace (nft rules / set and map elements)",
            ["", "before", f"with {n}", "after"],
            fw_rows,
        ),
    ]
    for kind in CROWD_KINDS:
        r = with_over_alone("dockyard", kind)
        side = (
            f"docker {with_over_alone('docker', kind):.2f}"
            if "docker" in tools
            else "Docker not run (--crowd-docker)"
        )
        goals.append(
            Goal(
                f"a bridged flow ({KINDS[kind][1]}) with {n} other endpoints within {GOAL_CROWD:.0%} "
                "of the flow alone",
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
    notes += [
        f"f.: {t} started its {n} containers in {crowd['start_s'][t]:.1f} s ({args.crowd_jobs} at a time) "
        f"and removed them in {crowd['rm_s'][t]:.1f} s"
        for t in tools
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "1 round of 1 s flows, a crowd of 3, dockyard only", ("docker",))
    p.add_argument("--rounds", type=int, default=5, help="rounds, each flow once a round (default 5)")
    p.add_argument("--seconds", type=int, default=4, help="iperf3 -t, measured seconds per flow (default 4)")
    p.add_argument("--omit", type=int, default=1, help="iperf3 -O, seconds left out first (default 1)")
    p.add_argument("--port", type=int, default=5201, help="the server's published port (default 5201)")
    p.add_argument("--crowd", type=int, default=500, help="other endpoints for f.; 0: no f. (default 500)")
    p.add_argument("--crowd-jobs", type=int, default=8, help="crowd containers started at once (default 8)")
    p.add_argument("--crowd-docker", action="store_true", help="also measure f. for Docker (heavy)")
    p.add_argument("--no-baseline", action="store_true", help="no g. (the kernel-only hairpin baseline)")
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


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("throughput", arguments, lambda run: measure(run, arguments)))
