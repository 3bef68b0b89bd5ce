"""IPv6 (issue 15): published-port throughput against the direct flow, and run latency on a
dual-stack network against an IPv4-only one. dockyard only.

    .venv/bin/python bench/ipv6.py [--rounds N] [--seconds S] [--runs N] [--json PATH]
    .venv/bin/python bench/ipv6.py --smoke     # 1 round of 1 s flows, 2 runs per network

As root. dockyard works in throwaway labs (tests/lab.py through
demo/netlab.py: a host namespace, an upstream namespace playing the outside
on documentation addresses, 198.51.100.0/24 and 2001:db8::/32; the root
namespace is never touched), a new lab for each part.

1. Throughput, with bench/throughput.py's flows and measurement: one TCP
   stream, `iperf3 -t S -O 1 -J`, the rate the server received. A server
   container runs `iperf3 -s` on a dual-stack network (`network create
   --ipv6 --subnet 2001:db8:1::/64 --subnet 10.1.0.0/24`), published on the
   host's addresses and on loopback, each family its own binding:
   `-p [2001:db8::1]:PORT:PORT -p [::1]:PORT+1:PORT` and their IPv4 twins
   `-p 198.51.100.1:PORT:PORT -p 127.0.0.1:PORT+1:PORT`. The flows, for
   each family:

     b. the host to the container's address (no NAT): the direct reference;
     d. the upstream namespace to the host's address:PORT (DNAT, forwarded);
     c. the host to [::1]:PORT+1, or 127.0.0.1:PORT+1 (DNAT from loopback).

   `::1` publishing needs br_netfilter not to undo the reply's NAT at the
   bridge (docs/usage.md), so the lab's host namespace has
   net.bridge.bridge-nf-call-ip6tables=0 (its own sysctl, not the machine's).
   Every flow runs once untimed first; then each round runs every flow once,
   the order rotated by one each round. The ratios against b are of medians
   and paired (the median of the per-round ratios, in which drift cancels
   out: the goals are judged on it). The IPv4 flows are the twins measured
   in the same rounds, for comparison; the goals are IPv6's.

2. Run latency, with bench/run_latency.py's timing: the whole command
   `run --rm --net X true`, daemon already up, on a dual-stack network and
   on an IPv4-only one (`network create --subnet 10.2.0.0/24`), warmed up,
   then alternating in rounds (A B, B A, ...). The difference is of the
   medians and paired (the median of the per-round differences: the goal is
   judged on it).

3. Kernel-only baseline (unless --no-baseline): the same six flows through
   a bridge, a client and a server namespace and hand-written nft rules
   doing only what publishing needs (bench/_kernel.py: DNAT from the host's
   addresses and from loopback, the loopback source masqueraded, route_localnet
   and a local ::1 route on the bridge, bridge-nf-call-ip6tables=0), in a
   lab of its own, in the same rounds as dockyard's flows. Its d/b and c/b
   are what the kernel itself gives; dockyard's are printed beside them.

Goals of issue 15, printed met or NOT met with the measured value: IPv6
published-port and `::1` throughput at least 95% of the direct flow (as for
IPv4's), and `run --rm true` on a dual-stack network no more than 5 ms above
an IPv4-only one. Times are reported, never asserted: the exit status is 0
unless a measured command failed or cleanup had to force something (1), or
the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Callable
from typing import Any

from _common import BenchError, paired_difference, ratio, summary
from _kernel import TOOL as BASELINE
from _kernel import beside_baseline, kernel_lab
from _report import Goal, Plot, Report, Series, Table, spread
from _script import HOST_ADDR, Run, ScriptLab, main, options
from lab import HOST_ADDR6, NET6, NET6_V4
from run_latency import Case, time_cases
from throughput import Flow, cell, measure_flows, paired, warm_up

SERVER = "v6-srv"
DUAL, V4ONLY = "dual", "v4only"
V4ONLY_SUBNET = "10.2.0.0/24"
GOAL_PUBLISHED = 0.95  # d/b and c/b at least this (issue 15, as issue 7 asks of IPv4)
GOAL_DUAL_MS = 5.0  # dual-stack run at most this above IPv4-only (issue 15)
FAMILIES = ("ipv6", "ipv4")
# kind -> (row label, short label for plots), per family
KINDS = {
    "direct": ("b. host -> container's address", "b. direct"),
    "outside": ("d. outside -> host address:port", "d. outside"),
    "loopback": ("c. host -> loopback:port", "c. loopback"),
}
# What carries each flow, per family.
PATHS = {
    "ipv6": ("no NAT", "kernel DNAT66, forwarded", "kernel DNAT66 from ::1 (local route via the bridge)"),
    "ipv4": ("no NAT", "kernel DNAT, forwarded", "kernel DNAT from 127.0.0.1 (route_localnet)"),
}
BASELINE_PATHS = {
    "ipv6": ("no NAT", "hand-written DNAT66, forwarded", "hand-written DNAT66 from ::1 (local route)"),
    "ipv4": ("no NAT", "hand-written DNAT, forwarded", "hand-written DNAT from 127.0.0.1 (route_localnet)"),
}
LOOPBACK = {"ipv6": "::1", "ipv4": "127.0.0.1"}
HOST = {"ipv6": HOST_ADDR6, "ipv4": HOST_ADDR}


def bracketed(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def baseline(family: str) -> str:
    """The tool of the kernel-only baseline's flows of a family."""
    return f"{BASELINE} {family}"


