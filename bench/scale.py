"""Scale and memory: 1,000 containers on one bridge, and what each costs (issue 7, comparisons 5 and 6).

    .venv/bin/python bench/scale.py [--containers N] [--batch N] [--docker-containers N] [--json PATH]
    .venv/bin/python bench/scale.py --smoke     # 10 containers in batches of 5, dockyard only

As root. Each tool works in a throwaway lab of its own (tests/lab.py through
demo/netlab.py: a host namespace, an upstream namespace on TEST-NET
addresses; the root namespace is never touched): dockyardd with
--host-netns, and a private dockerd (bench/_reference.py) in its lab's host
namespace, running a busybox-static image imported locally.

1. Scale. N detached containers (`run -d --name sc-NNNN sleep 1000000`) on
   the default bridge, started one after another; each whole command is
   timed. A Linux bridge holds at most 1,024 ports and dockyard refuses the
   1,024th endpoint, so N is at most 1,023 (default 1,000). The times are
   grouped by batches (default 100 a batch): median and p10-p90 per batch,
   the last batch against the first. After each batch the memory of every
   process of the engine is read. Then every container is removed with
   `rm -f NAME`, timed, in the same batches, and the host namespace is
   checked: no veth, bridge port, nft element, netns pin, mount or container
   process may be left beyond what was there idle.
2. Memory (RSS and PSS from /proc/PID/smaps_rollup): dockyardd, its shim and
   its DNS resolver (when one runs: the default bridge has none) just
   started, idle after a few warm-up containers, after each batch, and after
   removal. What a container costs beyond its own command is (engine memory
   with N - idle) / N, the engine being everything but the containers' own
   processes; and, indicative only (the machine is shared, the kernel's
   objects such as veths and network namespaces count in it), the drop of
   the machine's MemAvailable per container minus the PSS of the container's
   own processes. Issue 19's goals are judged on dockyardd's RSS idle, with
   the N containers running (after the last start), and idle again after
   their removal.

3. CPU: the user and system time of the daemon (dockyardd; dockerd and
   containerd) per container, batch by batch. User time is the daemon's own
   work: flat when no step of it grows with the count. System time is the
   kernel's work on its behalf, which grows where the kernel's does (the
   bridge's port add walks every port, a thousand veths and namespaces);
   a wall time on a loaded machine tells neither apart.

Docker side by side (unless --no-docker or --smoke): the same for a smaller
count (default 100 in batches of 10; a shim each makes 1,000 cost about
10 GB), its engine being dockerd, containerd and the containerd shims. The
tools' batches alternate (dockyard's batch k, Docker's batch k, then the
next round in the other order), so that drift on the machine hits both.

Figures are reported, never asserted: the exit status is 0 unless a command
failed, something was left after removal, or cleanup had to force something
(1), or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import (
    BenchError,
    cpu_ms,
    descendants,
    mem_available_mib,
    memory_kib,
    process_table,
    ratio,
    rotated,
    run_cmd,
    timed,
)
from _reference import PrivateDocker, rootfs_tar
from _report import Goal, Plot, Report, Series, Table, spread, times
from _script import HOST_IF, Run, ScriptLab, engine_parts, main, options

IMAGE = "dybench-busybox:latest"
SLEEP = "1000000"
BRIDGE_MAX_ENDPOINTS = 1023  # a Linux bridge holds 1,024 ports; dockyard refuses the 1,024th
DOCKER_MAX = 250  # the private dockerd's bridge is a /24
GOAL_IDLE_MB = 40.0  # issue 19
GOAL_AFTER_MB = 50.0  # issue 19: with the N containers running, and idle again after them
GOAL_PER_CONTAINER_KB = 1000.0
GOAL_FLAT = 1.10  # issue 19: the last batch within 1.10x the first
READS = 3  # memory reads per point: the median is kept, min-max shows how still it was
PROBE = [sys.executable, "-c", "pass"]  # timed now and then: drift of the machine, not of a tool
PROBE_EVERY = 10
KB = 1.024  # kB (10^3 bytes) in a KiB: the report speaks the issues' MB and kB


# -- the two sides -----------------------------------------------------------------------


class Side:
    """One tool: how to start and remove a container, and which processes are its engine."""

    name = ""
    core_label = ""  # the daemon(s) the idle goal is about
    core_parts: tuple[str, ...] = ()
    env: dict[str, str] | None = None

    def __init__(self, lab: ScriptLab, containers: int, batch: int) -> None:
        self.lab = lab
        self.containers = containers
        self.batch = batch
        self.started: list[str] = []

    def names(self) -> list[list[str]]:
        names = [f"sc-{i:04d}" for i in range(1, self.containers + 1)]
        return [names[i : i + self.batch] for i in range(0, len(names), self.batch)]

    def start_argv(self, name: str) -> list[str]:
        raise NotImplementedError

    def rm_argv(self, name: str) -> list[str]:
        raise NotImplementedError

    def parts(self) -> dict[str, list[int]]:
        """Part of the engine -> its pids; "own": the containers' own processes."""
        raise NotImplementedError

    def listed(self) -> int:
        """Containers the tool lists (`ps -aq`)."""
        raise NotImplementedError

    def inventory(self) -> dict[str, int]:
        """What exists in the lab's host namespace that containers make."""
        links = json.loads(self.lab.in_host("ip", "-d", "-j", "link", "show").stdout or "[]")
        kinds = [(link.get("linkinfo") or {}).get("info_kind") for link in links]
        return {
            "containers listed": self.listed(),
            "container processes": len(self.parts()["own"]),
            "veths": sum(
                1 for x, k in zip(links, kinds, strict=True) if k == "veth" and x["ifname"] != HOST_IF
            ),
            "bridge ports": sum(1 for link in links if link.get("master")),
        }


