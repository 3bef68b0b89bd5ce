"""Robustness (issue 5): recovery after a daemon crash, and concurrent runs and removals.

    .venv/bin/python bench/robustness.py [--stale N] [--concurrent N] [--rounds N] [--json PATH]
    .venv/bin/python bench/robustness.py --smoke     # 10 stale endpoints, 4 concurrent: for the test suite

As root, in a throwaway lab (tests/lab.py through demo/netlab.py: a host
namespace where dockyardd runs, an upstream namespace on TEST-NET addresses,
a fresh $ROOT; the root namespace is never touched, and everything is
removed at the end, also on Ctrl-C or SIGTERM). dockyard is driven through
its command line, as a user would.

1. Concurrency: N (32) `dockyard run -d --net NET sleep 600` started at once,
   the wall time from the first start to the last exit; then N `dockyard rm
   -f ID` at once, likewise. Median of --rounds (5) rounds; every round must
   succeed in full: distinct addresses, and nothing left after the removals.
   `rm -f` answers once the container is gone; its veth is deleted by the
   daemon's reaper right after (an RCU grace period), so the check first
   waits for what the daemon promises, its settle (every queued veth removal
   done), then looks once and names what it found.
2. Recovery: --stale (500) detached containers on a user network with a /22
   subnet, started in batches of parallel clients. Then dockyardd is killed
   with SIGKILL (its PID from $ROOT/dockyardd.pid) and every container's
   process too (its PID from `inspect`), so that they end while no daemon
   runs and leave stale endpoints: veths, pins, leases. Timed: `dockyard
   system gc`, which starts a new daemon (its start-up restore does the
   reconciling) and then collects (settled before it answers); and a second
   `system gc` with nothing left to do. Checked afterwards: every container
   exited, no veth or pin left.

Times are reported, never asserted: the exit status is 0 unless a command
failed, a check did not hold, or something had to be cleaned up by force
(1), or the run was interrupted (130, or 128 + the signal).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import BenchError, kill_exact, start_time, wait_gone
from _report import Report, Table
from _script import Run, ScriptLab, main, options

NETWORK = "benchnet"
SUBNET = "10.99.0.0/22"  # inside the lab's host namespace only; 1,021 addresses
BATCH = 16  # parallel clients while making the stale containers
COMMAND_TIMEOUT = 120.0


def dy(lab: ScriptLab, *args: str) -> str:
    """A dockyard command's stdout; a BenchError when it fails."""
    r = lab.dy(*args, timeout=COMMAND_TIMEOUT)
    if r.returncode != 0:
        raise BenchError(f"`dockyard {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def all_at_once(lab: ScriptLab, commands: Sequence[Sequence[str]]) -> tuple[float, list[str]]:
    """Start every command at once; the wall time until the last one ends, and their outputs."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            lab.dy_cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    try:
        results = [proc.communicate(timeout=COMMAND_TIMEOUT) for proc in procs]
    finally:
        for proc in procs:  # a Ctrl-C or a timeout: none of ours runs on
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.perf_counter() - start
    failed = [
        f"`dockyard {' '.join(args)}` exited {proc.returncode}: {err.strip()}"
        for args, proc, (_out, err) in zip(commands, procs, results, strict=True)
        if proc.returncode != 0
    ]
    if failed:
        raise BenchError(f"{len(failed)} of {len(commands)} commands failed, e.g. {failed[0]}")
    return elapsed, [out for out, _err in results]


def container_ids(lab: ScriptLab) -> list[str]:
    return dy(lab, "ps", "-aq", "--no-trunc").split()


def inspect_all(lab: ScriptLab, ids: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 100):
        out += json.loads(dy(lab, "inspect", *ids[i : i + 100]))
    return out


def veths(lab: ScriptLab) -> list[str]:
    return [name for name in lab.links() if name.startswith("veth")]


def pins(lab: ScriptLab) -> list[str]:
    directory = lab.root / "netns"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def settle(lab: ScriptLab) -> None:
    """Wait for what the daemon finishes after answering: every queued veth removal."""
    from dockyard.clients.api import Client

    Client(str(lab.root), autostart=False).settle()


# -- 1. concurrency ---------------------------------------------------------------


def measure_concurrency(lab: ScriptLab, count: int, rounds: int) -> dict[str, Any]:
    run_s: list[float] = []
    rm_s: list[float] = []
    for i in range(rounds):
        print(f"  round {i + 1}/{rounds}: {count} x run -d, then {count} x rm -f", flush=True)
        elapsed, outs = all_at_once(lab, [("run", "-d", "--net", NETWORK, "sleep", "600")] * count)
        run_s.append(elapsed)
        ids = [out.strip().splitlines()[-1] for out in outs]
        infos = inspect_all(lab, ids)
        for info in infos:
            if info["State"]["Pid"]:
                lab.remember_pid(int(info["State"]["Pid"]))
        addresses = {info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] for info in infos}
        if len(addresses) != count:
            raise BenchError(f"{count} concurrent runs got {len(addresses)} distinct addresses")
        elapsed, _ = all_at_once(lab, [("rm", "-f", cid) for cid in ids])
        rm_s.append(elapsed)
        settle(lab)
        left, links = container_ids(lab), veths(lab)
        if left or links:
            raise BenchError(
                f"after {count} concurrent rm -f and a settle: containers {left}, veths {links} left"
            )
    return {"count": count, "rounds": rounds, "run_s": run_s, "rm_s": rm_s}


# -- 2. recovery after SIGKILL ------------------------------------------------------


def make_stale(lab: ScriptLab, count: int) -> tuple[float, dict[int, int]]:
    """`count` detached containers, BATCH clients at a time; (seconds, {pid: start time})."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        try:
            futures = [
                pool.submit(dy, lab, "run", "-d", "--net", NETWORK, "sleep", "600") for _ in range(count)
            ]
            for done, future in enumerate(futures, 1):
                future.result()
                if done % 100 == 0 or done == count:
                    print(f"  {done}/{count} started", flush=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    made = time.perf_counter() - start
    procs: dict[int, int] = {}
    for info in inspect_all(lab, container_ids(lab)):
        pid = int(info["State"]["Pid"] or 0)
        started = start_time(pid) if pid else None
        if not info["State"]["Running"] or started is None:
            raise BenchError(f"container {info['Name']} is not running before the crash")
        lab.remember_pid(pid)
        procs[pid] = started
    if len(procs) != count:
        raise BenchError(f"{len(procs)} containers running, {count} expected")
    return made, procs


def kill_daemon(lab: ScriptLab) -> int:
    """SIGKILL dockyardd, found by $ROOT/dockyardd.pid and checked to be the lab's own."""
    pid = int((lab.root / "dockyardd.pid").read_text().strip())
    started = lab.pids.get(pid)
    if started is None:
        raise BenchError(f"$ROOT/dockyardd.pid names {pid}, a process this benchmark did not start")
    kill_exact(pid, started)
    if wait_gone({pid: started}, 10):
        raise BenchError(f"dockyardd ({pid}) did not die of SIGKILL")
    if lab.daemon is not None and lab.daemon.pid == pid:
        lab.daemon.wait(timeout=10)  # reaped: it was our child
    return pid


def timed_dy(lab: ScriptLab, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = dy(lab, *args)
    return time.perf_counter() - start, out


def measure_recovery(lab: ScriptLab, count: int) -> dict[str, Any]:
    print(f"  starting {count} detached containers on {NETWORK} ({SUBNET}), {BATCH} clients at a time ...")
    made_s, procs = make_stale(lab, count)
    veths_before = len(veths(lab))
    pid = kill_daemon(lab)
    for p, started in procs.items():
        kill_exact(p, started)
    if wait_gone(procs, 30):
        raise BenchError("container processes survived SIGKILL")
    print(f"  killed dockyardd ({pid}) and {len(procs)} container processes; timing system gc ...")
    log = lab.root / "daemon.log"
    log_offset = log.stat().st_size if log.exists() else 0
    gc_s, gc_out = timed_dy(lab, "system", "gc")
    lab.remember_daemon()
    with open(log, errors="replace") as f:
        f.seek(log_offset)
        lines = f.read().splitlines()
    # The daemon's start-up reconciliation: "<time> INFO dockyard.daemon.main[pid]: restore: ...".
    restored = [line for line in lines if " dockyard.daemon.main[" in line and "]: restore: " in line]
    again_s, again_out = timed_dy(lab, "system", "gc")
    states = [info["State"] for info in inspect_all(lab, container_ids(lab))]
    after = {
        "exited": sum(1 for s in states if s["Status"] == "exited"),
        "running": sum(1 for s in states if s["Running"]),
        "veths": len(veths(lab)),
        "pins": len(pins(lab)),
    }
    if after["exited"] != count or after["running"] or veths(lab) or pins(lab):
        raise BenchError(f"after the crash and two gc: {after}; veths {veths(lab)}, pins {pins(lab)}")
    return {
        "stale": count,
        "setup_s": made_s,
        "veths_before": veths_before,
        "gc_s": gc_s,
        "gc_lines": len([x for x in gc_out.splitlines() if x and x != "nothing to remove"]),
        "restore_lines": len(restored),
        "restore_released": sum(1 for x in restored if ": released " in x),
        "restore_exited": sum(1 for x in restored if " gone, recorded exit " in x),
        "second_gc_s": again_s,
        "second_gc_output": again_out.strip(),
        "after": after,
    }


# -- the run ---------------------------------------------------------------------------


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    lab = run.lab(daemon=True)
    dy(lab, "network", "create", "--subnet", SUBNET, NETWORK)
    print(f"concurrency: {args.concurrent} at once, {args.rounds} rounds ...", flush=True)
    conc = measure_concurrency(lab, args.concurrent, args.rounds)
    print(f"recovery: {args.stale} stale endpoints ...", flush=True)
    rec = measure_recovery(lab, args.stale)
    raw = {"subnet": SUBNET, "batch": BATCH, "concurrency": conc, "recovery": rec}
    return build_report(conc, rec), raw


def build_report(conc: dict[str, Any], rec: dict[str, Any]) -> Report:
    n, rounds, stale = conc["count"], conc["rounds"], rec["stale"]

    def seconds(values: list[float]) -> list[str]:
        return [f"{statistics.median(values):.2f}", f"{min(values):.2f}-{max(values):.2f}"]

    rows = [
        [f"{n} concurrent run -d sleep 600 (median of {rounds})", *seconds(conc["run_s"])],
        [f"{n} concurrent rm -f (median of {rounds})", *seconds(conc["rm_s"])],
        [f"system gc after SIGKILL, {stale} stale endpoints", f"{rec['gc_s']:.2f}", "-"],
        ["system gc again, nothing to do", f"{rec['second_gc_s']:.2f}", "-"],
    ]
    after = rec["after"]
    return Report(
        key="robustness",
        title="Robustness",
        method=(
            f"{n} `dockyard run -d` started at once, then {n} `rm -f` at once, {rounds} round(s), each "
            "checked in full (distinct addresses; after the daemon's settle, no container or veth left). "
            f"Then {stale} detached containers on a user network, dockyardd and every container process "
            "killed with SIGKILL, and `system gc` timed (it starts a new daemon, whose restore reconciles), "
            "then a second one with nothing to do. Each in a throwaway host namespace."
        ),
        tables=[Table("wall time (s)", ["what", "wall time", "min-max"], rows)],
        notes=[
            f"{n} concurrent runs: per round {', '.join(f'{x:.2f}' for x in conc['run_s'])} s; "
            f"rm -f: {', '.join(f'{x:.2f}' for x in conc['rm_s'])} s; "
            "distinct addresses, nothing left each round.",
            f"{stale} stale endpoints: made in {rec['setup_s']:.1f} s ({BATCH} clients at a time, "
            f"{rec['veths_before']} veths); dockyardd and every container process then killed with SIGKILL.",
            "the first gc includes the new daemon's start: its restore logged "
            f"{rec['restore_lines']} changes "
            f"({rec['restore_exited']} exits recorded, {rec['restore_released']} endpoints released) "
            f"and gc itself printed {rec['gc_lines']} more; the second printed {rec['second_gc_output']!r}.",
            f"after: {after['exited']} containers exited, {after['running']} running, "
            f"{after['veths']} veths and {after['pins']} netns pins left.",
        ],
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "10 stale endpoints, 4 concurrent, 2 rounds")
    p.add_argument("--stale", type=int, default=500, help="stale endpoints for the gc (default 500)")
    p.add_argument("--concurrent", type=int, default=32, help="runs and removals at once (default 32)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the concurrent case (default 5)")
    args = p.parse_args(argv)
    if args.smoke:
        args.stale, args.concurrent, args.rounds = 10, 4, 2
    if not 1 <= args.stale <= 1000:
        p.error("--stale must be from 1 to 1000 (a /22 network, a bridge of at most 1,024 ports)")
    if not 1 <= args.concurrent <= 256 or args.rounds < 1:
        p.error("--concurrent must be from 1 to 256 and --rounds at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("robustness", arguments, lambda run: measure(run, arguments)))
