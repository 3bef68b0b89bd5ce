"""dockyard as Docker's network plugin against Docker's own bridge, in one dockerd, side by side.

    .venv/bin/python bench/docker_plugin.py [--runs N] [--warmup N] [--range-runs N] [--json PATH]
    .venv/bin/python bench/docker_plugin.py --smoke    # 2 runs, a 10-port range: for the test suite

Issue 17's bench. As root. One throwaway lab (tests/lab.py through
demo/netlab.py: a host namespace, an upstream namespace on TEST-NET
addresses; the root namespace is never touched) holds dockyardd serving
the plugin protocol and a private dockerd (tests/docker_lab.py, Docker
20.10 with its default userland proxy and its iptables rules, in the lab's
namespace) that finds dockyard's socket in its /run/docker/plugins. Two
user-defined networks of that one dockerd are compared: `-d dockyard
--ipam-driver dockyard` and `-d bridge` (Docker's own driver), so that the
same client, daemon, image (busybox-static, imported locally) and
container runtime are on both sides and only the network differs.

a. `docker run --rm --network NET busybox true`, the whole command: every
   round runs both networks once, the order alternating round by round
   (A B, then B A), after --warmup untimed rounds.
b. A published range (`-p 20000-20999:20000-20999`, 1,000 ports; 10 with
   --smoke): the whole `docker run -d` command, then, while the container
   runs, the processes dockerd's mount namespace gained beyond idle, the
   container's shim left out (any container has one, on any network): a
   docker-proxy per port and address family on Docker's bridge, none on
   dockyard's (its ports are nftables map elements, counted too, with a
   bound socket per port in dockyardd, as docker-proxy's bind without its
   process); then `docker rm -f`, timed. Docker's 1,000-port case starts
   about 2,000 docker-proxy processes and takes minutes, so it runs only in
   the first --docker-big-runs rounds, and not when the machine lacks the
   memory or PIDs for it (the report says so).

It prints tables (median with p10-p90), the ratios, the goals as met or not
and, with --json PATH, writes `{"report": ..., "raw": ...}`. Times are
reported, never asserted: the exit status is 0 unless a command failed or
cleanup had to force something (1), or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import mem_available_mib, process_name, ratio, rotated, summary, timed
from _reference import PrivateDocker, rootfs_tar
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import Run, ScriptLab, main, options

IMAGE = "dybench-busybox:latest"
SIDES = ("dockyard", "docker bridge")
NETWORKS = {"dockyard": "dy-net", "docker bridge": "dk-bridge"}
CREATE = {
    "dockyard": ("-d", "dockyard", "--ipam-driver", "dockyard"),
    "docker bridge": ("-d", "bridge", "--subnet", "10.199.0.0/24"),
}
BIP = "192.0.2.1/24"  # Docker's default bridge (unused here but always made), on TEST-NET-1
SETTLE_S = 0.3  # before counting processes: proxies of the start are up, those of a removal gone
MIB_PER_PROXY_PORT = 665 / 101  # issue 7's reference figure: Docker 20.10 with a 101-port range
MEMORY_MARGIN_MIB = 2048.0
THREADS_PER_PROXY = 8
REFERENCE = "Docker 20.10 with a 1,000-port range: 2,001 processes and 6.4 GB (issue 17)"


@dataclass
class RangeSample:
    round: int
    start_ms: float
    rm_ms: float
    extra: int  # processes beyond idle, the container's shim left out
    extra_by_name: dict[str, int] = field(default_factory=dict)
    elements: int = 0  # dockyard's port map elements while it runs


def port_spec(ports: int) -> str:
    return f"20000-{20000 + ports - 1}:20000-{20000 + ports - 1}"


class Side:
    """One network of the shared dockerd: the commands, timed."""

    def __init__(self, name: str, docker: PrivateDocker, lab: ScriptLab) -> None:
        self.name = name
        self.net = NETWORKS[name]
        self.docker = docker
        self.lab = lab

    def run_rm(self) -> float:
        argv = self.docker.argv("run", "--rm", "--network", self.net, IMAGE, "true")
        return timed(argv, f"docker run --rm ({self.name})", env=self.docker.env)

    def elements(self) -> int:
        if self.name != "dockyard":
            return 0
        return sum(len(self.lab.map_elements(m)) for m in ("publish_any", "publish_addr"))

    def daemon_processes(self) -> set[int]:
        return set(self.docker.processes())

    def range_once(self, ports: int, round_no: int) -> RangeSample:
        cname = f"range-{round_no + 1}"
        idle = self.daemon_processes()
        argv = self.docker.argv(
            *("run", "-d", "--name", cname, "--network", self.net, "-p", port_spec(ports)),
            *(IMAGE, "sleep", "3600"),
        )
        start_ms = timed(
            argv, f"docker run -d -p ({self.name}, {ports} ports)", env=self.docker.env, timeout=1800
        )
        try:
            time.sleep(SETTLE_S)
            added = self.daemon_processes() - idle
            names = Counter(process_name(p) for p in added)
            names = Counter({n: c for n, c in names.items() if not n.startswith("containerd-shim")})
            elements = self.elements()
        finally:
            rm_argv = self.docker.argv("rm", "-f", cname)
            rm_ms = timed(rm_argv, f"docker rm -f ({self.name})", env=self.docker.env, timeout=1800)
        return RangeSample(round_no, start_ms, rm_ms, sum(names.values()), dict(names), elements)


def no_room_for(ports: int) -> str | None:
    """Why Docker's bridge cannot publish this range now (memory or PIDs for its proxies), or None."""
    need = ports * MIB_PER_PROXY_PORT + MEMORY_MARGIN_MIB
    available = mem_available_mib()
    if available < need:
        return f"about {need:,.0f} MiB needed for its docker-proxy processes, {available:,.0f} free"
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    in_use = sum(1 for _ in Path("/proc").glob("[0-9]*/task/[0-9]*"))
    need_pids = ports * 2 * THREADS_PER_PROXY
    if pid_max - in_use < need_pids:
        return f"about {need_pids:,} PIDs needed for its docker-proxy threads, {pid_max - in_use:,} free"
    return None