class DockyardSide(Side):
    name = "dockyard"
    core_label = "dockyardd"
    core_parts = ("dockyardd",)

    def start_argv(self, name: str) -> list[str]:
        return self.lab.dy_cmd("run", "-d", "--name", name, "sleep", SLEEP)

    def rm_argv(self, name: str) -> list[str]:
        return self.lab.dy_cmd("rm", "-f", name)

    def parts(self) -> dict[str, list[int]]:
        return engine_parts(self.lab)

    def listed(self) -> int:
        return len(self.lab.dy_ok("ps", "-aq").split())

    def inventory(self) -> dict[str, int]:
        inv = super().inventory()
        listing = json.loads(self.lab.in_host("nft", "-j", "list", "table", "inet", "dockyard").stdout)
        objects = listing["nftables"]
        inv["nft elements"] = sum(
            len(o[k].get("elem", [])) for o in objects for k in ("set", "map") if k in o
        )
        pins = self.lab.root / "netns"
        inv["netns pins"] = len(list(pins.iterdir())) if pins.is_dir() else 0
        with open("/proc/self/mountinfo") as f:
            inv["mounts under $ROOT"] = sum(
                1 for line in f if line.split()[4].startswith(f"{self.lab.root}/")
            )
        containers = self.lab.root / "containers"
        inv["container directories"] = len(list(containers.iterdir())) if containers.is_dir() else 0
        return inv


class DockerSide(Side):
    name = "docker"
    core_label = "dockerd+containerd"
    core_parts = ("dockerd", "containerd")

    def __init__(self, lab: ScriptLab, containers: int, batch: int, docker: PrivateDocker) -> None:
        super().__init__(lab, containers, batch)
        self.docker = docker
        self.env = docker.env
        self.container_pids: set[int] = set()

    def start_argv(self, name: str) -> list[str]:
        return self.docker.argv("run", "-d", "--name", name, IMAGE, "sleep", SLEEP)

    def rm_argv(self, name: str) -> list[str]:
        return self.docker.argv("rm", "-f", name)

    def refresh(self) -> None:
        """The containers' first processes, from `docker inspect` (in mount namespaces of their own)."""
        ids = self.docker.docker("ps", "-q").split()
        pids = self.docker.docker("inspect", "-f", "{{.State.Pid}}", *ids).split() if ids else []
        self.container_pids = {int(p) for p in pids if p.isdigit() and int(p) > 0}

    def parts(self) -> dict[str, list[int]]:
        table = process_table()
        own: set[int] = set()
        for pid in self.container_pids & set(table):
            own |= {pid} | descendants(table, pid)
        return {**self.docker.parts(own), "own": sorted(own)}

    def listed(self) -> int:
        return len(self.docker.docker("ps", "-aq").split())


# -- memory ---------------------------------------------------------------------------------


@dataclass
class Point:
    """The memory of a side at one moment: READS reads, each part's RSS and PSS in KiB."""

    label: str
    running: int
    reads: list[dict[str, float]] = field(default_factory=list)
    avail_before_mib: float | None = None  # MemAvailable just before the batch that led here

    def med(self, key: str) -> float:
        return statistics.median(r[key] for r in self.reads)

    def span(self, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.reads]
        return min(values), max(values)