def server_flows(lab: ScriptLab, port: int) -> list[Flow]:
    """The dual-stack iperf3 server, published on both families; its six flows."""
    r = lab.in_host("sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0")
    if r.returncode != 0:
        raise BenchError(f"bridge-nf-call-ip6tables=0 in {lab.host}: {r.stderr.strip()}")
    lab.dy_ok("network", "create", "--ipv6", "--subnet", NET6, "--subnet", NET6_V4, DUAL)
    published = []
    for family in FAMILIES:
        published += ["-p", f"{bracketed(HOST[family])}:{port}:{port}"]
        published += ["-p", f"{bracketed(LOOPBACK[family])}:{port + 1}:{port}"]
    lab.dy_ok("run", "-d", "--name", SERVER, "--net", DUAL, *published, "iperf3", "-s", "-p", str(port))
    lab.remember_container(SERVER)
    net = json.loads(lab.dy_ok("inspect", SERVER))[0]["NetworkSettings"]["Networks"][DUAL]
    direct = {"ipv6": net.get("GlobalIPv6Address"), "ipv4": net.get("IPAddress")}
    if not all(direct.values()):
        raise BenchError(f"the server has not both addresses on {DUAL} in `inspect`: {direct}")
    host, up = ["ip", "netns", "exec", lab.host], ["ip", "netns", "exec", lab.up]
    flows = []
    for kind in KINDS:
        for family in FAMILIES:
            where, target, to = {
                "direct": (host, direct[family], port),
                "outside": (up, HOST[family], port),
                "loopback": (host, LOOPBACK[family], port + 1),
            }[kind]
            path = PATHS[family][list(KINDS).index(kind)]
            flows.append(Flow(family, kind, path, [*where, "iperf3", "-c", str(target), "-p", str(to)]))
    return flows


def baseline_flows(run: Run, port: int) -> list[Flow]:
    """3. The six flows through a bridge, two namespaces and hand-written rules (bench/_kernel.py),
    its host namespace with bridge-nf-call-ip6tables=0 as dockyard's."""
    k = kernel_lab(run, port, port + 1, bridge_nf6=False)
    flows = []
    for kind in KINDS:
        for family in FAMILIES:
            server = k.server6 if family == "ipv6" else k.server4
            where, target, to = {
                "direct": (k.host, server, port),
                "outside": (k.up, HOST[family], port),
                "loopback": (k.host, LOOPBACK[family], port + 1),
            }[kind]
            path = BASELINE_PATHS[family][list(KINDS).index(kind)]
            flows.append(Flow(baseline(family), kind, path, [*where, "iperf3", "-c", target, "-p", str(to)]))
    return flows


