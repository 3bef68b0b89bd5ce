"""Port ranges: what publishing 101 and 1,000 ports costs, dockyard and Docker side by side.

    .venv/bin/python bench/publish_ports.py [--runs N] [--docker-big-runs N] [--warmup N] [--json PATH]
    .venv/bin/python bench/publish_ports.py --no-docker   # dockyard alone
    .venv/bin/python bench/publish_ports.py --smoke       # 2 runs, dockyard only: for the test suite

Comparison 4 of issue 7 (Port ranges) and the publishing scale of issue 3
("Scale and speed"). As root. Each tool works in a throwaway lab of its own
(demo/netlab.py: a host namespace, an upstream namespace on TEST-NET
addresses; the root namespace is never touched): dockyardd with
--host-netns, and a private dockerd (bench/_reference.py, Docker 20.10 with
its default userland proxy) inside its lab's host namespace, running a
busybox-static image imported locally. Both daemons are up before timing.

a. Start time: the whole command `run -d --name N [-p SPEC] IMAGE sleep`
   with no port, one port (`-p 9000:9000`), 101 ports
   (`-p 9000-9100:9000-9100`) and 1,000 ports (`-p 10000-10999:10000-10999`),
   then `rm -f N` (timed too). Every round runs every case of every tool
   once: cases rotated by one each round, and within a case the tools
   alternate (A B, then B A). Docker's 1,000-port case starts about 2,000
   docker-proxy processes and takes minutes, so it runs only in the first
   --docker-big-runs rounds (and not at all when the machine lacks the
   memory or PIDs for it, which the report says).
b. While the container runs: the processes the tool added beyond idle,
   leaving out the container's own (dockyard: dockyardd, the shim and their
   descendants; Docker: every process of the private dockerd's mount
   namespace: containerd, the shim, docker-proxy), by name, and the memory
   they added (RSS and PSS sums from /proc/PID/smaps_rollup, running
   against idle just before the start, each read after a 0.3 s settle).
c. dockyard only: the elements of its port maps after each start (one per
   port) and after rm (none), its daemon's added descriptors (a bound
   socket per host port, as docker-proxy's bind, without its process); and
   issue 3's "adding the 1,000th published port costs what the 10th did":
   `run -d -p 18080:80 sleep` of one container timed while another
   container publishes 9 ports, against while another publishes 999, the
   two states alternating round by round.

It prints tables (median with p10-p90), the ratios, the goals as met or not
and, with --json PATH, writes `{"report": ..., "raw": ...}`. Times are
reported, never asserted: the exit status is 0 unless a command failed or
cleanup had to force something (1), or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import Interrupted, Lab, LabError, raise_on_termination  # noqa: E402

from _common import (  # noqa: E402
    BenchError,
    descendants,
    load_average,
    machine,
    machine_line,
    mem_available_mib,
    memory_of,
    process_table,
    ratio,
    rotated,
    summary,
    timed,
)
from _reference import PrivateDocker, rootfs_tar  # noqa: E402
from _report import Goal, Plot, Report, Series, Table  # noqa: E402
from _script import clean_up, exit_status, failure_status, labs_for, write_results  # noqa: E402

IMAGE = "dybench-busybox:latest"
NAME = "pp-range"
SETTLE_S = 0.3  # before reading processes and memory: shims and proxies of a removal finish exiting
GOAL_RANGE_START = 1.2  # issue 7: a 1,000-port range starts within 1.2 times a start with no port
GOAL_NTH_PORT = 1.1  # issue 3's "costs what the 10th did", read as within 10%
# Measured on this machine kind before dockyard existed (issue 7).
REFERENCE = "Docker 20.10 with a 101-port range: 202 processes and 665 MB"
DOCKER_MIB_PER_PORT = 665 / 101  # the reference, until this run has measured its own
MEMORY_MARGIN_MIB = 2048.0  # left free for the machine's other jobs
THREADS_PER_PROXY = 8  # PIDs a docker-proxy takes (its Go threads: 6-8 seen), for the room check


@dataclass(frozen=True)
class PortCase:
    label: str
    ports: int
    spec: str | None  # the -p argument; None: no port

    @property
    def big(self) -> bool:
        return self.ports >= 1000


CASES = (
    PortCase("no port", 0, None),
    PortCase("1 port", 1, "9000:9000"),
    PortCase("101 ports", 101, "9000-9100:9000-9100"),
    PortCase("1,000 ports", 1000, "10000-10999:10000-10999"),
)
# c: the probe's port is the 10th, then the 1,000th published one.
PROBE_SPEC = "18080:80"
BACKGROUNDS = ((9, "20001-20009:20001-20009"), (999, "30001-30999:30001-30999"))


# -- the tools ---------------------------------------------------------------------------


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class Dockyard:
    """dockyard in its lab: what to run, and which processes are its own."""

    name = "dockyard"
    env: dict[str, str] | None = None

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def run_argv(self, cname: str, spec: str | None) -> list[str]:
        publish = ["-p", spec] if spec else []
        return self.lab.dy_cmd("run", "-d", "--name", cname, *publish, "sleep", "3600")

    def rm_argv(self, cname: str) -> list[str]:
        return self.lab.dy_cmd("rm", "-f", cname)

    def container_pid(self, cname: str) -> int:
        state = json.loads(self.lab.dy("inspect", cname).stdout)[0]["State"]
        pid = int(state.get("Pid") or 0)
        if not pid:
            raise BenchError(f"dockyard inspect {cname}: no running process")
        self.lab.remember_pid(pid)
        return pid

    def _pid(self, file: str) -> int | None:
        try:
            return int((self.lab.root / file).read_text().strip())
        except (OSError, ValueError):
            return None

    def processes(self) -> set[int]:
        """dockyardd, the shim and every descendant of either (containers too)."""
        table = process_table()
        found: set[int] = set()
        for pid in (self._pid("dockyardd.pid"), self._pid("shim.pid")):
            if pid is not None and pid in table:
                found |= {pid} | descendants(table, pid)
        return found

    def elements(self) -> int:
        """Elements of both port maps (`publish_any`, `publish_addr`) of `inet dockyard`."""
        total = 0
        for name in ("publish_any", "publish_addr"):
            out = self.lab.in_ns(self.lab.host, "nft", "-j", "list", "map", "inet", "dockyard", name).stdout
            maps = [obj["map"] for obj in json.loads(out)["nftables"] if "map" in obj]
            if not maps:
                raise BenchError(f"`nft -j list map inet dockyard {name}` printed no map")
            total += len(maps[0].get("elem", []))
        return total

    def daemon_fds(self) -> int:
        pid = self._pid("dockyardd.pid")
        try:
            return len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return 0


class Docker:
    """The private dockerd: what to run, and which processes are its own."""

    name = "docker"

    def __init__(self, docker: PrivateDocker) -> None:
        self.docker = docker
        self.env: dict[str, str] | None = docker.env

    def run_argv(self, cname: str, spec: str | None) -> list[str]:
        publish = ["-p", spec] if spec else []
        return self.docker.argv("run", "-d", "--name", cname, *publish, IMAGE, "sleep", "3600")

    def rm_argv(self, cname: str) -> list[str]:
        return self.docker.argv("rm", "-f", cname)

    def container_pid(self, cname: str) -> int:
        pid = int(self.docker.docker("inspect", "-f", "{{.State.Pid}}", cname).strip() or 0)
        if not pid:
            raise BenchError(f"docker inspect {cname}: no running process")
        return pid

    def processes(self) -> set[int]:
        return set(self.docker.processes())


Tool = Dockyard | Docker


# -- a and b: one start, its processes and memory ------------------------------------------


@dataclass
class Sample:
    """One start of one case by one tool, and what it added while it ran."""

    round: int  # -1 for a warm-up
    start_ms: float
    rm_ms: float
    processes: int  # the tool's, while it runs, the container's own left out
    added: int  # beyond idle
    added_by_name: dict[str, int]
    rss_mib: float  # of the tool's processes while it runs
    pss_mib: float
    rss_added_mib: float
    pss_added_mib: float
    elements: int | None = None  # dockyard: port map elements while it runs
    elements_after_rm: int | None = None
    fds_added: int | None = None  # dockyard: dockyardd's added descriptors (host-port holds)


def start_once(tool: Tool, case: PortCase, round_no: int) -> Sample:
    time.sleep(SETTLE_S)
    idle = tool.processes()
    idle_names = Counter(process_name(p) for p in idle)
    idle_mem = memory_of(idle)
    fds_before = tool.daemon_fds() if isinstance(tool, Dockyard) else 0
    timeout = 1800 if case.big and isinstance(tool, Docker) else 120
    what = f"{tool.name} run -d {case.label}"
    start_ms = timed(tool.run_argv(NAME, case.spec), what, timeout=timeout, env=tool.env)
    try:
        cpid = tool.container_pid(NAME)
        time.sleep(SETTLE_S)
        table = process_table()
        own = {cpid} | descendants(table, cpid)
        running = tool.processes() - own
        names = Counter(process_name(p) for p in running)
        mem = memory_of(running)
        elements = fds_added = None
        if isinstance(tool, Dockyard):
            elements = tool.elements()
            fds_added = tool.daemon_fds() - fds_before
    finally:
        rm_ms = timed(tool.rm_argv(NAME), f"{tool.name} rm -f {case.label}", timeout=timeout, env=tool.env)
    added_by_name = {k: v for k, v in sorted((names - idle_names).items())}
    return Sample(
        round=round_no,
        start_ms=start_ms,
        rm_ms=rm_ms,
        processes=len(running),
        added=len(running) - len(idle),
        added_by_name=added_by_name,
        rss_mib=mem["rss_mib"],
        pss_mib=mem["pss_mib"],
        rss_added_mib=mem["rss_mib"] - idle_mem["rss_mib"],
        pss_added_mib=mem["pss_mib"] - idle_mem["pss_mib"],
        elements=elements,
        elements_after_rm=tool.elements() if isinstance(tool, Dockyard) else None,
        fds_added=fds_added,
    )


def pids_in_use() -> int:
    """Threads on the machine: each takes a PID."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def no_room_for(case: PortCase, samples: dict[tuple[str, str], list[Sample]]) -> str | None:
    """Why Docker's big case cannot run now (memory or PIDs for its proxies), or None."""
    # Per port: what the largest smaller case added beyond a container with no port (its shim).
    smaller = [c for c in CASES if 0 < c.ports < case.ports and samples[("docker", c.label)]]
    base = [s.rss_added_mib for s in samples[("docker", CASES[0].label)]]
    per_port = DOCKER_MIB_PER_PORT
    if smaller and base:
        largest = smaller[-1]
        added = max(s.rss_added_mib for s in samples[("docker", largest.label)])
        per_port = max(0.0, added - min(base)) / largest.ports
    need = case.ports * per_port + MEMORY_MARGIN_MIB
    available = mem_available_mib()
    if available < need:
        return (
            f"about {need:,.0f} MiB needed ({per_port:.1f} MiB a port, and a margin), {available:,.0f} free"
        )
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    need_pids = case.ports * 2 * THREADS_PER_PROXY
    if pid_max - pids_in_use() < need_pids:
        return f"about {need_pids:,} PIDs needed for its docker-proxy threads, pid_max is {pid_max:,}"
    return None