def read_memory(side: Side, label: str, running: int, avail_before: float | None = None) -> Point:
    if isinstance(side, DockerSide):
        side.refresh()
    point = Point(label, running, avail_before_mib=avail_before)
    for i in range(READS):
        if i:
            time.sleep(0.1)
        read: dict[str, float] = {"avail_mib": mem_available_mib()}
        parts = side.parts()
        for part, pids in parts.items():
            sizes = [memory_kib(pid) for pid in pids]
            read[f"{part}_rss"], read[f"{part}_pss"] = sum(r for r, _ in sizes), sum(p for _, p in sizes)
            read[f"{part}_n"] = len(pids)
        for kind in ("rss", "pss"):
            read[f"engine_{kind}"] = sum(read[f"{part}_{kind}"] for part in parts if part != "own")
            read[f"core_{kind}"] = sum(read[f"{part}_{kind}"] for part in side.core_parts)
        point.reads.append(read)
    return point


# -- the run -------------------------------------------------------------------------------


@dataclass
class Measured:
    """What one side measured."""

    side: Side
    fresh: Point | None = None
    idle: Point | None = None
    start_ms: list[list[float]] = field(default_factory=list)  # per batch
    rm_ms: list[list[float]] = field(default_factory=list)
    probe_ms: list[list[float]] = field(default_factory=list)  # the machine's drift, per start batch
    # The daemon's CPU per container, (user, system) ms, per start batch: its own work
    # against the kernel's work for it, which a wall time under load cannot tell apart.
    start_cpu: list[tuple[float, float]] = field(default_factory=list)
    after_start: list[Point] = field(default_factory=list)
    after_rm: list[Point] = field(default_factory=list)
    inventory: dict[str, dict[str, int]] = field(default_factory=dict)  # idle, full, after removal
    failure: str = ""

    def start_batch(self, k: int, names: list[str]) -> None:
        avail = mem_available_mib()
        ms: list[float] = []
        probe: list[float] = []
        self.start_ms.append(ms)
        self.probe_ms.append(probe)
        core = [pid for part in self.side.core_parts for pid in self.side.parts().get(part, [])]
        user0, system0 = cpu_ms(core)
        for i, name in enumerate(names):
            ms.append(timed(self.side.start_argv(name), f"{self.side.name} run -d {name}", env=self.side.env))
            self.side.started.append(name)
            if i % PROBE_EVERY == 0:
                probe.append(timed(PROBE, "python -c pass"))
        user1, system1 = cpu_ms(core)
        self.start_cpu.append(((user1 - user0) / len(names), (system1 - system0) / len(names)))
        self.after_start.append(read_memory(self.side, f"batch {k + 1}", len(self.side.started), avail))

    def rm_batch(self, k: int, names: list[str]) -> None:
        ms: list[float] = []
        self.rm_ms.append(ms)
        for name in names:
            ms.append(timed(self.side.rm_argv(name), f"{self.side.name} rm -f {name}", env=self.side.env))
            self.side.started.remove(name)
        self.after_rm.append(read_memory(self.side, f"rm batch {k + 1}", len(self.side.started)))

    def remove_rest(self) -> None:
        """After a failure: remove what is still started (untimed): the leak check still means something."""
        for name in list(self.side.started):
            with contextlib.suppress(BenchError):
                run_cmd(self.side.rm_argv(name), f"{self.side.name} rm -f {name}", env=self.side.env)
            self.side.started.remove(name)

    def leaks(self) -> list[str]:
        base, after = self.inventory.get("idle", {}), self.inventory.get("after removal", {})
        return [
            f"{item}: {after[item] - n:+d}" for item, n in base.items() if item in after and after[item] != n
        ]


def interleaved(runs: list[Measured], phase: str) -> list[list[str]]:
    """Batch k of every side, in an order rotated each round; a side that fails stops, the others go on."""
    orders: list[list[str]] = []
    rounds = max(len(r.side.names()) for r in runs)
    for k in range(rounds):
        order = []
        for run in rotated(runs, k):
            batches = run.side.names()
            if k >= len(batches) or run.failure:
                continue
            order.append(run.side.name)
            try:
                if phase == "start":
                    run.start_batch(k, batches[k])
                else:
                    run.rm_batch(k, [n for n in batches[k] if n in run.side.started])
            except BenchError as e:
                run.failure = f"{phase} batch {k + 1}, after {len(run.side.started)} containers: {e}"
                print(f"scale: {run.side.name}: {run.failure}", file=sys.stderr, flush=True)
        if order:
            print(f"  {phase} round {k + 1}/{rounds}: {', '.join(order)}", flush=True)
        orders.append(order)
    return orders


