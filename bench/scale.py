"""Scale and memory: 1,000 containers on one bridge, and what each costs (issue 7, comparisons 5 and 6).

    .venv/bin/python bench/scale.py [--containers N] [--batch N] [--docker-containers N] [--json PATH]
    .venv/bin/python bench/scale.py --smoke     # 10 containers in batches of 5, dockyard only

As root. Each tool works in a throwaway lab of its own (demo/netlab.py: a
host namespace, an upstream namespace on TEST-NET addresses; the root
namespace is never touched): dockyardd with --host-netns, and a private
dockerd (bench/_reference.py) in its lab's host namespace, running a
busybox-static image imported locally.

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
   own processes.

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
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import HOST_IF, Interrupted, Lab, LabError, raise_on_termination  # noqa: E402

from _common import (  # noqa: E402
    BenchError,
    descendants,
    load_average,
    machine,
    machine_line,
    mem_available_mib,
    memory_kib,
    process_table,
    ratio,
    rotated,
    run_cmd,
    summary,
    timed,
)
from _reference import PrivateDocker, rootfs_tar  # noqa: E402
from _report import Goal, Plot, Report, Series, Table  # noqa: E402
from _script import clean_up, exit_status, failure_status, labs_for, write_results  # noqa: E402

IMAGE = "dybench-busybox:latest"
SLEEP = "1000000"
BRIDGE_MAX_ENDPOINTS = 1023  # a Linux bridge holds 1,024 ports; dockyard refuses the 1,024th
DOCKER_MAX = 250  # the private dockerd's bridge is a /24
GOAL_IDLE_MB = 60.0
GOAL_PER_CONTAINER_KB = 1000.0
GOAL_FLAT = 1.10  # the bar issue 7 sets for CNI ADD: the last tenth within 10% of the first
READS = 3  # memory reads per point: the median is kept, min-max shows how still it was
PROBE = [sys.executable, "-c", "pass"]  # timed now and then: drift of the machine, not of a tool
PROBE_EVERY = 10
KB = 1.024  # kB (10^3 bytes) in a KiB: the report speaks the MB and kB


def _pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _links(lab: Lab) -> list[dict[str, object]]:
    return json.loads(lab.in_ns(lab.host, "ip", "-d", "-j", "link", "show").stdout or "[]")


# -- the two sides -----------------------------------------------------------------------


class Side:
    """One tool: how to start and remove a container, and which processes are its engine."""

    name = ""
    core_label = ""  # the daemon(s) the idle goal is about
    core_parts: tuple[str, ...] = ()
    env: dict[str, str] | None = None

    def __init__(self, lab: Lab, containers: int, batch: int) -> None:
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
        links = _links(self.lab)
        veths = [
            link
            for link in links
            if link.get("ifname") != HOST_IF and (link.get("linkinfo") or {}).get("info_kind") == "veth"
        ]
        return {
            "containers listed": self.listed(),
            "container processes": len(self.parts()["own"]),
            "veths": len(veths),
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
        table = process_table()
        root = self.lab.root
        daemon, shim, resolver = (_pid_file(root / f) for f in ("dockyardd.pid", "shim.pid", "dns.pid"))
        parts: dict[str, list[int]] = {"dockyardd": [], "shim": [], "resolver": [], "other": [], "own": []}
        if daemon not in table:
            return parts
        assert daemon is not None
        parts["dockyardd"] = [daemon]
        own = descendants(table, shim) if shim in table else set()
        if shim in table:
            parts["shim"] = [shim]
        if resolver in table:
            parts["resolver"] = [resolver]
        parts["other"] = sorted(descendants(table, daemon) - own - {shim, resolver})
        parts["own"] = sorted(own)
        return parts

    def listed(self) -> int:
        return len(self.lab.dy("ps", "-aq").stdout.split())

    def inventory(self) -> dict[str, int]:
        inv = super().inventory()
        listing = json.loads(
            self.lab.in_ns(self.lab.host, "nft", "-j", "list", "table", "inet", "dockyard").stdout
        )
        inv["nft elements"] = sum(
            len(obj[kind].get("elem", []))
            for obj in listing["nftables"]
            for kind in ("set", "map")
            if kind in obj
        )
        pins = self.lab.root / "netns"
        inv["netns pins"] = len(list(pins.iterdir())) if pins.is_dir() else 0
        prefix = str(self.lab.root) + "/"
        with open("/proc/self/mountinfo") as f:
            inv["mounts under $ROOT"] = sum(1 for line in f if line.split()[4].startswith(prefix))
        containers = self.lab.root / "containers"
        inv["container directories"] = len(list(containers.iterdir())) if containers.is_dir() else 0
        return inv


class DockerSide(Side):
    name = "docker"
    core_label = "dockerd+containerd"
    core_parts = ("dockerd", "containerd")

    def __init__(self, lab: Lab, containers: int, batch: int, docker: PrivateDocker) -> None:
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
        for pid in self.container_pids:
            if pid in table:
                own |= {pid} | descendants(table, pid)
        parts: dict[str, list[int]] = {"dockerd": [], "containerd": [], "shims": [], "other": []}
        for pid in self.docker.processes():
            if pid in own:
                continue
            comm = _comm(pid)
            key = (
                comm
                if comm in ("dockerd", "containerd")
                else "shims"
                if comm.startswith("containerd-shim")
                else "other"
            )
            parts[key].append(pid)
        parts["own"] = sorted(own)
        return parts

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
        engine_rss = engine_pss = 0
        for part, pids in side.parts().items():
            rss = pss = 0
            for pid in pids:
                r, p = memory_kib(pid)
                rss, pss = rss + r, pss + p
            read[f"{part}_rss"], read[f"{part}_pss"], read[f"{part}_n"] = rss, pss, len(pids)
            if part != "own":
                engine_rss, engine_pss = engine_rss + rss, engine_pss + pss
        read["engine_rss"], read["engine_pss"] = engine_rss, engine_pss
        read["core_rss"] = sum(read[f"{p}_rss"] for p in side.core_parts)
        read["core_pss"] = sum(read[f"{p}_pss"] for p in side.core_parts)
        point.reads.append(read)
    return point


# -- the run -------------------------------------------------------------------------------


@dataclass
class Run:
    """What one side measured."""

    side: Side
    fresh: Point | None = None
    idle: Point | None = None
    start_ms: list[list[float]] = field(default_factory=list)  # per batch
    rm_ms: list[list[float]] = field(default_factory=list)
    probe_ms: list[list[float]] = field(default_factory=list)  # the machine's drift, per start batch
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
        for i, name in enumerate(names):
            ms.append(timed(self.side.start_argv(name), f"{self.side.name} run -d {name}", env=self.side.env))
            self.side.started.append(name)
            if i % PROBE_EVERY == 0:
                probe.append(timed(PROBE, "python -c pass"))
        self.after_start.append(read_memory(self.side, f"batch {k + 1}", len(self.side.started), avail))

    def rm_batch(self, k: int, names: list[str]) -> None:
        ms: list[float] = []
        self.rm_ms.append(ms)
        for name in names:
            ms.append(timed(self.side.rm_argv(name), f"{self.side.name} rm -f {name}", env=self.side.env))
            self.side.started.remove(name)
        self.after_rm.append(read_memory(self.side, f"rm batch {k + 1}", len(self.side.started)))


def warm_up(side: Side, count: int) -> None:
    for i in range(count):
        name = f"sc-warm-{i}"
        timed(side.start_argv(name), f"{side.name} warm-up run", env=side.env)
        timed(side.rm_argv(name), f"{side.name} warm-up rm", env=side.env)


def interleaved(runs: list[Run], phase: str) -> list[list[str]]:
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


def remove_rest(run: Run) -> None:
    """After a failure: remove what is still started (untimed), so the leak check still means something."""
    for name in list(run.side.started):
        with contextlib.suppress(BenchError):
            run_cmd(run.side.rm_argv(name), f"{run.side.name} rm -f {name}", env=run.side.env)
        run.side.started.remove(name)


# -- the report ------------------------------------------------------------------------------


def mb(kib: float) -> str:
    return f"{kib * KB / 1000:.1f}"


def ms_cell(values: list[float]) -> str:
    s = summary(values)
    return f"{s['median']:.1f} ({s['p10']:.0f}-{s['p90']:.0f})"


def spread_cell(values: list[float], unit: str = "") -> str:
    if not values:
        return "-"
    s = summary(values)
    return f"{s['median']:.0f}{unit} ({s['p10']:.0f}-{s['p90']:.0f})"


@dataclass
class Figures:
    """The derived figures of one side, for the tables, the goals and the JSON."""

    n: int  # containers running at the fullest point
    idle_core_rss: float  # KiB
    idle_core_span: tuple[float, float]
    idle_core_pss: float
    idle_engine_rss: float
    after_core_rss: float | None  # idle again, once every container was removed
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

    @property
    def last_over_first(self) -> float:
        return ratio(self.last_ms, self.first_ms)


def figures(run: Run) -> Figures | None:
    if run.idle is None or not run.after_start or not run.after_start[-1].running:
        return None
    idle, full = run.idle, run.after_start[-1]
    n = full.running
    per_batch, beyond_batch = [], []
    previous = idle
    drop_total = 0.0
    for point in run.after_start:
        added = point.running - previous.running
        if added > 0:
            per_batch.append((point.med("engine_rss") - previous.med("engine_rss")) * KB / added)
            assert point.avail_before_mib is not None
            drop = (point.avail_before_mib - point.med("avail_mib")) * 1024  # KiB
            drop_total += drop
            beyond_batch.append((drop - (point.med("own_pss") - previous.med("own_pss"))) * KB / added)
        previous = point
    timed_batches = [b for b in run.start_ms if b]
    return Figures(
        n=n,
        idle_core_rss=idle.med("core_rss"),
        idle_core_span=idle.span("core_rss"),
        idle_core_pss=idle.med("core_pss"),
        idle_engine_rss=idle.med("engine_rss"),
        after_core_rss=run.after_rm[-1].med("core_rss") if run.after_rm and not run.side.started else None,
        full_engine_rss=full.med("engine_rss"),
        full_engine_pss=full.med("engine_pss"),
        per_container_rss_kb=(full.med("engine_rss") - idle.med("engine_rss")) * KB / n,
        per_container_pss_kb=(full.med("engine_pss") - idle.med("engine_pss")) * KB / n,
        per_batch_rss_kb=per_batch,
        avail_drop_kb=drop_total * KB / n,
        own_pss_kb=(full.med("own_pss") - idle.med("own_pss")) * KB / n,
        own_rss_kb=(full.med("own_rss") - idle.med("own_rss")) * KB / n,
        beyond_own_kb=(drop_total - (full.med("own_pss") - idle.med("own_pss"))) * KB / n,
        beyond_own_per_batch_kb=beyond_batch,
        start_all_ms=[t for b in timed_batches for t in b],
        first_ms=statistics.median(timed_batches[0]),
        last_ms=statistics.median(timed_batches[-1]),
        rm_all_ms=[t for b in run.rm_ms for t in b],
        probe_first_ms=statistics.median(run.probe_ms[0]),
        probe_last_ms=statistics.median(run.probe_ms[len(timed_batches) - 1]),
    )


def batch_rows(run: Run, times: list[list[float]], points: list[Point], removal: bool) -> list[list[str]]:
    rows = []
    for k, (ms, point) in enumerate(zip(times, points, strict=False)):
        if not ms:
            continue
        probe = run.probe_ms[k] if not removal and k < len(run.probe_ms) else []
        first = k * run.side.batch + 1
        s = summary(ms)
        core = "+".join(mb(point.med(f"{p}_rss")) for p in run.side.core_parts)
        rows.append(
            [
                run.side.name,
                f"{first:,}-{first + len(ms) - 1:,}",
                f"{point.running:,}",
                f"{s['median']:.1f} ({s['p10']:.0f}-{s['p90']:.0f})",
                f"{s['min']:.0f}-{s['max']:.0f}",
                core,
                mb(point.med("engine_rss")),
                mb(point.med("own_pss")),
                f"{statistics.median(probe):.1f}" if probe else "-",
            ]
        )
        if removal:
            rows[-1][1] = f"rm {rows[-1][1]}"
    return rows


def memory_rows(run: Run) -> list[list[str]]:
    points = [
        ("just started", run.fresh),
        ("idle, after warm-up", run.idle),
        (
            f"with {run.after_start[-1].running:,}" if run.after_start else "full",
            run.after_start[-1] if run.after_start else None,
        ),
        ("after removal", run.after_rm[-1] if run.after_rm else None),
    ]
    parts = [p for p in run.side.parts() if p != "own"]
    rows = []
    for part in [*parts, "engine", "own"]:
        label = {"engine": "engine (all but the containers)", "own": "containers' own processes"}.get(
            part, part
        )
        row = [run.side.name, label]
        for _, point in points:
            if point is None:
                row.append("-")
                continue
            count = point.med(f"{part}_n") if part != "engine" else 1
            if not count:
                row.append("-")
                continue
            n = f" [{count:.0f}]" if part in ("shims", "own", "other") else ""
            row.append(f"{mb(point.med(f'{part}_rss'))} / {mb(point.med(f'{part}_pss'))}{n}")
        rows.append(row)
    return rows


def build_report(
    runs: list[Run], notes: list[str], info: dict[str, object]
) -> tuple[Report, dict[str, object]]:
    figs = {r.side.name: figures(r) for r in runs}
    dy = figs["dockyard"]
    dk = figs.get("docker")
    tools = [r.side.name for r in runs]
    cols = [
        "tool",
        "containers",
        "running after",
        "ms per container (p10-p90)",
        "min-max",
        "daemon RSS MB",
        "engine RSS MB",
        "own PSS MB",
        "python -c pass ms",
    ]
    start_rows = [row for r in runs for row in batch_rows(r, r.start_ms, r.after_start, False)]
    rm_rows = [row for r in runs for row in batch_rows(r, r.rm_ms, r.after_rm, True)]
    mem_cols = ["tool", "process", "just started", "idle", "all started", "after removal"]
    mem_rows = [row for r in runs for row in memory_rows(r)]

    def side_by_side(label: str, value: str, other: str, rat: str) -> list[str]:
        return [label, value, *([other, rat] if dk else [])]

    cmp_rows: list[list[str]] = []
    if dy is not None:

        def both(label: str, get: Callable[[Figures], float], fmt: str = "{:.1f}") -> None:
            a = get(dy)
            b = get(dk) if dk else 0.0
            cmp_rows.append(side_by_side(label, fmt.format(a), fmt.format(b), f"{ratio(b, a):.2f}x"))

        cmp_rows.append(side_by_side("containers", f"{dy.n:,}", f"{dk.n:,}" if dk else "-", "-"))
        both("daemon RSS idle, MB (dockyardd; dockerd+containerd)", lambda f: f.idle_core_rss * KB / 1000)
        both("daemon PSS idle, MB", lambda f: f.idle_core_pss * KB / 1000)
        both("engine RSS idle, MB (dockyard: with its shim)", lambda f: f.idle_engine_rss * KB / 1000)
        both("engine RSS with all containers, MB", lambda f: f.full_engine_rss * KB / 1000)
        both(
            "per container beyond its own command, RSS kB: (engine full - idle) / N",
            lambda f: f.per_container_rss_kb,
            "{:.0f}",
        )
        both("the same, PSS kB", lambda f: f.per_container_pss_kb, "{:.0f}")
        cmp_rows.append(
            side_by_side(
                "the same RSS kB, batch by batch: median (p10-p90)",
                spread_cell(dy.per_batch_rss_kb),
                spread_cell(dk.per_batch_rss_kb) if dk else "-",
                "-",
            )
        )
        both("MemAvailable drop per container, kB (indicative)", lambda f: f.avail_drop_kb, "{:.0f}")
        both("containers' own processes per container, PSS kB (RSS)", lambda f: f.own_pss_kb, "{:.0f}")
        cmp_rows[-1][1] += f" ({dy.own_rss_kb:.0f})"
        if dk:
            cmp_rows[-1][2] += f" ({dk.own_rss_kb:.0f})"
        both(
            "MemAvailable drop minus own PSS, kB per container (indicative)",
            lambda f: f.beyond_own_kb,
            "{:.0f}",
        )
        cmp_rows.append(
            side_by_side(
                "the same, batch by batch: median (p10-p90)",
                spread_cell(dy.beyond_own_per_batch_kb),
                spread_cell(dk.beyond_own_per_batch_kb) if dk else "-",
                "-",
            )
        )
        cmp_rows.append(
            side_by_side(
                "run -d, ms per container, all batches",
                ms_cell(dy.start_all_ms),
                ms_cell(dk.start_all_ms) if dk else "-",
                f"{ratio(statistics.median(dk.start_all_ms), statistics.median(dy.start_all_ms)):.2f}x"
                if dk
                else "-",
            )
        )
        both("run -d: first batch median, ms", lambda f: f.first_ms)
        both("run -d: last batch median, ms", lambda f: f.last_ms)
        both("run -d: last batch / first batch", lambda f: f.last_over_first, "{:.2f}")
        if dy.rm_all_ms:
            cmp_rows.append(
                side_by_side(
                    "rm -f, ms per container, all batches",
                    ms_cell(dy.rm_all_ms),
                    ms_cell(dk.rm_all_ms) if dk and dk.rm_all_ms else "-",
                    f"{ratio(statistics.median(dk.rm_all_ms), statistics.median(dy.rm_all_ms)):.2f}x"
                    if dk and dk.rm_all_ms
                    else "-",
                )
            )

    left_rows = []
    for r in runs:
        base, full, after = (r.inventory.get(k, {}) for k in ("idle", "full", "after removal"))
        for item in base:
            extra = after.get(item, 0) - base[item] if item in after else None
            left_rows.append(
                [
                    r.side.name,
                    item,
                    f"{base[item]:,}",
                    f"{full[item]:,}" if item in full else "-",
                    f"{after[item]:,}" if item in after else "-",
                    "-" if extra is None else f"{extra:+d}",
                ]
            )

    goals = []
    if dy is not None:
        idle_mb = dy.idle_core_rss * KB / 1000
        lo, hi = (v * KB / 1000 for v in dy.idle_core_span)
        docker_idle = docker_each = docker_flat = ""
        if dk:
            docker_idle = (
                f"docker dockerd+containerd {dk.idle_core_rss * KB / 1000:.1f} MB "
                f"({ratio(dk.idle_core_rss, dy.idle_core_rss):.2f}x)"
            )
            docker_each = (
                f"docker {dk.per_container_rss_kb:.0f} kB at {dk.n:,} "
                f"({ratio(dk.per_container_rss_kb, dy.per_container_rss_kb):.2f}x)"
            )
            docker_flat = f"docker {dk.last_over_first:.2f}x ({dk.first_ms:.1f} -> {dk.last_ms:.1f} ms)"
        goals.append(
            Goal(
                f"dockyardd under {GOAL_IDLE_MB:.0f} MB RSS idle",
                idle_mb < GOAL_IDLE_MB,
                f"{idle_mb:.1f} MB ({lo:.1f}-{hi:.1f}; PSS {dy.idle_core_pss * KB / 1000:.1f})",
                docker_idle,
            )
        )
        if dy.after_core_rss is not None:
            again_mb = dy.after_core_rss * KB / 1000
            docker_again = ""
            if dk and dk.after_core_rss is not None:
                docker_again = (
                    f"docker dockerd+containerd {dk.after_core_rss * KB / 1000:.1f} MB "
                    f"({ratio(dk.after_core_rss, dy.after_core_rss):.2f}x)"
                )
            goals.append(
                Goal(
                    f"dockyardd under {GOAL_IDLE_MB:.0f} MB RSS idle again, after {dy.n:,} containers",
                    again_mb < GOAL_IDLE_MB,
                    f"{again_mb:.1f} MB (+{again_mb - idle_mb:.1f} over idle before)",
                    docker_again,
                )
            )
        goals.append(
            Goal(
                f"under {GOAL_PER_CONTAINER_KB / 1000:.0f} MB per container beyond its own command "
                "(daemon+shim RSS, full - idle) / N",
                dy.per_container_rss_kb < GOAL_PER_CONTAINER_KB,
                f"{dy.per_container_rss_kb:.0f} kB at {dy.n:,} "
                f"(MemAvailable, indicative: {dy.beyond_own_kb:.0f} kB)",
                docker_each,
            )
        )
        goals.append(
            Goal(
                f"time per container flat: last batch within {GOAL_FLAT:.2f}x the first",
                dy.last_over_first <= GOAL_FLAT,
                f"{dy.last_over_first:.2f}x ({dy.first_ms:.1f} -> {dy.last_ms:.1f} ms; "
                f"python -c pass {dy.probe_first_ms:.1f} -> {dy.probe_last_ms:.1f} ms)",
                docker_flat,
            )
        )

    def series(
        r: Run, points: list[Point], key: str, name: str, times: list[list[float]] | None = None
    ) -> Series:
        if times is not None:
            pairs = [(p.running, t) for p, t in zip(points, times, strict=False) if t]
            return Series(
                name,
                [x for x, _ in pairs],
                [statistics.median(t) for _, t in pairs],
                [summary(t)["p10"] for _, t in pairs],
                [summary(t)["p90"] for _, t in pairs],
            )
        pts = [p for p in [r.idle, *points] if p is not None]
        return Series(name, [p.running for p in pts], [p.med(key) * KB / 1000 for p in pts])

    plots = [
        Plot(
            "scale_start",
            "run -d sleep: ms per container, by batch (median, p10-p90)",
            "line",
            "containers running after the batch",
            "ms",
            [series(r, r.after_start, "", r.side.name, r.start_ms) for r in runs if r.start_ms],
        ),
        Plot(
            "scale_memory",
            "engine memory (RSS) as containers grow",
            "line",
            "containers running",
            "MB",
            [
                s
                for r in runs
                for s in (
                    series(r, r.after_start, "core_rss", f"{r.side.name}: {r.side.core_label}"),
                    series(
                        r,
                        r.after_start,
                        "engine_rss",
                        f"{r.side.name}: engine (with {'shim' if r.side.name == 'dockyard' else 'shims'})",
                    ),
                )
            ],
        ),
        Plot(
            "scale_rm",
            "rm -f: ms per container, by batch (median, p10-p90)",
            "line",
            "containers running after the batch",
            "ms",
            [series(r, r.after_rm, "", r.side.name, r.rm_ms) for r in runs if r.rm_ms],
        ),
    ]
    sizes = ", ".join(f"{r.side.name} {r.side.containers:,} in batches of {r.side.batch}" for r in runs)
    report = Report(
        key="scale",
        title="5-6. Scale and memory",
        method=(
            f"Detached containers (`run -d sleep`) on the default bridge, started one after another and "
            f"timed whole command ({sizes}), then removed with `rm -f`, timed; the tools' batches "
            "alternate. Memory is RSS and PSS from smaps_rollup, median of "
            f"{READS} reads, in MB and kB (10^3 bytes). Each tool in a throwaway host namespace of its own; "
            "Docker runs a locally imported busybox image, dockyard the host's sleep. " + machine_line(info)
        ),
        tables=[
            Table("start: ms per container by batch; memory after the batch", cols, start_rows),
            Table("removal: ms per container by batch; memory after the batch", cols, rm_rows),
            Table("memory by process, MB RSS / PSS [processes]", mem_cols, mem_rows),
            Table(
                "side by side",
                ["", *(f"{t}" for t in tools), *(["docker / dockyard"] if dk else [])],
                cmp_rows,
            ),
            Table(
                "left after removal (beyond what was there idle)",
                ["tool", "object", "idle", "full", "after removal", "left"],
                left_rows,
            ),
        ],
        goals=goals,
        notes=notes,
        plots=plots,
    )
    raw_figures = {name: (asdict(f) if f else None) for name, f in figs.items()}
    return report, raw_figures


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--containers", type=int, default=1000, help="dockyard containers (default 1000, at most 1023)"
    )
    p.add_argument("--batch", type=int, default=100, help="dockyard containers per batch (default 100)")
    p.add_argument("--docker-containers", type=int, default=100, help="Docker containers (default 100)")
    p.add_argument("--docker-batch", type=int, default=10, help="Docker containers per batch (default 10)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed run -d + rm -f before idle is read (default 3)"
    )
    p.add_argument("--no-docker", action="store_true", help="do not measure Docker")
    p.add_argument(
        "--smoke", action="store_true", help="10 containers in batches of 5, 1 warm-up, dockyard only"
    )
    p.add_argument("--json", metavar="PATH", help="also write the report and raw results as JSON to PATH")
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


def measure(runs: list[Run], warmup: int) -> dict[str, list[list[str]]]:
    for run in runs:
        run.fresh = read_memory(run.side, "just started", 0)
        warm_up(run.side, warmup)
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
        remove_rest(run)
    time.sleep(1)
    for run in runs:
        run.inventory["after removal"] = run.side.inventory()
    return orders


def leaks(run: Run) -> list[str]:
    base, after = run.inventory.get("idle", {}), run.inventory.get("after removal", {})
    return [f"{item}: {after[item] - n:+d}" for item, n in base.items() if item in after and after[item] != n]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("scale: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    labs, notes = labs_for([("docker", args.no_docker, PrivateDocker)])
    status = 0
    problems: list[str] = []
    docker: PrivateDocker | None = None
    work = Path(tempfile.mkdtemp(prefix="dybench-scale-"))
    try:
        for lab in labs.values():
            lab.setup()
        labs["dockyard"].start_daemon()
        runs = [Run(DockyardSide(labs["dockyard"], args.containers, args.batch))]
        if "docker" in labs:
            docker = PrivateDocker(labs["docker"].host, work / "docker")
            docker.start()
            docker.import_image(rootfs_tar(work / "image.tar"), IMAGE)
            runs.append(Run(DockerSide(labs["docker"], args.docker_containers, args.docker_batch, docker)))
            notes.append(f"docker: {docker.version()}, a private dockerd in its lab's host namespace")
        orders = measure(runs, args.warmup)
        for run in runs:
            if run.failure:
                notes.append(f"{run.side.name} FAILED: {run.failure}")
                status = 1
            left = leaks(run)
            if left:
                notes.append(f"{run.side.name} left after removal: {', '.join(left)}")
                status = 1
        notes.append(
            f"python -c pass ms: the bare interpreter timed after every {PROBE_EVERY}th start, the median of "
            "the batch: when it grows with a tool's times, the machine slowed down, not the tool"
        )
        notes.append(
            "MemAvailable is the whole machine's (other jobs, page cache and the kernel's freeing of network "
            "namespaces count in it): read that figure as indicative; the engine figure is the process memory"
        )
        info = machine(load_before)
        report, derived = build_report(runs, notes, info)
        print(report.text(), flush=True)
        if args.json:
            raw = {
                "machine": info,
                "args": vars(args),
                "orders": orders,
                "figures": derived,
                "runs": [
                    {
                        "tool": r.side.name,
                        "containers": r.side.containers,
                        "batch": r.side.batch,
                        "start_ms": r.start_ms,
                        "rm_ms": r.rm_ms,
                        "probe_ms": r.probe_ms,
                        "memory": [asdict(p) for p in [r.fresh, r.idle, *r.after_start, *r.after_rm] if p],
                        "inventory": r.inventory,
                        "failure": r.failure,
                    }
                    for r in runs
                ],
            }
            write_results(args.json, report, raw)
    except (BenchError, LabError, KeyboardInterrupt, Interrupted) as e:
        status = failure_status("scale", e)
    finally:
        problems += clean_up([docker], labs.values(), work)
    return exit_status("scale", status, problems)


if __name__ == "__main__":
    sys.exit(main())