def measure_starts(
    tools: list[Tool], runs: int, warmup: int, big_runs: int, notes: list[str]
) -> tuple[dict[tuple[str, str], list[Sample]], list[list[str]]]:
    samples: dict[tuple[str, str], list[Sample]] = {(t.name, c.label): [] for t in tools for c in CASES}
    skipped: dict[str, str] = {}

    def wanted(tool: Tool, case: PortCase, round_no: int) -> bool:
        if not (case.big and isinstance(tool, Docker)):
            return True
        if round_no < 0 or round_no >= big_runs or case.label in skipped:
            return False
        why = no_room_for(case, samples)
        if why:
            skipped[case.label] = why
            notes.append(f"docker {case.label}: not run from round {round_no + 1} on: {why}")
        return why is None

    for _ in range(warmup):
        for case in CASES:
            for tool in tools:
                if wanted(tool, case, -1):
                    start_once(tool, case, -1)
    orders: list[list[str]] = []
    for r in range(runs):
        order: list[str] = []
        for case in rotated(CASES, r):
            for tool in rotated(tools, r):
                if wanted(tool, case, r):
                    print(f"  round {r + 1}/{runs}: {tool.name} {case.label} ...", flush=True)
                    samples[(tool.name, case.label)].append(start_once(tool, case, r))
                    order.append(f"{tool.name} {case.label}")
        orders.append(order)
    return samples, orders