def measure_sides(runs: list[Measured], warmup: int) -> dict[str, list[list[str]]]:
    for run in runs:
        run.fresh = read_memory(run.side, "just started", 0)
        for i in range(warmup):
            timed(run.side.start_argv(f"sc-warm-{i}"), f"{run.side.name} warm-up run", env=run.side.env)
            timed(run.side.rm_argv(f"sc-warm-{i}"), f"{run.side.name} warm-up rm", env=run.side.env)
    time.sleep(1)  # let the warm-up's teardown settle (network namespaces are freed asynchronously)
    for run in runs:
        run.idle = read_memory(run.side, "idle", 0)
        run.inventory["idle"] = run.side.inventory()
    print(f"starting: {', '.join(f'{r.side.name} {r.side.containers:,}' for r in runs)} ...", flush=True)
    orders = {"start": interleaved(runs, "start")}
    for run in runs:
        run.inventory["full"] = run.side.inventory()
        running = run.inventory["full"]["container processes"]
        if not run.failure and running != len(run.side.started):
            run.failure = f"{len(run.side.started)} containers started, {running} container processes running"
    orders["rm"] = interleaved(runs, "rm")
    for run in runs:
        run.remove_rest()
    time.sleep(1)
    for run in runs:
        run.inventory["after removal"] = run.side.inventory()
    return orders


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    sides = [Measured(DockyardSide(run.lab(daemon=True), args.containers, args.batch))]
    if run.can_run("docker", PrivateDocker, args.no_docker):
        lab = run.lab()
        docker = run.docker(lab)
        docker.import_image(rootfs_tar(run.work / "image.tar"), IMAGE)
        sides.append(Measured(DockerSide(lab, args.docker_containers, args.docker_batch, docker)))
    orders = measure_sides(sides, args.warmup)
    for m in sides:
        if m.failure:
            run.failures.append(f"{m.side.name} FAILED: {m.failure}")
        if m.leaks():
            run.failures.append(f"{m.side.name} left after removal: {', '.join(m.leaks())}")
    report, figures = build_report(sides)
    report.notes = [
        *run.failures,
        f"python -c pass ms: the bare interpreter timed after every {PROBE_EVERY}th start, the median of the "
        "batch: when it grows with a tool's times, the machine slowed down, not the tool",
        "MemAvailable is the whole machine's (other jobs, page cache and the kernel's freeing of network "
        "namespaces count in it): read that figure as indicative; the engine figure is the process memory",
    ]
    raw = {
        "args": vars(args),
        "orders": orders,
        "figures": figures,
        "runs": [
            {
                "tool": m.side.name,
                "containers": m.side.containers,
                "batch": m.side.batch,
                "start_ms": m.start_ms,
                "rm_ms": m.rm_ms,
                "probe_ms": m.probe_ms,
                "memory": [asdict(p) for p in [m.fresh, m.idle, *m.after_start, *m.after_rm] if p],
                "inventory": m.inventory,
                "failure": m.failure,
            }
            for m in sides
        ],
    }
    return report, raw


# -- the report ------------------------------------------------------------------------------


def mb(kib: float) -> str:
    return f"{kib * KB / 1000:.1f}"


@dataclass
class Figures:
    """The derived figures of one side, for the tables, the goals and the JSON."""

    n: int  # containers running at the fullest point
    idle_core_rss: float  # KiB
    idle_core_span: tuple[float, float]
    idle_core_pss: float
    idle_engine_rss: float
    after_core_rss: float | None  # idle again, once every container was removed
    full_core_rss: float  # the daemon after the Nth start, the N containers running
    full_core_span: tuple[float, float]
    full_engine_rss: float
    full_engine_pss: float
    per_container_rss_kb: float  # (engine at N - idle) / N
    per_container_pss_kb: float
    per_batch_rss_kb: list[float]  # the same, batch by batch
    avail_drop_kb: float  # MemAvailable drop per container
    own_pss_kb: float  # the containers' own processes, PSS per container
    own_rss_kb: float
    beyond_own_kb: float  # MemAvailable drop - own PSS, per container
    beyond_own_per_batch_kb: list[float]
    start_all_ms: list[float]
    first_ms: float
    last_ms: float
    rm_all_ms: list[float]
    probe_first_ms: float  # python -c pass during the first batch, and the last: the machine's drift
    probe_last_ms: float
    cpu_first: tuple[float, float]  # the daemon's (user, system) CPU ms per container, first batch
    cpu_last: tuple[float, float]  # and last batch

    @property
    def last_over_first(self) -> float:
        return ratio(self.last_ms, self.first_ms)


