"""User-defined networks (issue 4): network create/rm time, and address allocation as a /16 fills.

    .venv/bin/python bench/networks.py [--runs N] [--allocations N] [--repeats N] [--json PATH]
    .venv/bin/python bench/networks.py --smoke     # tiny counts: for the test suite

1. `dockyard network create NAME` and `dockyard network rm NAME`, each the
   whole command's wall time, with dockyardd already running: as root, in a
   throwaway lab (tests/lab.py through demo/netlab.py: a host namespace where
   dockyardd runs, an upstream namespace on TEST-NET addresses, a fresh
   $ROOT; the root namespace is never touched and everything is removed at
   the end, also on Ctrl-C). Without root this part is left out and said so.
2. In process, without root or kernel: the time to give the n-th address of
   a /16, from the 1st to the 60,000th, on a Store in a temporary file. Each
   allocation does what Endpoints.record (src/dockyard/engine/endpoints.py)
   does in one store transaction: the endpoint count of the network (its
   check against the bridge's port limit), next-fit
   `AddressAllocator.allocate` with `store.address_used` and
   `store.ip_cursor`, `set_ip_cursor`, and `add_endpoint` (the lease).
   Endpoints.record itself refuses more than 1,023 endpoints on one network
   (a Linux bridge holds 1,024 ports), so the same steps are timed here
   without that refusal; Endpoints.record is also timed directly up to 1,000
   endpoints, as a check that the copy is faithful. Reported: the median
   cost around the 10th allocation (the 5th to the 15th, and the first 100)
   against the same around the last one, and the ratio (issue 4: "the
   60,000th address of a /16 costs about what the 10th did").
3. The same two states in turn: one more lease on a network holding 9
   against one on the full network (each undone at once), alternating, so
   that the machine's load hits both alike.

DNS answer latency (issue 4 too) is measured by bench/dns_latency.py and not
repeated here. Times are reported, never asserted: the exit status is 0
unless a command failed or something had to be cleaned up by force (1), or
the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from _common import summary, timed
from _report import Goal, Report, Table, times
from _script import Run, main, options
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network
from dockyard.policy import ipam
from dockyard.store import Store

SUBNET = ipaddress.IPv4Network("10.88.0.0/16")  # in process only: no kernel ever sees it
GATEWAY = ipaddress.IPv4Address("10.88.0.1")
ENGINE_ALLOCATIONS = 1000  # Endpoints.record refuses the 1,024th endpoint of a bridge
NEAR = (5, 15)  # "around the 10th": allocations 5 to 15
MILESTONES = (1000, 10000)
PARTS = ("count_us", "allocate_us", "lease_us", "total_us")


# -- 1. network create / rm ----------------------------------------------------


def measure_create_rm(run: Run, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    lab = run.lab(daemon=True)
    create_ms: list[float] = []
    rm_ms: list[float] = []
    for i in range(warmup + runs):
        name = f"bench-net-{i}"
        c = timed(lab.dy_cmd("network", "create", name), f"network create {name}")
        r = timed(lab.dy_cmd("network", "rm", name), f"network rm {name}")
        if i >= warmup:
            create_ms.append(c)
            rm_ms.append(r)
    run.retire(lab)  # no daemon runs while part 2 times in process
    return create_ms, rm_ms


# -- 2. address allocation in process ------------------------------------------


@dataclass(frozen=True)
class Lease:
    """One allocation's costs in microseconds, and what it gave."""

    count_us: float  # the endpoint-count check
    allocate_us: float  # cursor read + AddressAllocator.allocate
    lease_us: float  # set_ip_cursor + add_endpoint + COMMIT
    total_us: float  # the whole transaction
    address: ipaddress.IPv4Address
    endpoint_id: str
    cursor_before: ipaddress.IPv4Address | None

    @property
    def allocate_and_lease_us(self) -> float:
        return self.allocate_us + self.lease_us


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