# -- c: the 10th against the 1,000th published port (dockyard) ---------------------------------


@dataclass
class NthPort:
    others: int  # ports published by another container while the probe starts
    spec: str
    start_ms: list[float] = field(default_factory=list)
    rm_ms: list[float] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)  # with the probe running

    @property
    def label(self) -> str:
        return f"{self.others + 1:,}th port ({self.others:,} others published)"

    @property
    def holder(self) -> str:
        return f"pp-others-{self.others}"


def measure_nth_port(dy: Dockyard, runs: int, warmup: int) -> tuple[list[NthPort], list[list[str]]]:
    states = [NthPort(n, spec) for n, spec in BACKGROUNDS]
    current: NthPort | None = None
    orders: list[list[str]] = []
    lab = dy.lab
    try:
        for r in range(-warmup, runs):
            order = rotated(states, r) if r >= 0 else states
            for state in order:
                if current is not state:
                    if current is not None:
                        lab.dy("rm", "-f", current.holder, timeout=120)
                        current = None
                    lab.dy("run", "-d", "--name", state.holder, "-p", state.spec, "sleep", "3600")
                    current = state
                    dy.container_pid(state.holder)
                start_ms = timed(dy.run_argv("pp-probe", PROBE_SPEC), f"dockyard run -d ({state.label})")
                try:
                    dy.container_pid("pp-probe")
                    elements = dy.elements()
                finally:
                    rm_ms = timed(dy.rm_argv("pp-probe"), "dockyard rm -f pp-probe")
                if r >= 0:
                    state.start_ms.append(start_ms)
                    state.rm_ms.append(rm_ms)
                    state.elements.append(elements)
            if r >= 0:
                orders.append([s.label for s in order])
    finally:
        if current is not None:
            lab.dy("rm", "-f", current.holder, check=False, timeout=120)
    return states, orders