def figures(m: Measured) -> Figures | None:
    if m.idle is None or not m.after_start or not m.after_start[-1].running:
        return None
    idle, full = m.idle, m.after_start[-1]
    n = full.running
    per_batch, beyond_batch = [], []
    previous = idle
    drop_total = 0.0
    for point in m.after_start:
        added = point.running - previous.running
        if added > 0:
            per_batch.append((point.med("engine_rss") - previous.med("engine_rss")) * KB / added)
            assert point.avail_before_mib is not None
            drop = (point.avail_before_mib - point.med("avail_mib")) * 1024  # KiB
            drop_total += drop
            beyond_batch.append((drop - (point.med("own_pss") - previous.med("own_pss"))) * KB / added)
        previous = point
    # The batches that ran to their end: one a start failed in has times, but no CPU or memory read.
    timed_batches = m.start_ms[: len(m.after_start)]

    def grown(key: str) -> float:
        return (full.med(key) - idle.med(key)) * KB / n

    return Figures(
        n=n,
        idle_core_rss=idle.med("core_rss"),
        idle_core_span=idle.span("core_rss"),
        idle_core_pss=idle.med("core_pss"),
        idle_engine_rss=idle.med("engine_rss"),
        after_core_rss=m.after_rm[-1].med("core_rss") if m.after_rm and not m.side.started else None,
        full_core_rss=full.med("core_rss"),
        full_core_span=full.span("core_rss"),
        full_engine_rss=full.med("engine_rss"),
        full_engine_pss=full.med("engine_pss"),
        per_container_rss_kb=grown("engine_rss"),
        per_container_pss_kb=grown("engine_pss"),
        per_batch_rss_kb=per_batch,
        avail_drop_kb=drop_total * KB / n,
        own_pss_kb=grown("own_pss"),
        own_rss_kb=grown("own_rss"),
        beyond_own_kb=drop_total * KB / n - grown("own_pss"),
        beyond_own_per_batch_kb=beyond_batch,
        start_all_ms=[t for b in timed_batches for t in b],
        first_ms=statistics.median(timed_batches[0]),
        last_ms=statistics.median(timed_batches[-1]),
        rm_all_ms=[t for b in m.rm_ms for t in b],
        probe_first_ms=statistics.median(m.probe_ms[0]),
        probe_last_ms=statistics.median(m.probe_ms[len(timed_batches) - 1]),
        cpu_first=m.start_cpu[0],
        cpu_last=m.start_cpu[len(timed_batches) - 1],
    )


def batch_rows(m: Measured, removal: bool) -> list[list[str]]:
    times_ms, points = (m.rm_ms, m.after_rm) if removal else (m.start_ms, m.after_start)
    rows = []
    for k, (ms, point) in enumerate(zip(times_ms, points, strict=False)):
        if ms:
            probe = m.probe_ms[k] if not removal and k < len(m.probe_ms) else []
            first = k * m.side.batch + 1
            rows.append(
                [
                    m.side.name,
                    f"{'rm ' if removal else ''}{first:,}-{first + len(ms) - 1:,}",
                    f"{point.running:,}",
                    spread(ms),
                    f"{min(ms):.0f}-{max(ms):.0f}",
                    "+".join(mb(point.med(f"{p}_rss")) for p in m.side.core_parts),
                    mb(point.med("engine_rss")),
                    mb(point.med("own_pss")),
                    f"{statistics.median(probe):.1f}" if probe else "-",
                ]
            )
    return rows


def cpu_rows(m: Measured) -> list[list[str]]:
    rows = []
    for k, (user, system) in enumerate(m.start_cpu):
        first = k * m.side.batch + 1
        last = first + len(m.start_ms[k]) - 1
        cells = [f"{user:.1f}", f"{system:.1f}", f"{user + system:.1f}"]
        rows.append([m.side.name, f"{first:,}-{last:,}", *cells])
    return rows