def latency_cases(lab: ScriptLab) -> list[Case]:
    lab.dy_ok("network", "create", "--ipv6", "--subnet", NET6, "--subnet", NET6_V4, DUAL)
    lab.dy_ok("network", "create", "--subnet", V4ONLY_SUBNET, V4ONLY)
    run = lab.dy_cmd("run", "--rm")
    return [Case("dockyard", net, [*run, "--net", net, "true"]) for net in (DUAL, V4ONLY)]


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    if not shutil.which("iperf3"):
        raise BenchError("no iperf3 (apt-get install iperf3; make bench does)")
    lab = run.lab(daemon=True)
    cases = latency_cases(lab)
    print(f"timing run --rm true on {DUAL} and {V4ONLY}: {args.warmup} warm-up, {args.runs} runs ...")
    latency_rounds = time_cases(cases, args.runs, args.warmup)
    run.retire(lab)

    lab = run.lab(daemon=True)
    flows = server_flows(lab, args.port)
    if not args.no_baseline:
        flows += baseline_flows(run, args.port)
        # Flow by flow: dockyard's and the baseline's of one kind and family side by side.
        flows.sort(key=lambda f: (list(KINDS).index(f.kind), FAMILIES.index(f.tool.split()[-1])))
    print(f"warming up {len(flows)} flows (1 s each) ...", flush=True)
    for flow in flows:
        warm_up(flow)
    print(f"measuring {len(flows)} flows: {args.rounds} round(s) of {args.seconds} s each ...", flush=True)
    flow_rounds = measure_flows(flows, args)
    raw = {
        "args": vars(args),
        "flows": [f.dump() for f in flows],
        "flow_rounds": flow_rounds,
        "latency": [{"network": c.label, "argv": c.argv, "ms": c.ms, **summary(c.ms)} for c in cases],
        "latency_rounds": latency_rounds,
    }
    return build_report(flows, cases, args), raw


# -- the report ------------------------------------------------------------------------


def build_report(flows: list[Flow], cases: list[Case], args: argparse.Namespace) -> Report:
    by = {(f.tool, f.kind): f.gbps for f in flows}
    med = {k: statistics.median(v) for k, v in by.items()}

    def over_b(family: str, kind: str) -> tuple[float, float]:
        """(paired, of medians) ratio of a flow to its family's direct flow."""
        return paired(by[(family, kind)], by[(family, "direct")]), ratio(
            med[(family, kind)], med[(family, "direct")]
        )

    rows = []
    for kind, (label, _) in KINDS.items():
        row = [label, *(cell(by[(fam, kind)]) for fam in FAMILIES)]
        row.append(f"{ratio(med[('ipv6', kind)], med[('ipv4', kind)]):.2f}x")
        for fam in FAMILIES:
            p, m = over_b(fam, kind)
            row.append(f"{m:.2f} ({p:.2f})")
        rows.append(row)
    goals = []
    for kind, what in (("outside", f"[{HOST_ADDR6}]:port from outside"), ("loopback", "[::1]:port")):
        p6, m6 = over_b("ipv6", kind)
        p4, _ = over_b("ipv4", kind)
        side = (
            f"IPv4 twin {p4:.3f} of its direct (paired); IPv6 "
            f"{ratio(med[('ipv6', kind)], med[('ipv4', kind)]):.2f}x IPv4"
        )
        if (baseline("ipv6"), kind) in by:
            side += f"; kernel-only baseline (3.) {over_b(baseline('ipv6'), kind)[0]:.3f} of its direct"
        goals.append(
            Goal(
                f"IPv6 published-port throughput, {what}, at least {GOAL_PUBLISHED:.0%} of the direct flow",
                p6 >= GOAL_PUBLISHED,
                f"{p6:.3f} paired ({m6:.3f} of medians)",
                side,
            )
        )
    ms = {c.label: c.ms for c in cases}
    dual_med, v4_med = statistics.median(ms[DUAL]), statistics.median(ms[V4ONLY])
    diff = paired_difference(ms[DUAL], ms[V4ONLY])
    goals.append(
        Goal(
            f"`run --rm true` on a dual-stack network at most {GOAL_DUAL_MS:.0f} ms above IPv4-only",
            diff <= GOAL_DUAL_MS,
            f"{diff:+.1f} ms paired ({dual_med - v4_med:+.1f} of medians)",
            f"dual-stack {dual_med:.1f} ms, IPv4-only {v4_med:.1f} ms",
        )
    )
    tables = [
        Table(
            f"1. one TCP stream, iperf3 -t {args.seconds} -O {args.omit}: median (min-max) of "
            f"{args.rounds} round(s); ratios of medians, and (paired) the median of the per-round ratios",
            [
                "flow",
                *(f"{fam} Gbit/s (min-max)" for fam in FAMILIES),
                "ipv6 / ipv4",
                *(f"{fam} / b (paired)" for fam in FAMILIES),
            ],
            rows,
        ),
        Table(
            "what carries each flow",
            ["flow", *FAMILIES],
            [[KINDS[k][0], *(PATHS[fam][i] for fam in FAMILIES)] for i, k in enumerate(KINDS)],
        ),
        Table(
            f"2. `run --rm --net X true`, whole command: median ms (p10-p90) of {args.runs} rounds",
            ["network", "ms (p10-p90)", "- IPv4-only: of medians (paired)"],
            [
                [
                    f"{DUAL}: dual-stack ({NET6}, {NET6_V4})",
                    spread(ms[DUAL]),
                    f"{dual_med - v4_med:+.1f} ({diff:+.1f})",
                ],
                [f"{V4ONLY}: IPv4-only ({V4ONLY_SUBNET})", spread(ms[V4ONLY]), "-"],
            ],
        ),
    ]
    if (baseline("ipv6"), "direct") in by:
        tables.append(baseline_table(by, over_b))
    short = [s for _, s in KINDS.values()]
    plots = [
        Plot(
            "ipv6_throughput",
            f"iperf3, one TCP stream, IPv6 beside IPv4 (median, min-max of {args.rounds} rounds)",
            "bar",
            "flow",
            "Gbit/s",
            [Series.of(fam, short, [by[(fam, k)] for k in KINDS], "min", "max") for fam in FAMILIES],
        ),
        Plot(
            "ipv6_run_latency",
            "run --rm true: dual-stack against IPv4-only (median, p10-p90)",
            "bar",
            "network",
            "ms",
            [Series.of("dockyard", ["dual-stack", "IPv4-only"], [ms[DUAL], ms[V4ONLY]])],
        ),
    ]
    return Report(
        key="ipv6",
        title="IPv6",
        method=(
            f"1. iperf3, one TCP stream, {args.seconds} s after {args.omit} s left out, the rate the server "
            f"received; {args.rounds} round(s), each running every flow once, the order rotated by one "
            "each round; every flow warmed up once first. The server container on a dual-stack network, "
            f"published with `-p [{HOST_ADDR6}]:{args.port}:{args.port} -p [::1]:{args.port + 1}:"
            f"{args.port}` and the IPv4 twins; the lab's host namespace has bridge-nf-call-ip6tables=0. "
            f"2. Whole-command wall time of `run --rm --net X true` with the daemon up, {args.runs} "
            "rounds of the two networks, alternating; a lab of its own. 3. The same flows through a "
            "bridge and hand-written DNAT and masquerade rules with no dockyard, in a lab of its own, "
            "in the same rounds as 1."
        ),
        tables=tables,
        goals=goals,
        plots=plots,
    )


