"""How long `run --rm --net X true` takes, whole command: dockyard, Docker and Podman.

    .venv/bin/python bench/run_latency.py [--runs N] [--warmup N] [--port P] [--json PATH]
    .venv/bin/python bench/run_latency.py --smoke     # 2 runs per case, dockyard only: for the test suite

As root. Each tool works in a throwaway lab of its own (demo/netlab.py: a
host namespace, an upstream namespace on TEST-NET addresses; the root
namespace is never touched): dockyardd with --host-netns, a private dockerd
and a private Podman (bench/_reference.py) each inside its lab's host
namespace. Every daemon is started and warmed up first, so the figures are
what a user sees with the daemon already running: client start-up, the API
round trips, the network set-up, the container's life and its removal.

Cases, for each tool: --net none, host, bridge, bridge with `-p PORT:80`,
container:<a running target>; and each client's `ps` (one round trip), with
`python -c pass` for reference. Every round runs every case of every tool
once, in an order rotated by one each round (A B C, B C A, ...), so that
drift on the machine hits all tools alike. Docker and Podman run a busybox
image imported locally; dockyard runs the host's /bin/true (it has no image
layer to mount, which is part of what is measured).

It prints a table (median with p10-p90), the ratios against dockyard, the
bridge-minus-none and bridge-minus-host differences, and the goals as met or
not. Times are reported, never asserted: the exit status is 0 unless a
command failed (1) or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import Interrupted, Lab, LabError, raise_on_termination  # noqa: E402

from _common import (  # noqa: E402
    BenchError,
    load_average,
    machine,
    machine_line,
    ratio,
    rotated,
    summary,
    timed,
)
from _reference import PrivateDocker, PrivatePodman, rootfs_tar  # noqa: E402
from _report import Goal, Plot, Report, Series, Table  # noqa: E402
from _script import clean_up, exit_status, failure_status, labs_for, write_results  # noqa: E402

TARGET = "bench-target"
IMAGE = "dybench-busybox:latest"
GOAL_BRIDGE_MS = 60.0
GOAL_BRIDGE_OVER_NONE_MS = 10.0
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


def measure(cases: list[Case], runs: int, warmup: int) -> list[list[str]]:
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


# -- the tools' cases ------------------------------------------------------------------


def dockyard_cases(lab: Lab, port: int) -> list[Case]:
    def run(label: str, *opts: str) -> Case:
        return Case("dockyard", label, lab.dy_cmd("run", "--rm", *opts, "true"))

    return [
        run("none", "--net", "none"),
        run("host", "--net", "host"),
        run("bridge", "--net", "bridge"),
        run("bridge -p", "--net", "bridge", "-p", f"{port}:80"),
        run("container:", "--net", f"container:{TARGET}"),
        Case("dockyard", "ps", lab.dy_cmd("ps")),
        Case("dockyard", "--help", lab.dy_cmd("--help")),
    ]


def docker_cases(docker: PrivateDocker, port: int) -> list[Case]:
    def run(label: str, *opts: str) -> Case:
        return Case("docker", label, docker.argv("run", "--rm", *opts, IMAGE, "true"), docker.env)

    return [
        run("none", "--net", "none"),
        run("host", "--net", "host"),
        run("bridge", "--net", "bridge"),
        run("bridge -p", "--net", "bridge", "-p", f"{port}:80"),
        run("container:", "--net", f"container:{TARGET}"),
        Case("docker", "ps", docker.argv("ps"), docker.env),
    ]


def podman_cases(podman: PrivatePodman, port: int) -> list[Case]:
    def run(label: str, *opts: str) -> Case:
        argv = podman.argv("run", "--rm", "--cgroups=disabled", *opts, IMAGE, "true")
        return Case("podman", label, argv, podman.env)

    return [
        run("none", "--network", "none"),
        run("host", "--network", "host"),
        run("bridge", "--network", "bridge"),
        run("bridge -p", "--network", "bridge", "-p", f"{port}:80"),
        run("container:", "--network", f"container:{TARGET}"),
        Case("podman", "ps", podman.argv("ps"), podman.env),
    ]


# -- the report ------------------------------------------------------------------------


def paired_difference(a: Case, b: Case) -> float:
    """Median of the per-round differences a - b (less sensitive to drift than medians' difference)."""
    return statistics.median(x - y for x, y in zip(a.ms, b.ms, strict=True))


def cell(ms: list[float]) -> str:
    s = summary(ms)
    return f"{s['median']:.1f} ({s['p10']:.0f}-{s['p90']:.0f})"


def build_report(cases: list[Case], runs: int, notes: list[str], info: dict[str, object]) -> Report:
    by = {(c.tool, c.label): c for c in cases}
    tools = [t for t in TOOLS if (t, "bridge") in by]
    med = {k: statistics.median(c.ms) for k, c in by.items()}
    columns = ["case", *(f"{t} ms (p10-p90)" for t in tools), *(f"{t} / dockyard" for t in tools[1:])]
    rows = []
    for label in (*NETWORK_CASES, "ps"):
        row = [label if label == "ps" else f"run --rm --net {label} true"]
        row += [cell(by[(t, label)].ms) if (t, label) in by else "-" for t in tools]
        row += [f"{ratio(med[(t, label)], med[('dockyard', label)]):.2f}x" for t in tools[1:]]
        rows.append(row)
    rows.append(["python -c pass", cell(by[("python", "-c pass")].ms), *["-"] * (len(columns) - 2)])
    rows.append(["dockyard --help", cell(by[("dockyard", "--help")].ms), *["-"] * (len(columns) - 2)])

    diff_rows = []
    for t in tools:
        for other in ("none", "host"):
            a, b = by[(t, "bridge")], by[(t, other)]
            diff_rows.append(
                [
                    f"{t}: bridge - {other}",
                    f"{med[(t, 'bridge')] - med[(t, other)]:.1f}",
                    f"{paired_difference(a, b):.1f}",
                ]
            )

    bridge = med[("dockyard", "bridge")]
    over_none = med[("dockyard", "bridge")] - med[("dockyard", "none")]

    def versus(value: float, key: str, fmt: str) -> str:
        parts = []
        for t in tools[1:]:
            other = med[(t, "bridge")] - med[(t, "none")] if key == "over_none" else med[(t, "bridge")]
            parts.append(f"{t} {other:{fmt}} ms ({ratio(value, other):.2f}x)")
        return ", ".join(parts) or "no reference tool run"

    goals = [
        Goal(
            f"`dockyard run --rm true` on the bridge under {GOAL_BRIDGE_MS:.0f} ms",
            bridge < GOAL_BRIDGE_MS,
            f"{bridge:.1f} ms",
            versus(bridge, "bridge", ".1f"),
        ),
        Goal(
            f"bridge minus none under {GOAL_BRIDGE_OVER_NONE_MS:.0f} ms",
            over_none < GOAL_BRIDGE_OVER_NONE_MS,
            f"{over_none:.1f} ms",
            versus(over_none, "over_none", ".1f"),
        ),
    ]
    plot = Plot(
        "run_latency",
        "run --rm --net X true: whole command (median, p10-p90)",
        "bar",
        "network",
        "ms",
        [
            Series(
                t,
                [lbl for lbl in NETWORK_CASES if (t, lbl) in by],
                [med[(t, lbl)] for lbl in NETWORK_CASES if (t, lbl) in by],
                [summary(by[(t, lbl)].ms)["p10"] for lbl in NETWORK_CASES if (t, lbl) in by],
                [summary(by[(t, lbl)].ms)["p90"] for lbl in NETWORK_CASES if (t, lbl) in by],
            )
            for t in tools
        ],
    )
    return Report(
        key="run_latency",
        title="1. Run latency",
        method=(
            f"Whole-command wall time of `run --rm --net X true` with the daemon already up, "
            f"{runs} rounds; each round runs every case of every tool once, rotated by one each round. "
            "Each tool in a throwaway host namespace of its own. Docker and Podman run a locally "
            "imported busybox image; dockyard runs the host's /bin/true. " + machine_line(info)
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
        notes=[*notes, f"reference figures measured on this machine kind earlier: {REFERENCE}"],
        plots=[plot],
    )


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="timed runs per case (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per case first (default 3)")
    p.add_argument("--port", type=int, default=18080, help="host port of the -p case (default 18080)")
    p.add_argument("--no-docker", action="store_true", help="do not measure Docker")
    p.add_argument("--no-podman", action="store_true", help="do not measure Podman")
    p.add_argument("--smoke", action="store_true", help="2 runs per case, 1 warm-up, dockyard only")
    p.add_argument("--json", metavar="PATH", help="also write the report and raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.no_docker, args.no_podman = 2, 1, True, True
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    if not 1 <= args.port <= 65535:
        p.error("--port must be a port number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("run_latency: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    labs, notes = labs_for(
        [("docker", args.no_docker, PrivateDocker), ("podman", args.no_podman, PrivatePodman)]
    )
    docker = podman = None
    status = 0
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="dybench-run-"))
    try:
        for lab in labs.values():
            lab.setup()
        lab = labs["dockyard"]
        lab.start_daemon()
        lab.dy("run", "-d", "--name", TARGET, "sleep", "infinity")
        lab.remember_container(TARGET)
        cases = dockyard_cases(lab, args.port)
        cases.append(Case("python", "-c pass", [sys.executable, "-c", "pass"]))
        image = rootfs_tar(work / "image.tar") if len(labs) > 1 else None
        if "docker" in labs and image:
            docker = PrivateDocker(labs["docker"].host, work / "docker")
            docker.start()
            docker.import_image(image, IMAGE)
            docker.docker("run", "-d", "--name", TARGET, IMAGE, "sleep", "100000")
            cases += docker_cases(docker, args.port)
            notes.append(f"docker: {docker.version()}, a private dockerd in its lab's host namespace")
        if "podman" in labs and image:
            podman = PrivatePodman(labs["podman"].host, work / "podman")
            podman.start()
            podman.import_image(image, IMAGE)
            podman.run_detached(TARGET, IMAGE, "sleep", "100000")
            cases += podman_cases(podman, args.port)
            notes.append(f"podman: {podman.version()} (netavark, crun, --cgroups=disabled)")
        print(
            f"timing {len(cases)} cases: {args.warmup} warm-up and {args.runs} timed runs each ...",
            flush=True,
        )
        orders = measure(cases, args.runs, args.warmup)
        info = machine(load_before)
        report = build_report(cases, args.runs, notes, info)
        print(report.text(), flush=True)
        if args.json:
            raw = {
                "runs": args.runs,
                "warmup": args.warmup,
                "machine": info,
                "cases": [
                    {"tool": c.tool, "label": c.label, "argv": c.argv, "ms": c.ms, **summary(c.ms)}
                    for c in cases
                ],
                "rounds": orders,
            }
            write_results(args.json, report, raw)
    except (BenchError, LabError, KeyboardInterrupt, Interrupted) as e:
        status = failure_status("run_latency", e)
    finally:
        problems += clean_up([docker, podman], labs.values(), work)
    return exit_status("run_latency", status, problems)


if __name__ == "__main__":
    sys.exit(main())