def memory_rows(m: Measured) -> list[list[str]]:
    full = m.after_start[-1] if m.after_start else None
    points = [m.fresh, m.idle, full, m.after_rm[-1] if m.after_rm else None]
    rows = []
    for part in [*(p for p in m.side.parts() if p != "own"), "engine", "own"]:
        label = {"engine": "engine (all but the containers)", "own": "containers' own processes"}.get(
            part, part
        )
        row = [m.side.name, label]
        for point in points:
            count = (point.med(f"{part}_n") if part != "engine" else 1) if point else 0
            n = f" [{count:.0f}]" if part in ("shims", "own", "other") else ""
            row.append(
                f"{mb(point.med(f'{part}_rss'))} / {mb(point.med(f'{part}_pss'))}{n}" if count else "-"
            )
        rows.append(row)
    return rows


def comparison(dy: Figures, dk: Figures | None) -> list[list[str]]:
    """The side-by-side rows: dockyard's figure, Docker's, and their ratio."""
    cmp_rows: list[list[str]] = []

    def compare(label: str, a: str, b: str, r: float | None = None) -> None:
        cmp_rows.append([label, a, *([b, times(r) if r is not None else "-"] if dk else [])])

    def both(label: str, key: str, scale: float = 1.0, fmt: str = "{:.1f}") -> None:
        a, b = getattr(dy, key) * scale, getattr(dk, key) * scale if dk else 0.0
        compare(label, fmt.format(a), fmt.format(b), ratio(b, a))

    mb_of = KB / 1000
    compare("containers", f"{dy.n:,}", f"{dk.n:,}" if dk else "-")
    both("daemon RSS idle, MB (dockyardd; dockerd+containerd)", "idle_core_rss", mb_of)
    both("daemon PSS idle, MB", "idle_core_pss", mb_of)
    both("engine RSS idle, MB (dockyard: with its shim)", "idle_engine_rss", mb_of)
    both("engine RSS with all containers, MB", "full_engine_rss", mb_of)
    both(
        "per container beyond its own command, RSS kB: (engine full - idle) / N",
        "per_container_rss_kb",
        fmt="{:.0f}",
    )
    both("the same, PSS kB", "per_container_pss_kb", fmt="{:.0f}")
    batchwise = "the same RSS kB, batch by batch: median (p10-p90)"
    compare(batchwise, spread(dy.per_batch_rss_kb, 0), spread(dk.per_batch_rss_kb, 0) if dk else "-")
    both("MemAvailable drop per container, kB (indicative)", "avail_drop_kb", fmt="{:.0f}")
    own = "containers' own processes per container, PSS kB (RSS)"
    compare(
        own,
        f"{dy.own_pss_kb:.0f} ({dy.own_rss_kb:.0f})",
        f"{dk.own_pss_kb:.0f} ({dk.own_rss_kb:.0f})" if dk else "-",
        ratio(dk.own_pss_kb, dy.own_pss_kb) if dk else None,
    )
    both("MemAvailable drop minus own PSS, kB per container (indicative)", "beyond_own_kb", fmt="{:.0f}")
    batchwise = "the same, batch by batch: median (p10-p90)"
    compare(
        batchwise,
        spread(dy.beyond_own_per_batch_kb, 0),
        spread(dk.beyond_own_per_batch_kb, 0) if dk else "-",
    )
    for verb, key in (("run -d", "start_all_ms"), ("rm -f", "rm_all_ms")):
        a, b = getattr(dy, key), getattr(dk, key) if dk else []
        if a:
            r = ratio(statistics.median(b), statistics.median(a)) if b else None
            compare(f"{verb}, ms per container, all batches", spread(a), spread(b), r)
        if verb == "run -d":
            both("run -d: first batch median, ms", "first_ms")
            both("run -d: last batch median, ms", "last_ms")
            both("run -d: last batch / first batch", "last_over_first", fmt="{:.2f}")
    return cmp_rows


