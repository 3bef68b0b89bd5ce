"""How long `run --rm --net X true` takes, whole command: dockyard, Docker and Podman.

    .venv/bin/python bench/run_latency.py [--runs N] [--warmup N] [--port P] [--json PATH]
    .venv/bin/python bench/run_latency.py --smoke     # 2 runs per case, dockyard only: for the test suite

As root. Each tool works in a throwaway lab of its own (tests/lab.py through
demo/netlab.py: a host namespace, an upstream namespace on TEST-NET
addresses; the root namespace is never touched): dockyardd with
--host-netns, a private dockerd and a private Podman (bench/_reference.py)
each inside its lab's host namespace. Every daemon is started and warmed up
first, so the figures are what a user sees with the daemon already running:
client start-up, the API round trips, the network set-up, the container's
life and its removal.

Cases, for each tool: --net none, host, bridge, bridge with `-p PORT:80`,
container:<a running target>; and each client's `ps` (one round trip); and
`dockyard --help` beside the bare interpreter's `python -c pass` (what a
client costs before it says anything), and `python -c 'import json,
socket'`: the floor of any Python client that speaks JSON over a socket
(json loads re, and re and socket load enum), which the run goal is read
against. Every round runs every case of every
tool once, in an order rotated by one each round (A B C, B C A, ...), so
that drift on the machine hits all tools alike. Docker and Podman run a
busybox image imported locally; dockyard runs the host's /bin/true (it has
no image layer to mount, which is part of what is measured).

It prints a table (median with p10-p90), the ratios against dockyard, the
bridge-minus-none and bridge-minus-host differences, and the goals as met or
not. Times are reported, never asserted: the exit status is 0 unless a
command failed (1) or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import paired_difference, rotated, summary, timed
from _reference import PrivateDocker, PrivatePodman, rootfs_tar
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import Run, main, options

TARGET = "bench-target"
IMAGE = "dybench-busybox:latest"
GOAL_BRIDGE_MS = 40.0  # issue 19
GOAL_HELP_MS = 25.0  # issue 19
GOAL_BRIDGE_OVER_NONE_MS = 10.0  # issue 7
FLOOR = "import json, socket"
NETWORK_CASES = ("none", "host", "bridge", "bridge -p", "container:")
TOOLS = ("dockyard", "docker", "podman")
# Measured on this machine kind before dockyard existed (issue 2 and 7).
REFERENCE = "Docker 20.10: 302 ms bridge, 84 ms over none; Podman 4.3: 372-420 ms"


@dataclass
class Case:
    """One thing to time: a tool, a case label, and the full command."""

    tool: str
    label: str
    argv: list[str]
    env: dict[str, str] | None = None
    ms: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.tool} {self.label}"


def network_cases(
    tool: str,
    run: list[str],
    then: list[str],
    ps: list[str],
    port: int,
    flag: str = "--net",
    env: dict[str, str] | None = None,
) -> list[Case]:
    """The five network cases of one tool (`run ... --net X ... then`), and its `ps`."""
    options = {
        "none": (flag, "none"),
        "host": (flag, "host"),
        "bridge": (flag, "bridge"),
        "bridge -p": (flag, "bridge", "-p", f"{port}:80"),
        "container:": (flag, f"container:{TARGET}"),
    }
    cases = [Case(tool, label, [*run, *opts, *then], env) for label, opts in options.items()]
    return [*cases, Case(tool, "ps", ps, env)]


def time_cases(cases: list[Case], runs: int, warmup: int) -> list[list[str]]:
    """Warm every case up, then `runs` rounds, each case once a round in a rotated order."""
    for _ in range(warmup):
        for case in cases:
            timed(case.argv, case.key, timeout=60, env=case.env)
    orders: list[list[str]] = []
    for r in range(runs):
        order = rotated(cases, r)
        for case in order:
            case.ms.append(timed(case.argv, case.key, timeout=60, env=case.env))
        orders.append([c.key for c in order])
    return orders


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    lab = run.lab(daemon=True)
    lab.dy_ok("run", "-d", "--name", TARGET, "sleep", "infinity")
    lab.remember_container(TARGET)
    cases = network_cases("dockyard", lab.dy_cmd("run", "--rm"), ["true"], lab.dy_cmd("ps"), args.port)
    cases += [
        Case("dockyard", "--help", lab.dy_cmd("--help")),
        Case("python", "-c pass", [sys.executable, "-c", "pass"]),
        # What any client speaking JSON over a socket pays before its own first line.
        Case("python", FLOOR, [sys.executable, "-c", FLOOR]),
    ]
    with_docker = run.can_run("docker", PrivateDocker, args.no_docker)
    with_podman = run.can_run("podman", PrivatePodman, args.no_podman)
    image = rootfs_tar(run.work / "image.tar") if with_docker or with_podman else None
    if with_docker and image:
        docker = run.docker()
        docker.import_image(image, IMAGE)
        docker.docker("run", "-d", "--name", TARGET, IMAGE, "sleep", "100000")
        start, ps = docker.argv("run", "--rm"), docker.argv("ps")
        cases += network_cases("docker", start, [IMAGE, "true"], ps, args.port, env=docker.env)
    if with_podman and image:
        podman = run.podman()
        podman.import_image(image, IMAGE)
        podman.run_detached(TARGET, IMAGE, "sleep", "100000")
        start, ps = podman.argv("run", "--rm", "--cgroups=disabled"), podman.argv("ps")
        cases += network_cases("podman", start, [IMAGE, "true"], ps, args.port, "--network", podman.env)
    print(f"timing {len(cases)} cases: {args.warmup} warm-up and {args.runs} timed runs each ...", flush=True)
    orders = time_cases(cases, args.runs, args.warmup)
    raw = {
        "runs": args.runs,
        "warmup": args.warmup,
        "cases": [
            {"tool": c.tool, "label": c.label, "argv": c.argv, "ms": c.ms, **summary(c.ms)} for c in cases
        ],
        "rounds": orders,
    }
    return build_report(cases, args.runs), raw


# -- the report ------------------------------------------------------------------------


def build_report(cases: list[Case], runs: int) -> Report:
    by = {(c.tool, c.label): c.ms for c in cases}
    med = {k: statistics.median(ms) for k, ms in by.items()}
    tools = [t for t in TOOLS if (t, "bridge") in by]
    others = tools[1:]
    columns = ["case", *(f"{t} ms (p10-p90)" for t in tools), *(f"{t} / dockyard" for t in others)]
    rows = [
        [
            label if label == "ps" else f"run --rm --net {label} true",
            *(spread(by.get((t, label), [])) for t in tools),
            *(times(med[(t, label)] / med[("dockyard", label)]) for t in others),
        ]
        for label in (*NETWORK_CASES, "ps")
    ]
    blank = ["-"] * (len(columns) - 2)
    rows.append(["python -c pass", spread(by[("python", "-c pass")]), *blank])
    rows.append([f"python -c '{FLOOR}'", spread(by[("python", FLOOR)]), *blank])
    rows.append(["dockyard --help", spread(by[("dockyard", "--help")]), *blank])

    def over(tool: str, other: str) -> float:
        return med[(tool, "bridge")] - med[(tool, other)]

    def paired(tool: str, other: str) -> float:
        return paired_difference(by[(tool, "bridge")], by[(tool, other)])

    diff_rows = [
        [f"{t}: bridge - {other}", f"{over(t, other):.1f}", f"{paired(t, other):.1f}"]
        for t in tools
        for other in ("none", "host")
    ]

    def versus(value: float, of: Callable[[str], float]) -> str:
        parts = [f"{t} {of(t):.1f} ms ({times(value / of(t))})" for t in others]
        return ", ".join(parts) or "no reference tool run"

    bridge, over_none = med[("dockyard", "bridge")], over("dockyard", "none")
    help_ms, bare = med[("dockyard", "--help")], med[("python", "-c pass")]
    floor = med[("python", FLOOR)]
    goals = [
        Goal(
            f"`dockyard run --rm true` on the bridge within {GOAL_BRIDGE_MS:.0f} ms",
            bridge <= GOAL_BRIDGE_MS,
            f"{bridge:.1f} ms",
            f"{versus(bridge, lambda t: med[(t, 'bridge')])}; python -c '{FLOOR}' alone {floor:.1f} ms",
        ),
        Goal(
            f"bridge minus none under {GOAL_BRIDGE_OVER_NONE_MS:.0f} ms",
            over_none < GOAL_BRIDGE_OVER_NONE_MS,
            f"{over_none:.1f} ms",
            versus(over_none, lambda t: over(t, "none")),
        ),
        Goal(
            f"`dockyard --help` within {GOAL_HELP_MS:.0f} ms",
            help_ms <= GOAL_HELP_MS,
            f"{help_ms:.1f} ms",
            f"python -c pass {bare:.1f} ms (+{help_ms - bare:.1f} ms)",
        ),
    ]
    plot = Plot(
        "run_latency",
        "run --rm --net X true: whole command (median, p10-p90)",
        "bar",
        "network",
        "ms",
        [Series.of(t, list(NETWORK_CASES), [by[(t, x)] for x in NETWORK_CASES]) for t in tools],
    )
    return Report(
        key="run_latency",
        title="1. Run latency",
        method=(
            f"Whole-command wall time of `run --rm --net X true` with the daemon already up, "
            f"{runs} rounds; each round runs every case of every tool once, rotated by one each round. "
            "Each tool in a throwaway host namespace of its own. Docker and Podman run a locally "
            "imported busybox image; dockyard runs the host's /bin/true."
        ),
        tables=[
            Table("median ms (p10-p90), and the ratio against dockyard", columns, rows),
            Table(
                "differences (ms): of the medians, and paired (median of per-round differences)",
                ["", "of medians", "paired"],
                diff_rows,
            ),
        ],
        goals=goals,
        notes=[f"reference figures measured on this machine kind earlier: {REFERENCE}"],
        plots=[plot],
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "2 runs per case, 1 warm-up, dockyard only", ("docker", "podman"))
    p.add_argument("--runs", type=int, default=20, help="timed runs per case (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per case first (default 3)")
    p.add_argument("--port", type=int, default=18080, help="host port of the -p case (default 18080)")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.no_docker, args.no_podman = 2, 1, True, True
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    if not 1 <= args.port <= 65535:
        p.error("--port must be a port number")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("run_latency", arguments, lambda run: measure(run, arguments)))