def lease_like_record(store: Store, nid: str, allocator: ipam.AddressAllocator, serial: int) -> Lease:
    """One allocation, the steps of Endpoints.record in one transaction, timed."""
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
        address = allocator.allocate(lambda a: store.address_used(nid, a), cursor)
        t2 = clock()
        store.set_ip_cursor(nid, address)
        store.add_endpoint(
            Endpoint(
                id=eid,
                owner=EndpointOwner.container(secrets.token_hex(32)),
                network_id=nid,
                ifname="eth0",
                address=ipaddress.IPv4Interface(f"{address}/{SUBNET.prefixlen}"),
                gateway=GATEWAY,
                # kernel.netlink.mac_for's scheme (02:42 + the address), without importing pyroute2.
                mac="02:42:" + ":".join(f"{b:02x}" for b in address.packed),
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


def fill(store: Store, network: Network, count: int) -> list[Lease]:
    """`count` allocations, each the steps of Endpoints.record in one transaction, timed."""
    allocator = ipam.AddressAllocator(SUBNET, [GATEWAY], None)
    return [lease_like_record(store, network.id, allocator, i) for i in range(count)]


def in_turn(directory: Path, full: Store, full_network: Network, rounds: int) -> dict[str, list[Lease]]:
    """One lease on a network of NEAR[1]-1 leases, then one on the full network, and so on."""
    allocator = ipam.AddressAllocator(SUBNET, [GATEWAY], None)
    # The filled network less its last lease: each round gives the address that one had.
    ((last,),) = full._q(
        "SELECT id FROM endpoints WHERE network_id=? ORDER BY rowid DESC LIMIT 1", (full_network.id,)
    )
    ((previous,),) = full._q(
        "SELECT address FROM endpoints WHERE network_id=? ORDER BY rowid DESC LIMIT 1 OFFSET 1",
        (full_network.id,),
    )
    with full.transaction():
        full.delete_endpoint(last)
        full.set_ip_cursor(full_network.id, ipaddress.IPv4Address(previous))
    near, near_network = new_store(directory)
    leases: dict[str, list[Lease]] = {"near": [], "far": []}
    try:
        for i in range(10 - 1):
            lease_like_record(near, near_network.id, allocator, i)
        sides = (("near", near, near_network), ("far", full, full_network))
        for r in range(rounds):
            for which, store, network in sides if r % 2 else sides[::-1]:
                lease = lease_like_record(store, network.id, allocator, 1 << 24 | r)
                leases[which].append(lease)
                unlease(store, network.id, lease)
    finally:
        near.close()
    return leases


def through_engine(store: Store, network: Network, count: int) -> tuple[list[float], str]:
    """`count` calls of Endpoints.record itself (no kernel: record does none), timed in microseconds."""
    # Imported here: dockyard.engine.endpoints brings in the kernel layer (pyroute2), which part 2 needs not.
    from dockyard.engine.endpoints import Endpoints
    from dockyard.kernel import Kernel

    # record() touches neither the kernel nor the drivers when no port is published.
    endpoints = Endpoints(store, cast(Kernel, None), {})
    times_us: list[float] = []
    last = ""
    try:
        for _ in range(count):
            t0 = time.perf_counter_ns()
            owner = EndpointOwner.container(secrets.token_hex(32))
            endpoint, _bindings = endpoints.record(owner, network, "eth0")
            times_us.append((time.perf_counter_ns() - t0) / 1e3)
            last = str(endpoint.address.ip)
    finally:
        endpoints.close()
    return times_us, last


def measure_allocations(args: argparse.Namespace) -> dict[str, Any]:
    """Fills of the /16 (the last one then given in turn), and fills through Endpoints.record."""
    count, engine_count = args.allocations, min(ENGINE_ALLOCATIONS, args.allocations)
    fills: list[list[Lease]] = []
    engine_us: list[list[float]] = []
    steady: dict[str, list[Lease]] = {}
    last_address = ""
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-ipam-") as tmp:
        for repeat in range(args.repeats):
            # The collector's pauses would land on a few allocations at random; it is
            # switched off while timing (the daemon lives with it, but it blurs a window of 11).
            gc.collect()
            gc.disable()
            try:
                store, network = new_store(Path(tmp))
                try:
                    fills.append(fill(store, network, count))
                    if repeat == args.repeats - 1:
                        steady = in_turn(Path(tmp), store, network, args.steady_rounds)
                finally:
                    store.close()
                store, network = new_store(Path(tmp))
                try:
                    us, last_address = through_engine(store, network, engine_count)
                    engine_us.append(us)
                finally:
                    store.close()
            finally:
                gc.enable()
    width = NEAR[1] - NEAR[0]
    spans = {"near": NEAR, "first 100": (1, 100)}
    # On the way: the 1,000th (about the most one bridge network holds) and the 10,000th.
    spans |= {f"at {m}": (m - width, m) for m in MILESTONES if m < count - 100}
    spans |= {"far": (count - width, count), "last 100": (count - 99, count)}
    windows: dict[str, dict[str, float]] = {}
    for name, (lo, hi) in spans.items():
        leases = [x for f in fills for x in f[lo - 1 : hi]]
        windows[name] = {"from": lo, "to": hi}
        windows[name] |= {part: statistics.median(getattr(x, part) for x in leases) for part in PARTS}
    for name, (lo, hi) in (("engine near", NEAR), ("engine far", (engine_count - width, engine_count))):
        us = [t for times_us in engine_us for t in times_us[lo - 1 : hi]]
        windows[name] = {"from": lo, "to": hi, "total_us": statistics.median(us)}

    def both(name: str) -> float:
        return windows[name]["allocate_us"] + windows[name]["lease_us"]

    def in_turn_ratio(attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in steady["far"]) / statistics.median(
            getattr(x, attr) for x in steady["near"]
        )

    ratios = {
        "allocate_and_lease_far_over_near": both("far") / both("near"),
        "allocate_and_lease_last100_over_first100": both("last 100") / both("first 100"),
        "allocate_far_over_near": windows["far"]["allocate_us"] / windows["near"]["allocate_us"],
        "with_count_check_far_over_near": windows["far"]["total_us"] / windows["near"]["total_us"],
        "engine_record_far_over_near": windows["engine far"]["total_us"] / windows["engine near"]["total_us"],
        "steady_allocate_and_lease_far_over_near": in_turn_ratio("allocate_and_lease_us"),
        "steady_with_count_check_far_over_near": in_turn_ratio("total_us"),
    }

    def rounded(values: Any) -> list[float]:
        return [round(v, 1) for v in values]

    return {
        "allocations": count,
        "repeats": args.repeats,
        "subnet": str(SUBNET),
        "fills": [
            {**{k: rounded(getattr(x, k) for x in f) for k in PARTS}, "last_address": str(f[-1].address)}
            for f in fills
        ],
        "engine_record_us": [rounded(us) for us in engine_us],
        "engine_last_address": last_address,
        "steady": {
            which: {
                "held": 9 if which == "near" else count - 1,
                "count_us": rounded(x.count_us for x in leases),
                "allocate_and_lease_us": rounded(x.allocate_and_lease_us for x in leases),
                "total_us": rounded(x.total_us for x in leases),
            }
            for which, leases in steady.items()
        },
        "windows": windows,
        "ratios": ratios,
        "goal_ratio": args.goal_ratio,
        "goal_met": ratios["allocate_and_lease_far_over_near"] <= args.goal_ratio,
    }


# -- the report ----------------------------------------------------------------


def nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def build_report(raw: dict[str, Any]) -> Report:
    tables, goals = [], []
    create_ms, rm_ms = raw.get("network_create_ms"), raw.get("network_rm_ms")
    if create_ms and rm_ms:
        both = [a + b for a, b in zip(create_ms, rm_ms, strict=True)]
        commands = {"network create NAME": create_ms, "network rm NAME": rm_ms, "create + rm": both}
        rows = [
            [label, *(f"{summary(ms)[k]:.1f}" for k in ("median", "p10", "p90", "min", "max"))]
            for label, ms in commands.items()
        ]
        tables.append(
            Table(
                f"network create / rm: whole command (ms), dockyardd already up, {len(create_ms)} runs",
                ["command", "median", "p10", "p90", "min", "max"],
                rows,
            )
        )
    n, w, r, goal = raw["allocations"], raw["windows"], raw["ratios"], raw["goal_ratio"]
    rows = [
        [
            f"{nth(int(x['from']))} to {nth(int(x['to']))}",
            *(f"{x[k]:.1f}" for k in ("count_us", "allocate_us", "lease_us")),
            f"{x['allocate_us'] + x['lease_us']:.1f}",
            f"{x['total_us']:.1f}",
        ]
        for name, x in w.items()
        if not name.startswith("engine")
    ]
    tables.append(
        Table(
            f"address allocation in process, {n:,} leases of a /16 ({SUBNET}), {raw['repeats']} fill(s): "
            "median us per allocation",
            ["allocations", "count check", "allocate", "lease", "alloc+lease", "all"],
            rows,
        )
    )
    steady = raw["steady"]
    tables.append(
        Table(
            f"one more lease, in turn, {len(steady['near']['total_us']):,} rounds each (median us)",
            ["lease", "count check", "alloc+lease", "all"],
            [
                [
                    f"the {nth(s['held'] + 1)} (network holding {s['held']:,})",
                    *(f"{statistics.median(s[k]):.1f}" for k in ("count_us", "allocate_and_lease_us")),
                    f"{statistics.median(s['total_us']):.1f}",
                ]
                for s in steady.values()
            ],
        )
    )
    e_near, e_far = w["engine near"], w["engine far"]
    tables.append(
        Table(
            f"Endpoints.record itself, {len(raw['engine_record_us'][0]):,} endpoints (median us)",
            ["", "around the 10th", f"around the {nth(int(e_far['to']))}", "ratio"],
            [
                [
                    "record",
                    f"{e_near['total_us']:.1f}",
                    f"{e_far['total_us']:.1f}",
                    times(r["engine_record_far_over_near"]),
                ]
            ],
        )
    )
    far_near = r["allocate_and_lease_far_over_near"]
    steady_ratio = r["steady_allocate_and_lease_far_over_near"]
    goals.append(
        Goal(
            f"issue 4: the {nth(n)} address of a /16 costs about what the 10th did (within {goal:.1f}x)",
            far_near <= goal,
            f"{times(far_near)} allocate + lease around them; {times(steady_ratio)} in turn",
            f"last 100 / first 100 {times(r['allocate_and_lease_last100_over_first100'])}; with the count "
            f"check {times(r['with_count_check_far_over_near'])}",
        )
    )
    return Report(
        key="networks",
        title="User networks",
        method=(
            "network create and rm: the whole command, dockyardd up, in a throwaway host namespace. "
            "Address allocation: in process, each allocation Endpoints.record's steps in one SQLite "
            "transaction (WAL, a file in /tmp), the collector off while timing; Endpoints.record itself "
            "up to 1,000 endpoints."
        ),
        tables=tables,
        goals=goals,
        notes=[
            f"the {nth(n)} address given: {raw['fills'][-1]['last_address']}",
            f"allocate alone, {nth(n)} / 10th: {times(r['allocate_far_over_near'])}; the count check is one "
            "row read, whatever the number of endpoints",
            "DNS answer latency: measured by bench/dns_latency.py, not repeated here",
        ],
    )


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    raw: dict[str, Any] = {"runs": args.runs, "warmup": args.warmup}
    if os.geteuid() == 0:
        print(f"network create + rm: {args.warmup} warm-up and {args.runs} timed pairs ...", flush=True)
        create_ms, rm_ms = measure_create_rm(run, args.runs, args.warmup)
        raw |= {"network_create_ms": create_ms, "network_rm_ms": rm_ms}
        raw |= {"network_create": summary(create_ms), "network_rm": summary(rm_ms)}
    else:
        run.notes.append("network create / rm: not measured (needs root: it makes network namespaces)")
        raw["network_create_ms"] = None
    print(
        f"allocating {args.allocations:,} addresses in a /16, {args.repeats} fill(s), and "
        f"{min(ENGINE_ALLOCATIONS, args.allocations):,} through Endpoints.record ...",
        flush=True,
    )
    raw |= measure_allocations(args)
    return build_report(raw), raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "2 pairs, 2,000 allocations, 1 fill, 100 rounds")
    p.add_argument("--runs", type=int, default=20, help="timed network create + rm pairs (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed pairs first (default 2)")
    p.add_argument("--allocations", type=int, default=60000, help="addresses in the /16 (default 60000)")
    p.add_argument("--repeats", type=int, default=3, help="fills of the /16, pooled (default 3)")
    p.add_argument(
        "--goal-ratio", type=float, default=1.5, help="'about what the 10th did': within this factor (1.5)"
    )
    p.add_argument("--steady-rounds", type=int, default=2000, help="3: leases on each side (default 2000)")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup, args.allocations, args.repeats, args.steady_rounds = 2, 0, 2000, 1, 100
    if args.runs < 1 or args.warmup < 0 or args.repeats < 1 or args.steady_rounds < 1:
        p.error("--runs, --repeats and --steady-rounds must be at least 1, --warmup at least 0")
    if not 200 <= args.allocations <= SUBNET.num_addresses - 3:
        p.error(f"--allocations must be between 200 and {SUBNET.num_addresses - 3}")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("networks", arguments, lambda run: measure(run, arguments), needs_root=False))
