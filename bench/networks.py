"""User-defined networks (issue 4): network create/rm time, and address allocation as a /16 fills.

    .venv/bin/python bench/networks.py [--runs N] [--allocations N] [--repeats N] [--json PATH]
    .venv/bin/python bench/networks.py --smoke     # tiny counts: for the test suite

1. `dockyard network create NAME` and `dockyard network rm NAME`, each the
   whole command's wall time, with dockyardd already running: as root, in a
   throwaway lab (demo/netlab.py: a host namespace where dockyardd runs, an
   upstream namespace on TEST-NET addresses, a fresh $ROOT; the root
   namespace is never touched and everything is removed at the end, also on
   Ctrl-C). Without root this part is left out and said so.
2. In process, without root or kernel: the time to give the n-th address of
   a /16, from the 1st to the 60,000th, on a Store in a temporary file. Each
   allocation does what Endpoints.record (src/dockyard/engine/endpoints.py) does in
   one store transaction: the endpoint count of the network (its check
   against the bridge's port limit), next-fit `AddressAllocator.allocate`
   with `store.address_used` and `store.ip_cursor`, `set_ip_cursor`, and
   `add_endpoint` (the lease). Endpoints.record itself refuses more than
   1,023 endpoints on one network (a Linux bridge holds 1,024 ports), so the
   same steps are timed here without that refusal; Endpoints.record is also
   timed directly up to 1,000 endpoints, as a check that the copy is faithful.
   Reported: the median cost around the 10th allocation (the 5th to the
   15th, and the first 100) against the same around the last one, and the
   ratio (issue 4: "the 60,000th address of a /16 costs about what the 10th
   did").

DNS answer latency (issue 4 too) is measured by bench/dns_latency.py and not
repeated here. Times are reported, never asserted: the exit status is 0
unless a command failed or something had to be cleaned up by force (1), or
the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import Interrupted, Lab, LabError, raise_on_termination, signals_ignored  # noqa: E402

from dockyard.model import DriverName, Endpoint, Network  # noqa: E402
from dockyard.policy import ipam  # noqa: E402
from dockyard.store import Store  # noqa: E402

SUBNET = ipaddress.IPv4Network("10.88.0.0/16")  # in process only: no kernel ever sees it
GATEWAY = ipaddress.IPv4Address("10.88.0.1")
ENGINE_ALLOCATIONS = 1000  # Endpoints.record refuses the 1,024th endpoint of a bridge
NEAR = (5, 15)  # "around the 10th": allocations 5 to 15
MILESTONES = (1000, 10000)


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


# -- 1. network create / rm ----------------------------------------------------


def timed(argv: list[str], what: str) -> float:
    """Wall time of the whole command in milliseconds; a BenchError when it fails."""
    start = time.perf_counter_ns()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: did not finish within 60 s") from e
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if r.returncode != 0:
        raise BenchError(f"{what}: `{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")
    return elapsed


def measure_create_rm(lab: Lab, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    create_ms: list[float] = []
    rm_ms: list[float] = []
    for i in range(warmup + runs):
        name = f"bench-net-{i}"
        c = timed(lab.dy_cmd("network", "create", name), f"network create {name}")
        r = timed(lab.dy_cmd("network", "rm", name), f"network rm {name}")
        if i >= warmup:
            create_ms.append(c)
            rm_ms.append(r)
    return create_ms, rm_ms


def create_rm_report(create_ms: list[float], rm_ms: list[float]) -> list[str]:
    head = f"{'command (ms)':<36} {'median':>7} {'p10':>7} {'p90':>7} {'min':>7} {'max':>7}"
    lines = [
        f"network create / rm: whole command, dockyardd already up, {len(create_ms)} runs",
        "",
        head,
        "-" * len(head),
    ]
    both = [a + b for a, b in zip(create_ms, rm_ms, strict=True)]
    for label, ms in (
        ("dockyard network create NAME", create_ms),
        ("dockyard network rm NAME", rm_ms),
        ("create + rm", both),
    ):
        s = summary(ms)
        lines.append(
            f"{label:<36} " + " ".join(f"{s[k]:7.1f}" for k in ("median", "p10", "p90", "min", "max"))
        )
    return lines


# -- 2. address allocation in process ------------------------------------------


@dataclass
class Fill:
    """Per-allocation costs in microseconds, index 0 being the 1st allocation."""

    count_us: list[float] = field(default_factory=list)  # the endpoint-count check
    allocate_us: list[float] = field(default_factory=list)  # cursor read + AddressAllocator.allocate
    lease_us: list[float] = field(default_factory=list)  # set_ip_cursor + add_endpoint + COMMIT
    total_us: list[float] = field(default_factory=list)  # the whole transaction
    addresses: list[str] = field(default_factory=list)


def new_store(directory: Path) -> tuple[Store, Network]:
    store = Store(directory / f"{secrets.token_hex(4)}.db")
    nid = secrets.token_hex(32)
    network = Network(
        id=nid,
        name="bench16",
        driver=DriverName.BRIDGE,
        subnet=SUBNET,
        gateway=GATEWAY,
        bridge=f"dy-{nid[:12]}",
    )
    store.add_network(network)
    return store, network


def mac_for(address: ipaddress.IPv4Address) -> str:
    # kernel.netlink.mac_for's scheme (02:42 + the address), without importing pyroute2.
    return "02:42:" + ":".join(f"{b:02x}" for b in address.packed)


@dataclass(frozen=True)
class Lease:
    """One allocation's costs in microseconds, and what it gave."""

    count_us: float
    allocate_us: float
    lease_us: float
    total_us: float
    address: ipaddress.IPv4Address
    endpoint_id: str
    cursor_before: ipaddress.IPv4Address | None

    @property
    def allocate_and_lease_us(self) -> float:
        return self.allocate_us + self.lease_us


