"""Robustness (issue 5): recovery after a daemon crash, and concurrent runs and removals.

    .venv/bin/python bench/robustness.py [--stale N] [--concurrent N] [--rounds N] [--json PATH]
    .venv/bin/python bench/robustness.py --smoke     # 10 stale endpoints, 4 concurrent: for the test suite

As root, in a throwaway lab (demo/netlab.py: a host namespace where dockyardd
runs, an upstream namespace on TEST-NET addresses, a fresh $ROOT; the root
namespace is never touched, no traffic leaves the lab's namespaces, and
everything is removed at the end, also on Ctrl-C or SIGTERM). Stdlib only;
dockyard is driven through its command line, as a user would.

1. Concurrency: N (32) `dockyard run -d --net NET sleep 600` started at once,
   the wall time from the first start to the last exit; then N `dockyard rm
   -f ID` at once, likewise. Median of --rounds (5) rounds; every round must
   succeed in full (distinct addresses, nothing left after the removals).
2. Recovery: --stale (500) detached containers on a user network with a /22
   subnet, started in batches of parallel clients. Then dockyardd is killed
   with SIGKILL (its PID from $ROOT/dockyardd.pid) and every container's
   process too (its PID from `inspect`), so that they end while no daemon
   runs and leave stale endpoints: veths, pins, leases. Timed: `dockyard
   system gc`, which starts a new daemon (its start-up restore does the
   reconciling) and then collects; and a second `system gc` with nothing
   left to do. Checked afterwards: every container exited, no veth, pin or
   address left.

Times are reported, never asserted: the exit status is 0 unless a command
failed or something had to be cleaned up by force (1), or the run was
interrupted (130, or 128 + the signal).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import Interrupted, Lab, LabError, raise_on_termination, signals_ignored  # noqa: E402

NETWORK = "benchnet"
SUBNET = "10.99.0.0/22"  # inside the lab's host namespace only; 1,021 addresses
BATCH = 16  # parallel clients while making the stale containers
COMMAND_TIMEOUT = 120.0


class BenchError(Exception):
    """A command failed: the benchmark cannot vouch for its figures."""


# -- processes, by PID and start time -------------------------------------------


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def kill_exact(pid: int, started: int) -> bool:
    """SIGKILL this very process (never a PID reused since); True when it was there."""
    if start_time(pid) != started:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def wait_gone(pids: dict[int, int], timeout: float) -> list[int]:
    """Wait until none of these processes lives; the PIDs still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if start_time(pid) == pids[pid]]
        if alive:
            time.sleep(0.02)
    return alive


# -- running dockyard ------------------------------------------------------------