# -- the report ------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def cell(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    s = summary(values)
    return f"{s['median']:,.{digits}f} ({s['p10']:,.0f}-{s['p90']:,.0f})"


def build_report(
    samples: dict[tuple[str, str], list[Sample]],
    nth: list[NthPort],
    tools: list[str],
    runs: int,
    big_runs: int,
    notes: list[str],
    info: dict[str, object],
) -> Report:
    def of(tool: str, label: str, attr: str) -> list[float]:
        return [float(getattr(s, attr)) for s in samples.get((tool, label), [])]

    def m(tool: str, label: str, attr: str = "start_ms") -> float:
        return med(of(tool, label, attr))

    def has(tool: str, label: str) -> bool:
        return bool(samples.get((tool, label)))

    others = tools[1:]
    none_label = CASES[0].label

    # a: start and rm times
    columns = ["case", *(f"{t} start ms (p10-p90)" for t in tools)]
    columns += [f"{t} / dockyard" for t in others]
    columns += [f"{t} / its no-port start" for t in tools]
    columns += [f"{t} rm -f ms" for t in tools] + ["runs"]
    rows = []
    for c in CASES:
        row = [f"run -d {'-p ' + c.spec if c.spec else '(no -p)'}"]
        row += [cell(of(t, c.label, "start_ms")) for t in tools]
        row += [
            f"{ratio(m(t, c.label), m('dockyard', c.label)):.2f}x" if has(t, c.label) else "-" for t in others
        ]
        row += [f"{ratio(m(t, c.label), m(t, none_label)):.2f}x" if has(t, c.label) else "-" for t in tools]
        row += [f"{m(t, c.label, 'rm_ms'):,.0f}" if has(t, c.label) else "-" for t in tools]
        row.append(" / ".join(str(len(samples.get((t, c.label), []))) for t in tools))
        rows.append(row)
    start_table = Table("a. start time, whole command, then rm -f (median, p10-p90)", columns, rows)

    # b: processes and memory added while it runs
    def by_name(tool: str, label: str) -> str:
        got = samples.get((tool, label), [])
        if not got:
            return "-"
        names: Counter[str] = Counter()
        for s in got:
            names.update(s.added_by_name)
        # The median count of each name over the runs; names seen in fewer than half are left out.
        keep = {n: statistics.median(s.added_by_name.get(n, 0) for s in got) for n in names}
        return ", ".join(f"{n} {v:g}" for n, v in sorted(keep.items(), key=lambda kv: -kv[1]) if v) or "none"

    proc_columns = ["case", *(f"{t} added" for t in tools), *(f"{t} added by name" for t in tools)]
    proc_columns += [f"{t} total" for t in tools] + [f"{t} / dockyard total" for t in others]
    proc_rows = []
    mem_columns = ["case"]
    for t in tools:
        mem_columns += [f"{t} RSS added", f"{t} PSS added"]
    mem_columns += [f"{t} PSS total" for t in tools] + [f"{t} / dockyard PSS total" for t in others]
    mem_rows = []
    for c in CASES:
        lbl = c.label
        proc_rows.append(
            [
                lbl,
                *(f"{m(t, lbl, 'added'):g}" if has(t, lbl) else "-" for t in tools),
                *(by_name(t, lbl) for t in tools),
                *(f"{m(t, lbl, 'processes'):g}" if has(t, lbl) else "-" for t in tools),
                *(
                    f"{ratio(m(t, lbl, 'processes'), m('dockyard', lbl, 'processes')):.1f}x"
                    if has(t, lbl)
                    else "-"
                    for t in others
                ),
            ]
        )
        row = [lbl]
        for t in tools:
            row += [
                f"{m(t, lbl, 'rss_added_mib'):+,.1f}" if has(t, lbl) else "-",
                f"{m(t, lbl, 'pss_added_mib'):+,.1f}" if has(t, lbl) else "-",
            ]
        row += [f"{m(t, lbl, 'pss_mib'):,.1f}" if has(t, lbl) else "-" for t in tools]
        row += [
            f"{ratio(m(t, lbl, 'pss_mib'), m('dockyard', lbl, 'pss_mib')):.1f}x" if has(t, lbl) else "-"
            for t in others
        ]
        mem_rows.append(row)
    proc_table = Table(
        "b. processes the tool added while the container runs, its own process left out (median)",
        proc_columns,
        proc_rows,
    )
    mem_table = Table(
        "b. memory of the tool's processes while the container runs, MiB: "
        "added beyond idle, and total (median)",
        mem_columns,
        mem_rows,
    )

    # c: dockyard's maps and holds, and the nth port
    dy_rows = [
        [
            c.label,
            f"{max(of('dockyard', c.label, 'elements')):g}" if has("dockyard", c.label) else "-",
            f"{max(of('dockyard', c.label, 'elements_after_rm')):g}" if has("dockyard", c.label) else "-",
            f"{m('dockyard', c.label, 'fds_added'):+g}" if has("dockyard", c.label) else "-",
        ]
        for c in CASES
    ]
    dy_table = Table(
        "c. dockyard: port map elements while it runs (max) and after rm (max), "
        "dockyardd's added descriptors (median)",
        ["case", "map elements", "after rm", "daemon fds"],
        dy_rows,
    )
    tenth, thousandth = nth
    nth_ratio = ratio(med(thousandth.start_ms), med(tenth.start_ms))
    paired = statistics.median(a / b for a, b in zip(thousandth.start_ms, tenth.start_ms, strict=True))
    nth_rows = [
        [s.label, cell(s.start_ms), f"{med(s.rm_ms):,.0f}", f"{max(s.elements):g}", str(len(s.start_ms))]
        for s in nth
    ]
    nth_rows.append(
        [
            "1,000th / 10th",
            f"{nth_ratio:.2f}x (paired {paired:.2f}x)",
            f"{ratio(med(thousandth.rm_ms), med(tenth.rm_ms)):.2f}x",
            "-",
            "-",
        ]
    )
    nth_table = Table(
        f"c. dockyard: `run -d -p {PROBE_SPEC} sleep` while another container publishes 9 or 999 ports",
        ["probe's port", "start ms (p10-p90)", "rm -f ms", "map elements", "runs"],
        nth_rows,
    )

    # goals
    big = CASES[-1].label
    dy_added = of("dockyard", big, "added")
    dy_ratio = ratio(m("dockyard", big), m("dockyard", none_label))
    no_port_by_round = {s.round: s.start_ms for s in samples.get(("dockyard", none_label), [])}
    dy_paired = med(
        [
            s.start_ms / no_port_by_round[s.round]
            for s in samples.get(("dockyard", big), [])
            if s.round in no_port_by_round
        ]
    )
    if has("docker", big):
        side_proc = f"docker {m('docker', big, 'added'):g} processes added ({by_name('docker', big)})"
        side_start = (
            f"docker {ratio(m('docker', big), m('docker', none_label)):.2f}x its no-port start "
            f"({m('docker', big):,.0f} against {m('docker', none_label):,.0f} ms); "
            f"docker / dockyard {ratio(m('docker', big), m('dockyard', big)):.1f}x"
        )
    else:
        side_proc = side_start = "docker not measured"
    goals = [
        Goal(
            "A 1,000-port range: no extra process",
            bool(dy_added) and max(dy_added) == 0,
            f"{max(dy_added, default=0):g} processes added (the most of {len(dy_added)} run(s))",
            side_proc,
        ),
        Goal(
            f"A 1,000-port range starts within {GOAL_RANGE_START:g} times a start with no port",
            dy_ratio <= GOAL_RANGE_START,
            f"{dy_ratio:.2f}x, paired {dy_paired:.2f}x "
            f"({m('dockyard', big):.1f} against {m('dockyard', none_label):.1f} ms)",
            side_start,
        ),
        Goal(
            f"issue 3: the 1,000th published port costs what the 10th did (within {GOAL_NTH_PORT - 1:.0%})",
            nth_ratio <= GOAL_NTH_PORT,
            f"{nth_ratio:.2f}x ({med(thousandth.start_ms):.1f} against {med(tenth.start_ms):.1f} ms)",
            "dockyard only",
        ),
    ]

    # plots
    def line(tool: str) -> Series:
        got = [c for c in CASES if has(tool, c.label)]
        return Series(
            tool,
            [c.ports for c in got],
            [m(tool, c.label) for c in got],
            [summary(of(tool, c.label, "start_ms"))["p10"] for c in got],
            [summary(of(tool, c.label, "start_ms"))["p90"] for c in got],
        )

    def bars(tool: str, attr: str) -> Series:
        got = [c for c in CASES if has(tool, c.label)]
        return Series(tool, [c.label for c in got], [m(tool, c.label, attr) for c in got])

    plots = [
        Plot(
            "publish_ports_start",
            "run -d with N published ports: whole command (median, p10-p90)",
            "line",
            "published ports",
            "ms",
            [line(t) for t in tools],
            logy=len(tools) > 1,
        ),
        Plot(
            "publish_ports_processes",
            "processes added while the container runs, its own left out (median)",
            "bar",
            "published ports",
            "processes",
            [bars(t, "added") for t in tools],
        ),
        Plot(
            "publish_ports_memory",
            "PSS added by the tool's processes while the container runs (median)",
            "bar",
            "published ports",
            "MiB",
            [bars(t, "pss_added_mib") for t in tools],
        ),
        Plot(
            "publish_ports_nth",
            "dockyard: one more published port, the 10th against the 1,000th (median, p10-p90)",
            "bar",
            "",
            "ms",
            [
                Series(
                    "dockyard",
                    [s.label for s in nth],
                    [med(s.start_ms) for s in nth],
                    [summary(s.start_ms)["p10"] for s in nth],
                    [summary(s.start_ms)["p90"] for s in nth],
                )
            ],
        ),
    ]
    docker_runs = (
        f" Docker's 1,000-port case ({2 * 1000:,} docker-proxy processes expected, minutes a start) "
        f"runs only in the first {big_runs} round(s), without warm-up."
        if "docker" in tools
        else ""
    )
    return Report(
        key="publish_ports",
        title="4. Port ranges",
        method=(
            "Whole-command wall time of `run -d --name N [-p SPEC] IMAGE sleep 3600` with no port, 1, 101 "
            f"and 1,000 published ports, then `rm -f N`, with the daemon already up; {runs} round(s), cases "
            "rotated by one each round and the tools alternating within each case; ratios are of the "
            'medians, "paired" is the median of the per-round ratios.' + docker_runs + " "
            "While the container runs (after a 0.3 s settle): the tool's processes beyond idle, its "
            "container's own left out (dockyard: dockyardd, the shim and their descendants; Docker: every "
            "process in the private dockerd's mount namespace), and their RSS and PSS sums against idle "
            "just before the start; kernel memory (sockets, nft, conntrack) is in neither. Each tool in a "
            "throwaway host namespace of its own; Docker 20.10 with its default userland proxy runs a "
            "locally imported busybox-static image, dockyard the host's sleep. The nth-port figure times "
            f"one container's `run -d -p {PROBE_SPEC}` while another container publishes 9 ports against "
            "while another publishes 999, the two states alternating round by round. " + machine_line(info)
        ),
        tables=[start_table, proc_table, mem_table, dy_table, nth_table],
        goals=goals,
        notes=[*notes, f"reference figures measured on this machine kind earlier: {REFERENCE}"],
        plots=plots,
    )


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="rounds: timed starts per case and tool (default 10)")
    p.add_argument(
        "--docker-big-runs",
        type=int,
        default=3,
        help="rounds in which Docker's 1,000-port case runs, the first ones (default 3)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--no-docker", action="store_true", help="do not measure Docker")
    p.add_argument("--smoke", action="store_true", help="2 rounds, no warm-up, dockyard only")
    p.add_argument("--json", metavar="PATH", help="also write the report and raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.no_docker = 2, 0, True
    if args.runs < 1 or args.warmup < 0 or args.docker_big_runs < 0:
        p.error("--runs must be at least 1, --warmup and --docker-big-runs at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("publish_ports: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    labs, notes = labs_for([("docker", args.no_docker, PrivateDocker)])
    docker: PrivateDocker | None = None
    status = 0
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="dybench-ports-"))
    try:
        for lab in labs.values():
            lab.setup()
        labs["dockyard"].start_daemon()
        dy = Dockyard(labs["dockyard"])
        tools: list[Tool] = [dy]
        if "docker" in labs:
            docker = PrivateDocker(labs["docker"].host, work / "docker")
            docker.start()
            docker.import_image(rootfs_tar(work / "image.tar"), IMAGE)
            tools.append(Docker(docker))
            notes.append(f"docker: {docker.version()}, a private dockerd in its lab's host namespace")
        print(
            f"starting containers with {', '.join(c.label for c in CASES)}: {args.warmup} warm-up and "
            f"{args.runs} timed round(s), {' and '.join(t.name for t in tools)} ...",
            flush=True,
        )
        samples, orders = measure_starts(tools, args.runs, args.warmup, args.docker_big_runs, notes)
        print("timing the 10th against the 1,000th published port (dockyard) ...", flush=True)
        nth, nth_orders = measure_nth_port(dy, args.runs, args.warmup)
        info = machine(load_before)
        names = [t.name for t in tools]
        report = build_report(samples, nth, names, args.runs, args.docker_big_runs, notes, info)
        print(report.text(), flush=True)
        if args.json:
            raw = {
                "runs": args.runs,
                "warmup": args.warmup,
                "docker_big_runs": args.docker_big_runs,
                "machine": info,
                "cases": [asdict(c) for c in CASES],
                "starts": [
                    {
                        "tool": tool,
                        "case": label,
                        "samples": [asdict(s) for s in got],
                        **({"start_ms": summary([s.start_ms for s in got])} if got else {}),
                    }
                    for (tool, label), got in samples.items()
                ],
                "rounds": orders,
                "nth_port": {
                    "probe": PROBE_SPEC,
                    "states": [{**asdict(s), "label": s.label} for s in nth],
                    "rounds": nth_orders,
                },
            }
            write_results(args.json, report, raw)
    except (BenchError, LabError, KeyboardInterrupt, Interrupted) as e:
        status = failure_status("publish_ports", e)
    finally:
        problems += clean_up([docker], labs.values(), work)
    return exit_status("publish_ports", status, problems)


if __name__ == "__main__":
    sys.exit(main())