def build_report(sides: list[Measured]) -> tuple[Report, dict[str, Any]]:
    figs = {m.side.name: figures(m) for m in sides}
    dy, dk = figs["dockyard"], figs.get("docker")
    left_rows = []
    for m in sides:
        base, full, after = (m.inventory.get(k, {}) for k in ("idle", "full", "after removal"))
        for item, n in base.items():
            left = f"{after[item] - n:+d}" if item in after else "-"
            counts = [f"{x[item]:,}" if item in x else "-" for x in (full, after)]
            left_rows.append([m.side.name, item, f"{n:,}", *counts, left])
    columns = ["tool", "containers", "running after", "ms per container (p10-p90)", "min-max"]
    columns += ["daemon RSS MB", "engine RSS MB", "own PSS MB", "python -c pass ms"]
    sizes = ", ".join(f"{m.side.name} {m.side.containers:,} in batches of {m.side.batch}" for m in sides)
    report = Report(
        key="scale",
        title="5-6. Scale and memory",
        method=(
            f"Detached containers (`run -d sleep`) on the default bridge, started one after another and "
            f"timed whole command ({sizes}), then removed with `rm -f`, timed; the tools' batches "
            "alternate. Memory is RSS and PSS from smaps_rollup, median of "
            f"{READS} reads, in MB and kB (10^3 bytes). Each tool in a throwaway host namespace of its own; "
            "Docker runs a locally imported busybox image, dockyard the host's sleep."
        ),
        tables=[
            Table(
                "start: ms per container by batch; memory after the batch",
                columns,
                [row for m in sides for row in batch_rows(m, False)],
            ),
            Table(
                "removal: ms per container by batch; memory after the batch",
                columns,
                [row for m in sides for row in batch_rows(m, True)],
            ),
            Table(
                "the daemon's CPU per container by start batch, ms: user is its own work (flat when "
                "no step of it grows), system the kernel's work for it (a bridge of N ports, N veths)",
                ["tool", "containers", "user", "system", "both"],
                [row for m in sides for row in cpu_rows(m)],
            ),
            Table(
                "memory by process, MB RSS / PSS [processes]",
                ["tool", "process", "just started", "idle", "all started", "after removal"],
                [row for m in sides for row in memory_rows(m)],
            ),
            Table(
                "side by side",
                ["", "dockyard", *(["docker", "docker / dockyard"] if dk else [])],
                comparison(dy, dk) if dy else [],
            ),
            Table(
                "left after removal (beyond what was there idle)",
                ["tool", "object", "idle", "full", "after removal", "left"],
                left_rows,
            ),
        ],
        goals=goals(dy, dk) if dy else [],
        plots=plots(sides),
    )
    return report, {name: (asdict(f) if f else None) for name, f in figs.items()}


def goals(dy: Figures, dk: Figures | None) -> list[Goal]:
    def in_mb(kib: float) -> float:
        return kib * KB / 1000

    idle_mb = in_mb(dy.idle_core_rss)
    lo, hi = (in_mb(v) for v in dy.idle_core_span)
    out = [
        Goal(
            f"dockyardd at most {GOAL_IDLE_MB:.0f} MB RSS idle",
            idle_mb <= GOAL_IDLE_MB,
            f"{idle_mb:.1f} MB ({lo:.1f}-{hi:.1f}; PSS {in_mb(dy.idle_core_pss):.1f})",
            f"docker dockerd+containerd {in_mb(dk.idle_core_rss):.1f} MB "
            f"({times(ratio(dk.idle_core_rss, dy.idle_core_rss))})"
            if dk
            else "",
        )
    ]
    full_mb = in_mb(dy.full_core_rss)
    lo, hi = (in_mb(v) for v in dy.full_core_span)
    out.append(
        Goal(
            f"dockyardd at most {GOAL_AFTER_MB:.0f} MB RSS with {dy.n:,} containers running "
            "(after the last start)",
            full_mb <= GOAL_AFTER_MB,
            f"{full_mb:.1f} MB ({lo:.1f}-{hi:.1f}; +{full_mb - idle_mb:.1f} over idle)",
            f"docker dockerd+containerd {in_mb(dk.full_core_rss):.1f} MB at {dk.n:,} "
            f"({times(ratio(dk.full_core_rss, dy.full_core_rss))})"
            if dk
            else "",
        )
    )
    if dy.after_core_rss is not None:
        again_mb = in_mb(dy.after_core_rss)
        docker_again = dk.after_core_rss if dk else None
        out.append(
            Goal(
                f"dockyardd at most {GOAL_AFTER_MB:.0f} MB RSS idle again, after {dy.n:,} containers",
                again_mb <= GOAL_AFTER_MB,
                f"{again_mb:.1f} MB (+{again_mb - idle_mb:.1f} over idle before)",
                f"docker dockerd+containerd {in_mb(docker_again):.1f} MB "
                f"({times(ratio(docker_again, dy.after_core_rss))})"
                if docker_again is not None
                else "",
            )
        )
    out += [
        Goal(
            f"under {GOAL_PER_CONTAINER_KB / 1000:.0f} MB per container beyond its own command "
            "(daemon+shim RSS, full - idle) / N",
            dy.per_container_rss_kb < GOAL_PER_CONTAINER_KB,
            f"{dy.per_container_rss_kb:.0f} kB at {dy.n:,} "
            f"(MemAvailable, indicative: {dy.beyond_own_kb:.0f} kB)",
            f"docker {dk.per_container_rss_kb:.0f} kB at {dk.n:,} "
            f"({times(ratio(dk.per_container_rss_kb, dy.per_container_rss_kb))})"
            if dk
            else "",
        ),
        Goal(
            f"time per container flat: last batch within {GOAL_FLAT:.2f}x the first",
            dy.last_over_first <= GOAL_FLAT,
            f"{dy.last_over_first:.2f}x ({dy.first_ms:.1f} -> {dy.last_ms:.1f} ms; "
            f"python -c pass {dy.probe_first_ms:.1f} -> {dy.probe_last_ms:.1f} ms; dockyardd CPU "
            f"user {dy.cpu_first[0]:.1f} -> {dy.cpu_last[0]:.1f}, system {dy.cpu_first[1]:.1f} -> "
            f"{dy.cpu_last[1]:.1f} ms)",
            f"docker {dk.last_over_first:.2f}x ({dk.first_ms:.1f} -> {dk.last_ms:.1f} ms)" if dk else "",
        ),
    ]
    return out