def start_lab(run: Run) -> tuple[ScriptLab, Path]:
    """A lab whose dockyardd serves the plugin protocol on a socket in a plugin directory."""
    lab = run.lab()
    plugins = run.work / "plugins"
    plugins.mkdir(parents=True)
    lab.root.mkdir(parents=True, exist_ok=True)
    settings = {"docker-plugin": True, "docker-plugin-socket": str(plugins / "dockyard.sock")}
    (lab.root / "daemon.json").write_text(json.dumps(settings))
    lab.start_daemon()
    return lab, plugins


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    why = PrivateDocker.why_not()
    if why:
        # dockerd is not a reference here but the plugin's host: nothing can be measured.
        run.failures.append(f"cannot measure: {why}")
        table = Table("not measured", ["why"], [[why]])
        return Report("docker_plugin", "dockyard as Docker's network plugin", why, [table]), {}
    lab, plugins = start_lab(run)
    docker = PrivateDocker(lab.host, run.work / "docker", bip=BIP, plugins=plugins)
    run.daemons.append(docker)
    docker.start()
    run.notes.append(f"docker: {docker.version()}, a private dockerd in the lab's host namespace")
    docker.import_image(rootfs_tar(run.work / "image.tar"), IMAGE)
    for name in SIDES:
        docker.docker("network", "create", *CREATE[name], NETWORKS[name])
    sides = [Side(name, docker, lab) for name in SIDES]

    print(
        f"docker run --rm on each network: {args.warmup} warm-up and {args.runs} timed round(s) ...",
        flush=True,
    )
    run_rm: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(-args.warmup, args.runs):
        for side in rotated(sides, r):
            ms = side.run_rm()
            if r >= 0:
                run_rm[side.name].append(ms)

    ports = 10 if args.smoke else 1000
    print(f"a {ports:,}-port range on each network: {args.range_runs} round(s) ...", flush=True)
    ranges: dict[str, list[RangeSample]] = {s.name: [] for s in sides}
    docker_skipped = ""
    for r in range(args.range_runs):
        for side in rotated(sides, r):
            if side.name == "docker bridge":
                if r >= args.docker_big_runs or docker_skipped:
                    continue
                docker_skipped = no_room_for(ports) or ""
                if docker_skipped:
                    run.notes.append(f"docker bridge {ports:,}-port range: not run: {docker_skipped}")
                    continue
            ranges[side.name].append(side.range_once(ports, r))
    raw = {
        "runs": args.runs,
        "warmup": args.warmup,
        "range_ports": ports,
        "run_rm_ms": {name: {"samples": v, **(summary(v) if v else {})} for name, v in run_rm.items()},
        "ranges": {name: [asdict(s) for s in v] for name, v in ranges.items()},
    }
    return build_report(run_rm, ranges, ports, args), raw


# -- the report ------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def by_name(samples: list[RangeSample]) -> str:
    names: Counter[str] = Counter()
    for s in samples:
        names.update(s.extra_by_name)
    keep = {n: statistics.median(s.extra_by_name.get(n, 0) for s in samples) for n in names}
    return ", ".join(f"{n} {v:g}" for n, v in sorted(keep.items(), key=lambda kv: -kv[1]) if v) or "none"