def lease_like_record(store: Store, nid: str, allocator: ipam.AddressAllocator, serial: int) -> Lease:
    """One allocation, the steps of Endpoints.record in one transaction, timed."""

    def used(a: ipaddress.IPv4Address) -> bool:
        return store.address_used(nid, a)

    clock = time.perf_counter_ns
    # Endpoints.record names the host end "veth" + 7 hex of a random id: 28 bits, so
    # among 60,000 leases some names would clash (UNIQUE host_ifname). Here the 7 hex
    # are the allocation's number instead, to time the address and not that clash.
    eid = f"{serial:07x}" + secrets.token_hex(32)[7:]
    t0 = clock()
    with store.transaction():
        store.endpoint_count(nid)
        t1 = clock()
        cursor = store.ip_cursor(nid)
        address = allocator.allocate(used, cursor)
        t2 = clock()
        store.set_ip_cursor(nid, address)
        store.add_endpoint(
            Endpoint(
                id=eid,
                container_id=secrets.token_hex(32),
                network_id=nid,
                ifname="eth0",
                address=ipaddress.IPv4Interface(f"{address}/{SUBNET.prefixlen}"),
                gateway=GATEWAY,
                mac=mac_for(address),
                host_ifname="veth" + eid[:7],
            )
        )
    t3 = clock()
    return Lease((t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3, (t3 - t0) / 1e3, address, eid, cursor)


def unlease(store: Store, nid: str, lease: Lease) -> None:
    """Undo one lease: the endpoint goes and the cursor goes back, so the next gives the same address."""
    with store.transaction():
        store.delete_endpoint(lease.endpoint_id)
        if lease.cursor_before is not None:
            store.set_ip_cursor(nid, lease.cursor_before)
        else:
            store._q("UPDATE networks SET ip_cursor=NULL WHERE id=?", (nid,))


def fill_like_record(store: Store, network: Network, count: int) -> Fill:
    """`count` allocations, each the steps of Endpoints.record in one transaction, timed."""
    fill = Fill()
    allocator = ipam.AddressAllocator(SUBNET, [GATEWAY], None)
    for i in range(count):
        lease = lease_like_record(store, network.id, allocator, i)
        fill.count_us.append(lease.count_us)
        fill.allocate_us.append(lease.allocate_us)
        fill.lease_us.append(lease.lease_us)
        fill.total_us.append(lease.total_us)
        fill.addresses.append(str(lease.address))
    return fill


@dataclass
class Steady:
    """Part 3: the 10th and the last lease of the same states, given alternately."""

    near_held: int
    far_held: int
    rounds: int
    near: list[Lease] = field(default_factory=list)
    far: list[Lease] = field(default_factory=list)

    def median(self, which: str, attr: str) -> float:
        leases = self.near if which == "near" else self.far
        return statistics.median(getattr(x, attr) for x in leases)

    def ratio(self, attr: str) -> float:
        return self.median("far", attr) / self.median("near", attr)


def measure_steady(directory: Path, far_store: Store, far_network: Network, rounds: int) -> Steady:
    """Alternate one lease on a network of NEAR[1]-1 leases with one on `far_store`'s full network."""
    allocator = ipam.AddressAllocator(SUBNET, [GATEWAY], None)
    held = far_store.endpoint_count(far_network.id)
    # The filled network less its last lease: each round gives the address that one had.
    (last,) = far_store._q(
        "SELECT id FROM endpoints WHERE network_id=? ORDER BY rowid DESC LIMIT 1", (far_network.id,)
    )
    previous = far_store._q(
        "SELECT address FROM endpoints WHERE network_id=? ORDER BY rowid DESC LIMIT 1 OFFSET 1",
        (far_network.id,),
    )
    with far_store.transaction():
        far_store.delete_endpoint(last[0])
        far_store.set_ip_cursor(far_network.id, ipaddress.IPv4Address(previous[0][0]))
    near_store, near_network = new_store(directory)
    try:
        for i in range(10 - 1):
            lease_like_record(near_store, near_network.id, allocator, i)
        result = Steady(near_held=9, far_held=held - 1, rounds=rounds)
        sides = (("near", near_store, near_network), ("far", far_store, far_network))
        for r in range(rounds):
            for which, store, network in sides if r % 2 else sides[::-1]:
                lease = lease_like_record(store, network.id, allocator, 1 << 24 | r)
                (result.near if which == "near" else result.far).append(lease)
                unlease(store, network.id, lease)
    finally:
        near_store.close()
    return result


def fill_with_engine(store: Store, network: Network, count: int) -> tuple[list[float], str]:
    """`count` calls of Endpoints.record itself (no kernel: record does none), timed in microseconds."""
    # Imported here: dockyard.engine.endpoints brings in the kernel layer (pyroute2), which part 2 needs not.
    from dockyard.engine.endpoints import Endpoints
    from dockyard.kernel import Kernel

    # record() touches neither the kernel nor the drivers when no port is published.
    endpoints = Endpoints(store, cast(Kernel, None), {})
    times: list[float] = []
    last = ""
    try:
        for _ in range(count):
            t0 = time.perf_counter_ns()
            endpoint, _bindings = endpoints.record(secrets.token_hex(32), network, "eth0")
            times.append((time.perf_counter_ns() - t0) / 1e3)
            last = str(endpoint.address.ip)
    finally:
        endpoints.close()
    return times, last


def window(values_per_fill: list[list[float]], first: int, last: int) -> list[float]:
    """Allocations first..last (1-based, inclusive) of every fill, pooled."""
    return [v for values in values_per_fill for v in values[first - 1 : last]]


@dataclass
class AllocationResult:
    allocations: int
    repeats: int
    fills: list[Fill]
    engine_us: list[list[float]]
    engine_last_address: str
    windows: dict[str, dict[str, float]]
    ratios: dict[str, float]
    steady: Steady


def measure_allocations(count: int, repeats: int, engine_count: int, steady_rounds: int) -> AllocationResult:
    fills: list[Fill] = []
    engine_us: list[list[float]] = []
    last_address = ""
    steady: Steady | None = None
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-ipam-") as tmp:
        for repeat in range(repeats):
            # The collector's pauses would land on a few allocations at random; it is
            # switched off while timing (the daemon lives with it, but it blurs a window of 11).
            gc.collect()
            gc.disable()
            try:
                store, network = new_store(Path(tmp))
                try:
                    fills.append(fill_like_record(store, network, count))
                    if repeat == repeats - 1:
                        steady = measure_steady(Path(tmp), store, network, steady_rounds)
                finally:
                    store.close()
                store, network = new_store(Path(tmp))
                try:
                    times, last_address = fill_with_engine(store, network, engine_count)
                    engine_us.append(times)
                finally:
                    store.close()
            finally:
                gc.enable()
    near_lo, near_hi = NEAR
    width = near_hi - near_lo
    spans = {"near": (near_lo, near_hi), "first 100": (1, 100)}
    # On the way: the 1,000th (about the most one bridge network holds) and the 10,000th.
    for milestone in MILESTONES:
        if milestone < count - 100:
            spans[f"at {milestone}"] = (milestone - width, milestone)
    spans["far"] = (count - width, count)
    spans["last 100"] = (count - 99, count)
    windows: dict[str, dict[str, float]] = {}
    for name, (lo, hi) in spans.items():
        windows[name] = {
            "from": lo,
            "to": hi,
            "count_us": statistics.median(window([f.count_us for f in fills], lo, hi)),
            "allocate_us": statistics.median(window([f.allocate_us for f in fills], lo, hi)),
            "lease_us": statistics.median(window([f.lease_us for f in fills], lo, hi)),
            "total_us": statistics.median(window([f.total_us for f in fills], lo, hi)),
        }
    e_lo, e_hi = engine_count - (near_hi - near_lo), engine_count
    for name, (lo, hi) in (("engine near", (near_lo, near_hi)), ("engine far", (e_lo, e_hi))):
        windows[name] = {"from": lo, "to": hi, "total_us": statistics.median(window(engine_us, lo, hi))}

    def alloc_and_lease(name: str) -> float:
        return windows[name]["allocate_us"] + windows[name]["lease_us"]

    ratios = {
        "allocate_and_lease_far_over_near": alloc_and_lease("far") / alloc_and_lease("near"),
        "allocate_and_lease_last100_over_first100": alloc_and_lease("last 100")
        / alloc_and_lease("first 100"),
        "allocate_far_over_near": windows["far"]["allocate_us"] / windows["near"]["allocate_us"],
        "with_count_check_far_over_near": windows["far"]["total_us"] / windows["near"]["total_us"],
        "engine_record_far_over_near": windows["engine far"]["total_us"] / windows["engine near"]["total_us"],
    }
    assert steady is not None
    ratios["steady_allocate_and_lease_far_over_near"] = steady.ratio("allocate_and_lease_us")
    ratios["steady_with_count_check_far_over_near"] = steady.ratio("total_us")
    return AllocationResult(count, repeats, fills, engine_us, last_address, windows, ratios, steady)


def nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def allocation_report(result: AllocationResult, goal_ratio: float) -> list[str]:
    n = result.allocations
    w = result.windows
    head = (
        f"{'allocations (median, us)':<30} {'count check':>11} {'allocate':>9} {'lease':>7}"
        f" {'alloc+lease':>11} {'all':>7}"
    )
    lines = [
        f"address allocation in process: a /16 ({SUBNET}), {n:,} leases, {result.repeats} fill(s);",
        "each allocation = Endpoints.record's steps in one SQLite transaction (WAL, a file in /tmp)",
        "",
        head,
        "-" * len(head),
    ]
    for name in (k for k in w if not k.startswith("engine")):
        x = w[name]
        label = f"{nth(int(x['from']))} to {nth(int(x['to']))}"
        lines.append(
            f"{label:<30} {x['count_us']:11.1f} {x['allocate_us']:9.1f} {x['lease_us']:7.1f}"
            f" {x['allocate_us'] + x['lease_us']:11.1f} {x['total_us']:7.1f}"
        )
    last = result.fills[-1].addresses[-1] if result.fills else "?"
    lines.append("")
    lines.append(f"the {nth(n)} address given: {last}")
    r = result.ratios
    lines.append(
        f"{nth(n)} / 10th (allocate + lease): {r['allocate_and_lease_far_over_near']:.2f}x around them, "
        f"{r['allocate_and_lease_last100_over_first100']:.2f}x last 100 / first 100; "
        f"allocate alone {r['allocate_far_over_near']:.2f}x"
    )
    lines.append(
        f"with record's endpoint-count check: {r['with_count_check_far_over_near']:.2f}x "
        "(the store's per-network count: one row read, whatever the number of endpoints)"
    )
    verdict = "met" if r["allocate_and_lease_far_over_near"] <= goal_ratio else "NOT met"
    lines.append(
        f"goal (issue 4) the {nth(n)} address costs about what the 10th did "
        f"(within {goal_ratio:.1f}x): {verdict}"
    )
    st = result.steady
    head = f"{'one more lease, in turn (median, us)':<40} {'count check':>11} {'alloc+lease':>11} {'all':>7}"
    lines += ["", head, "-" * len(head)]
    for which, held in (("near", st.near_held), ("far", st.far_held)):
        lines.append(
            f"{f'the {nth(held + 1)} (network holding {held:,})':<40}"
            f" {st.median(which, 'count_us'):11.1f} {st.median(which, 'allocate_and_lease_us'):11.1f}"
            f" {st.median(which, 'total_us'):7.1f}"
        )
    steady_verdict = "met" if r["steady_allocate_and_lease_far_over_near"] <= goal_ratio else "NOT met"
    lines.append(
        f"{st.rounds:,} rounds each, the two interleaved (the load hits both alike): "
        f"{r['steady_allocate_and_lease_far_over_near']:.2f}x allocate + lease, "
        f"{r['steady_with_count_check_far_over_near']:.2f}x with the count check; goal {steady_verdict}"
    )
    e_far = w["engine far"]
    lines.append(
        f"Endpoints.record itself, {len(result.engine_us[0]):,} endpoints: "
        f"{w['engine near']['total_us']:.1f} us "
        f"around the 10th, {e_far['total_us']:.1f} us around the {nth(int(e_far['to']))} "
        f"({r['engine_record_far_over_near']:.2f}x)"
    )
    return lines


# -- main ----------------------------------------------------------------------


def rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="timed network create + rm pairs (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed pairs first (default 2)")
    p.add_argument(
        "--allocations", type=int, default=60000, help="addresses given in the /16 (default 60000)"
    )
    p.add_argument("--repeats", type=int, default=3, help="fills of the /16, pooled (default 3)")
    p.add_argument(
        "--goal-ratio", type=float, default=1.5, help="'about what the 10th did': within this factor (1.5)"
    )
    p.add_argument(
        "--steady-rounds", type=int, default=2000, help="part 3: leases given on each side (default 2000)"
    )
    p.add_argument("--smoke", action="store_true", help="2 pairs, 2,000 allocations, 1 fill, 100 rounds")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.allocations, args.repeats, args.steady_rounds = 2, 0, 2000, 1, 100
    if args.runs < 1 or args.warmup < 0 or args.repeats < 1 or args.steady_rounds < 1:
        p.error("--runs, --repeats and --steady-rounds must be at least 1, --warmup at least 0")
    if not 200 <= args.allocations <= SUBNET.num_addresses - 3:
        p.error(f"--allocations must be between 200 and {SUBNET.num_addresses - 3}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_termination()
    load_before = load_average()
    status = 0
    problems: list[str] = []
    lab: Lab | None = None
    raw: dict[str, object] = {}
    try:
        if os.geteuid() == 0:
            lab = Lab("dynet")
            lab.setup()
            lab.start_daemon()
            print(f"network create + rm: {args.warmup} warm-up and {args.runs} timed pairs ...", flush=True)
            create_ms, rm_ms = measure_create_rm(lab, args.runs, args.warmup)
            print("\n".join(["", *create_rm_report(create_ms, rm_ms)]), flush=True)
            raw["network_create_ms"] = create_ms
            raw["network_rm_ms"] = rm_ms
            raw["network_create"] = summary(create_ms)
            raw["network_rm"] = summary(rm_ms)
            with signals_ignored():
                problems += lab.teardown()
                problems += [f"left behind: {thing}" for thing in lab.leftovers()]
            lab = None
        else:
            print("network create / rm: not measured (needs root: it makes network namespaces)")
            raw["network_create_ms"] = None

        engine_count = min(ENGINE_ALLOCATIONS, args.allocations)
        print(
            f"\nallocating {args.allocations:,} addresses in a /16, {args.repeats} fill(s), "
            f"and {engine_count:,} through Endpoints.record ...",
            flush=True,
        )
        result = measure_allocations(args.allocations, args.repeats, engine_count, args.steady_rounds)
        print("\n".join(["", *allocation_report(result, args.goal_ratio)]), flush=True)
        print("")
        print("DNS answer latency: measured by bench/dns_latency.py, not repeated here")
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
            raw.update(
                {
                    "machine": host_info,
                    "runs": args.runs,
                    "warmup": args.warmup,
                    "allocations": args.allocations,
                    "repeats": args.repeats,
                    "subnet": str(SUBNET),
                    "fills": [
                        {
                            "count_us": rounded(f.count_us),
                            "allocate_us": rounded(f.allocate_us),
                            "lease_us": rounded(f.lease_us),
                            "total_us": rounded(f.total_us),
                            "last_address": f.addresses[-1],
                        }
                        for f in result.fills
                    ],
                    "engine_record_us": [rounded(times) for times in result.engine_us],
                    "steady": {
                        which: {
                            "held": held,
                            "count_us": rounded([x.count_us for x in leases]),
                            "allocate_and_lease_us": rounded([x.allocate_and_lease_us for x in leases]),
                            "total_us": rounded([x.total_us for x in leases]),
                        }
                        for which, held, leases in (
                            ("near", result.steady.near_held, result.steady.near),
                            ("far", result.steady.far_held, result.steady.far),
                        )
                    },
                    "windows": result.windows,
                    "ratios": result.ratios,
                    "goal_ratio": args.goal_ratio,
                    "goal_met": result.ratios["allocate_and_lease_far_over_near"] <= args.goal_ratio,
                }
            )
            Path(args.json).write_text(json.dumps(raw) + "\n")
            print(f"raw results written to {args.json}")
    except (BenchError, LabError) as e:
        print(f"networks: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nnetworks: interrupted", file=sys.stderr)
        status = 130
    except Interrupted as e:
        print(f"\nnetworks: interrupted ({e})", file=sys.stderr)
        status = 128 + e.signum
    finally:
        if lab is not None:
            with signals_ignored():
                problems += lab.teardown()
                problems += [f"left behind: {thing}" for thing in lab.leftovers()]
    for problem in problems:
        print(f"networks: cleanup: {problem}", file=sys.stderr)
    if problems and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