def plots(sides: list[Measured]) -> list[Plot]:
    def by_batch(m: Measured, removal: bool) -> Series:
        times_ms, points = (m.rm_ms, m.after_rm) if removal else (m.start_ms, m.after_start)
        pairs = [(p.running, t) for p, t in zip(points, times_ms, strict=False) if t]
        return Series.of(m.side.name, [x for x, _ in pairs], [t for _, t in pairs])

    def memory(m: Measured, key: str, name: str) -> Series:
        points = [p for p in [m.idle, *m.after_start] if p is not None]
        return Series(name, [p.running for p in points], [p.med(key) * KB / 1000 for p in points])

    def engine(m: Measured) -> str:
        return f"{m.side.name}: engine (with {'shim' if m.side.name == 'dockyard' else 'shims'})"

    return [
        Plot(
            "scale_start",
            "run -d sleep: ms per container, by batch (median, p10-p90)",
            "line",
            "containers running after the batch",
            "ms",
            [by_batch(m, False) for m in sides if m.start_ms],
        ),
        Plot(
            "scale_memory",
            "engine memory (RSS) as containers grow",
            "line",
            "containers running",
            "MB",
            [
                s
                for m in sides
                for s in (
                    memory(m, "core_rss", f"{m.side.name}: {m.side.core_label}"),
                    memory(m, "engine_rss", engine(m)),
                )
            ],
        ),
        Plot(
            "scale_rm",
            "rm -f: ms per container, by batch (median, p10-p90)",
            "line",
            "containers running after the batch",
            "ms",
            [by_batch(m, True) for m in sides if m.rm_ms],
        ),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "10 containers in batches of 5, 1 warm-up, dockyard only", ("docker",))
    p.add_argument(
        "--containers", type=int, default=1000, help="dockyard containers (default 1000, at most 1023)"
    )
    p.add_argument("--batch", type=int, default=100, help="dockyard containers per batch (default 100)")
    p.add_argument("--docker-containers", type=int, default=100, help="Docker containers (default 100)")
    p.add_argument("--docker-batch", type=int, default=10, help="Docker containers per batch (default 10)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed run -d + rm -f before idle is read (default 3)"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.containers, args.batch, args.warmup, args.no_docker = 10, 5, 1, True
    if not 1 <= args.containers <= BRIDGE_MAX_ENDPOINTS:
        p.error(f"--containers must be 1 to {BRIDGE_MAX_ENDPOINTS} (a Linux bridge holds 1,024 ports)")
    if not 1 <= args.docker_containers <= DOCKER_MAX:
        p.error(f"--docker-containers must be 1 to {DOCKER_MAX} (the private dockerd's bridge is a /24)")
    if args.batch < 1 or args.docker_batch < 1 or args.warmup < 0:
        p.error("--batch and --docker-batch must be at least 1, --warmup at least 0")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("scale", arguments, lambda run: measure(run, arguments)))