def build_report(
    run_rm: dict[str, list[float]], ranges: dict[str, list[RangeSample]], ports: int, args: argparse.Namespace
) -> Report:
    dy, dk = run_rm["dockyard"], run_rm["docker bridge"]
    dy_r, dk_r = ranges["dockyard"], ranges["docker bridge"]
    spec = port_spec(ports)
    run_table = Table(
        "a. docker run --rm --network NET busybox true, whole command (median, p10-p90)",
        ["network", "ms (p10-p90)", "/ dockyard", "runs"],
        [
            ["dockyard (-d dockyard)", spread(dy), times(1.0), str(len(dy))],
            ["Docker's bridge (-d bridge)", spread(dk), times(ratio(med(dk), med(dy))), str(len(dk))],
        ],
    )

    def range_row(label: str, got: list[RangeSample], base: list[RangeSample]) -> list[str]:
        if not got:
            return [label, "-", "-", "-", "-", "-", "0"]
        start = [s.start_ms for s in got]
        return [
            label,
            spread(start, 0),
            times(ratio(med(start), med([s.start_ms for s in base]))) if base else "-",
            f"{med([float(s.rm_ms) for s in got]):,.0f}",
            f"{max(s.extra for s in got):g}",
            by_name(got),
            str(len(got)),
        ]

    range_table = Table(
        f"b. docker run -d -p {spec} ({ports:,} ports): start, rm -f, processes added beyond the shim",
        [
            "network",
            "start ms (p10-p90)",
            "/ dockyard",
            "rm -f ms",
            "extra processes (max)",
            "by name",
            "runs",
        ],
        [range_row("dockyard", dy_r, dy_r), range_row("Docker's bridge", dk_r, dy_r)],
    )
    extra = [s.extra for s in dy_r]
    goals = [
        Goal(
            "docker run --rm on a dockyard network faster than on Docker's own bridge network",
            bool(dy and dk) and med(dy) < med(dk),
            f"{med(dy):.0f} ms against {med(dk):.0f} ms",
            f"{ratio(med(dk), med(dy)):.2f}x Docker's bridge / dockyard",
        ),
        Goal(
            f"a {ports:,}-port range through Docker on a dockyard network: no extra process",
            bool(extra) and max(extra) == 0,
            f"{max(extra, default=0):g} extra processes (the most of {len(extra)} run(s)); "
            f"{max((s.elements for s in dy_r), default=0):g} map elements",
            f"Docker's bridge: {max((s.extra for s in dk_r), default=0):g} ({by_name(dk_r)})"
            if dk_r
            else "Docker's bridge not measured",
        ),
    ]
    plots = [
        Plot(
            "docker_plugin_run",
            "docker run --rm true, by network (median, p10-p90)",
            "bar",
            "",
            "ms",
            [Series.of("docker run --rm", ["dockyard", "Docker's bridge"], [dy, dk])],
        ),
        Plot(
            "docker_plugin_range",
            f"docker run -d with {ports:,} published ports, by network (median, p10-p90)",
            "bar",
            "",
            "ms",
            [
                Series.of(
                    "start",
                    [n for n, v in (("dockyard", dy_r), ("Docker's bridge", dk_r)) if v],
                    [[s.start_ms for s in v] for v in (dy_r, dk_r) if v],
                )
            ],
        ),
    ]
    return Report(
        key="docker_plugin",
        title="dockyard as Docker's network plugin",
        method=(
            "One private dockerd (Docker 20.10, default userland proxy, iptables in the lab's namespace) "
            "with two user-defined networks, `-d dockyard --ipam-driver dockyard` (dockyardd serving the "
            "plugin protocol in the same lab) and `-d bridge` (Docker's own driver), so that only the "
            f"network differs. a: whole-command wall time of `docker run --rm`, {args.runs} round(s) after "
            f"{args.warmup} warm-up, the networks alternating. b: `docker run -d -p {spec}`, then "
            "`docker rm -f`, timed; while it runs (after a 0.3 s settle) the processes dockerd's mount "
            "namespace gained beyond idle, the container's shim left out. Docker's bridge publishes the "
            f"range only in the first {args.docker_big_runs} round(s) (minutes and GBs of docker-proxy "
            f"processes). Reference: {REFERENCE}."
        ),
        tables=[run_table, range_table],
        goals=goals,
        plots=plots,
    )


def parse(argv: list[str]) -> argparse.Namespace:
    p = options(__doc__ or "", "2 runs, a 10-port range: for the test suite")
    p.add_argument("--runs", type=int, default=30, help="timed rounds of docker run --rm (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--range-runs", type=int, default=3, help="rounds of the published range (default 3)")
    p.add_argument(
        "--docker-big-runs",
        type=int,
        default=1,
        help="rounds in which Docker's bridge publishes it (default 1)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.range_runs, args.docker_big_runs = 2, 0, 1, 1
    if min(args.runs, args.range_runs) < 1 or min(args.warmup, args.docker_big_runs) < 0:
        p.error("--runs and --range-runs must be at least 1")
    return args


if __name__ == "__main__":
    parsed = parse(sys.argv[1:])
    sys.exit(main("docker_plugin", parsed, lambda run: measure(run, parsed)))