def baseline_table(
    by: dict[tuple[str, str], list[float]], over_b: Callable[[str, str], tuple[float, float]]
) -> Table:
    """3.: each published flow of dockyard beside the kernel-only baseline's, over its direct flow."""
    rows = []
    for kind, (label, _) in KINDS.items():
        if kind == "direct":
            continue
        for family in FAMILIES:
            d, k = over_b(family, kind)[0], over_b(baseline(family), kind)[0]
            rows.append(
                [
                    f"{family} {label}",
                    cell(by[(family, kind)]),
                    cell(by[(baseline(family), kind)]),
                    f"{d:.3f}",
                    f"{k:.3f}",
                    f"{ratio(d, k):.3f}",
                ]
            )
    for family in FAMILIES:
        rows.append(
            [
                f"{family} {KINDS['direct'][0]}",
                cell(by[(family, "direct")]),
                cell(by[(baseline(family), "direct")]),
                "",
                "",
                "",
            ]
        )
    return beside_baseline("3.", rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "1 round of 1 s flows, 2 runs per network")
    p.add_argument("--rounds", type=int, default=5, help="rounds, each flow once a round (default 5)")
    p.add_argument("--seconds", type=int, default=4, help="iperf3 -t, measured seconds per flow (default 4)")
    p.add_argument("--omit", type=int, default=1, help="iperf3 -O, seconds left out first (default 1)")
    p.add_argument(
        "--port", type=int, default=5201, help="the server's port; loopback publishes the next (default 5201)"
    )
    p.add_argument("--no-baseline", action="store_true", help="no 3. (the kernel-only baseline)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per network (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per network first (default 3)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.omit, args.runs, args.warmup = 1, 1, 0, 2, 1
    if args.rounds < 1 or args.seconds < 1 or args.omit < 0 or args.runs < 1 or args.warmup < 0:
        p.error("--rounds, --seconds and --runs must be at least 1, --omit and --warmup at least 0")
    if not 1 <= args.port < 65535:
        p.error("--port must be a port number under 65535 (loopback publishes the next)")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("ipv6", arguments, lambda run: measure(run, arguments)))