def dy(lab: Lab, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """A dockyard command's stdout; a BenchError when it fails."""
    try:
        r = subprocess.run(
            lab.dy_cmd(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"`dockyard {' '.join(args)}` did not finish within {timeout:.0f} s") from e
    if r.returncode != 0:
        raise BenchError(f"`dockyard {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def timed(lab: Lab, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = dy(lab, *args)
    return time.perf_counter() - start, out


def all_at_once(lab: Lab, commands: Sequence[Sequence[str]]) -> tuple[float, list[str]]:
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
    results = []
    try:
        for proc in procs:
            results.append(proc.communicate(timeout=COMMAND_TIMEOUT))
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


def settle(lab: Lab) -> None:
    """Wait for what the daemon finishes after answering: every queued veth removal."""
    from dockyard.clients.api import Client

    Client(str(lab.root), autostart=False).settle()


def container_ids(lab: Lab) -> list[str]:
    return dy(lab, "ps", "-aq", "--no-trunc").split()


def inspect_all(lab: Lab, ids: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 100):
        out += json.loads(dy(lab, "inspect", *ids[i : i + 100]))
    return out


def veths(lab: Lab) -> list[str]:
    r = subprocess.run(
        ["ip", "-n", lab.host, "-j", "link", "show"], capture_output=True, text=True, timeout=30, check=False
    )
    links = json.loads(r.stdout or "[]") if r.returncode == 0 else []
    return [link["ifname"] for link in links if link["ifname"].startswith("veth")]


def pins(lab: Lab) -> list[str]:
    directory = lab.root / "netns"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def remove_all(lab: Lab) -> None:
    """rm -f every container, several at once (a single client would remove 500 in series)."""
    ids = container_ids(lab)
    if ids:
        chunks = [ids[i::8] for i in range(min(8, len(ids)))]
        all_at_once(lab, [("rm", "-f", *chunk) for chunk in chunks])


# -- 1. concurrency ---------------------------------------------------------------


def measure_concurrency(lab: Lab, count: int, rounds: int) -> dict[str, Any]:
    run_s: list[float] = []
    rm_s: list[float] = []
    for i in range(rounds):
        print(f"  round {i + 1}/{rounds}: {count} x run -d, then {count} x rm -f", flush=True)
        elapsed, outs = all_at_once(lab, [("run", "-d", "--net", NETWORK, "sleep", "600")] * count)
        ids = [out.strip().splitlines()[-1] for out in outs]
        infos = inspect_all(lab, ids)
        for info in infos:
            if info["State"]["Pid"]:
                lab.remember_pid(int(info["State"]["Pid"]))
        addresses = {info["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] for info in infos}
        if len(addresses) != count:
            raise BenchError(f"{count} concurrent runs got {len(addresses)} distinct addresses")
        run_s.append(elapsed)
        elapsed, _ = all_at_once(lab, [("rm", "-f", cid) for cid in ids])
        rm_s.append(elapsed)
        # rm -f answers once a container is gone; its veth goes on the daemon's reaper
        # thread (an RCU grace period), and settle returns once every queued removal is done.
        settle(lab)
        left, links = container_ids(lab), veths(lab)
        if left or links:
            raise BenchError(
                f"after {count} concurrent rm -f and a settle: containers {left}, veths {links} left"
            )
    return {"count": count, "rounds": rounds, "run_s": run_s, "rm_s": rm_s}


# -- 2. recovery after SIGKILL ------------------------------------------------------


def make_stale(lab: Lab, count: int) -> tuple[float, dict[int, int]]:
    """`count` detached containers, BATCH clients at a time; (seconds, {pid: start time})."""
    start = time.perf_counter()
    done = 0
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        try:
            futures = [
                pool.submit(dy, lab, "run", "-d", "--net", NETWORK, "sleep", "600") for _ in range(count)
            ]
            for future in futures:
                future.result()
                done += 1
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


def kill_daemon(lab: Lab) -> int:
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


def measure_recovery(lab: Lab, count: int) -> dict[str, Any]:
    print(f"  starting {count} detached containers on {NETWORK} ({SUBNET}), {BATCH} clients at a time ...")
    made_s, procs = make_stale(lab, count)
    veths_before = len(veths(lab))
    pid = kill_daemon(lab)
    for p, started in procs.items():
        kill_exact(p, started)
    if wait_gone(procs, 30):
        raise BenchError("container processes survived SIGKILL")
    print(
        f"  killed dockyardd ({pid}) and {len(procs)} container processes; timing system gc ...", flush=True
    )
    log = lab.root / "daemon.log"
    log_offset = log.stat().st_size if log.exists() else 0
    gc_s, gc_out = timed(lab, "system", "gc")
    with contextlib.suppress(OSError, ValueError):
        lab.remember_pid(int((lab.root / "dockyardd.pid").read_text().strip()))
    with open(log, errors="replace") as f:
        f.seek(log_offset)
        restored = [line for line in f.read().splitlines() if line.startswith("dockyardd: restore: ")]
    again_s, again_out = timed(lab, "system", "gc")
    states = [info["State"] for info in inspect_all(lab, container_ids(lab))]
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
        "after": {
            "exited": sum(1 for s in states if s["Status"] == "exited"),
            "running": sum(1 for s in states if s["Running"]),
            "veths": len(veths(lab)),
            "pins": len(pins(lab)),
        },
    }


# -- cleanup -------------------------------------------------------------------------


def dockyard_down(lab: Lab) -> list[str]:
    """rm -f everything and stop whichever daemon serves the lab's root (the first, or the
    one `system gc` started after the crash); what went wrong, if anything."""
    problems: list[str] = []
    if not (lab.root / "dockyard.db").exists():
        return problems
    try:
        # Again until ps shows nothing: a run cut short by Ctrl-C may still be finishing.
        for _ in range(5):
            ids = container_ids(lab)  # starts a daemon if none runs: this root's own
            with contextlib.suppress(OSError, ValueError):
                lab.remember_pid(int((lab.root / "dockyardd.pid").read_text().strip()))
            if not ids:
                break
            with contextlib.suppress(BenchError, ValueError, KeyError):
                for info in inspect_all(lab, ids):
                    if info["State"]["Pid"]:
                        lab.remember_pid(int(info["State"]["Pid"]))
            try:
                remove_all(lab)
            except BenchError as e:
                problems.append(f"rm -f: {e}")
            time.sleep(0.1)
        with contextlib.suppress(BenchError):
            dy(lab, "network", "rm", NETWORK)
        dy(lab, "daemon", "stop")
        if lab.daemon is not None and lab.daemon.poll() is None:
            lab.daemon.wait(timeout=30)
    except (BenchError, subprocess.TimeoutExpired) as e:
        problems.append(str(e))
    return problems


# -- report ------------------------------------------------------------------------


def report(conc: dict[str, Any], rec: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    n, rounds, stale = conc["count"], conc["rounds"], rec["stale"]
    head = f"{'what':<58} {'wall time':>10}   {'spread':<24}"
    rows = [head.rstrip(), "-" * len(head.rstrip())]

    def spread(values: list[float]) -> str:
        return f"min {min(values):.2f}, max {max(values):.2f} s"

    rows.append(
        f"{f'{n} concurrent run -d sleep 600 (median of {rounds})':<58} "
        f"{statistics.median(conc['run_s']):9.2f}s   {spread(conc['run_s'])}"
    )
    rows.append(
        f"{f'{n} concurrent rm -f (median of {rounds})':<58} "
        f"{statistics.median(conc['rm_s']):9.2f}s   {spread(conc['rm_s'])}"
    )
    rows.append(f"{f'system gc after SIGKILL, {stale} stale endpoints':<58} {rec['gc_s']:9.2f}s")
    rows.append(f"{'system gc again, nothing to do':<58} {rec['second_gc_s']:9.2f}s")
    after = rec["after"]
    notes = [
        "",
        f"- {n} concurrent runs: per round {', '.join(f'{x:.2f}' for x in conc['run_s'])} s; "
        f"rm -f: {', '.join(f'{x:.2f}' for x in conc['rm_s'])} s; "
        "distinct addresses, nothing left each round.",
        f"- {stale} stale endpoints: made in {rec['setup_s']:.1f} s ({BATCH} clients at a time, "
        f"{rec['veths_before']} veths); dockyardd and every container process then killed with SIGKILL.",
        f"- the first gc includes the new daemon's start: its restore logged {rec['restore_lines']} changes "
        f"({rec['restore_exited']} exits recorded, {rec['restore_released']} endpoints released) "
        f"and gc itself printed {rec['gc_lines']} more; the second printed {rec['second_gc_output']!r}.",
        f"- after: {after['exited']} containers exited, {after['running']} running, "
        f"{after['veths']} veths and {after['pins']} netns pins left.",
        f"- machine: {machine['cpus']} CPUs, Linux {machine['kernel']}, Python {machine['python']}; "
        f"load average {machine['load_before']} before, {machine['load_after']} after.",
    ]
    return rows + notes


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stale", type=int, default=500, help="stale endpoints for the gc (default 500)")
    p.add_argument("--concurrent", type=int, default=32, help="runs and removals at once (default 32)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the concurrent case (default 5)")
    p.add_argument("--smoke", action="store_true", help="10 stale endpoints, 4 concurrent, 2 rounds")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.stale, args.concurrent, args.rounds = 10, 4, 2
    if not 1 <= args.stale <= 1000:
        p.error("--stale must be from 1 to 1000 (a /22 network, a bridge of at most 1,024 ports)")
    if not 1 <= args.concurrent <= 256 or args.rounds < 1:
        p.error("--concurrent must be from 1 to 256 and --rounds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("robustness: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    machine = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": load_average(),
    }
    lab = Lab("dybench")
    status = 0
    problems: list[str] = []
    try:
        lab.setup()
        lab.start_daemon()
        dy(lab, "network", "create", "--subnet", SUBNET, NETWORK)
        print(f"concurrency: {args.concurrent} at once, {args.rounds} rounds ...", flush=True)
        conc = measure_concurrency(lab, args.concurrent, args.rounds)
        print(f"recovery: {args.stale} stale endpoints ...", flush=True)
        rec = measure_recovery(lab, args.stale)
        machine["load_after"] = load_average()
        print("\n".join(["", *report(conc, rec, machine)]), flush=True)
        if args.json:
            raw = {"machine": machine, "subnet": SUBNET, "batch": BATCH, "concurrency": conc, "recovery": rec}
            Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
            print(f"raw results written to {args.json}")
    except (BenchError, LabError) as e:
        print(f"robustness: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nrobustness: interrupted", file=sys.stderr)
        status = 130
    except Interrupted as e:
        print(f"\nrobustness: interrupted ({e})", file=sys.stderr)
        status = 128 + e.signum
    finally:
        with signals_ignored():
            problems += dockyard_down(lab)
            problems += lab.teardown()
            problems += [f"left behind: {thing}" for thing in lab.leftovers()]
    for problem in problems:
        print(f"robustness: cleanup: {problem}", file=sys.stderr)
    if problems and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
