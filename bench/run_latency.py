"""How long `dockyard run --rm --net X true` takes, whole command, per driver.

    .venv/bin/python bench/run_latency.py [--runs N] [--warmup N] [--port P] [--json PATH]
    .venv/bin/python bench/run_latency.py --smoke     # 2 runs per case, for the test suite

As root, in a throwaway lab (demo/netlab.py: a host namespace where dockyardd
runs, an upstream namespace on TEST-NET addresses; the root namespace is never
touched). The daemon is started and warmed up first, so the figures are what
a user sees with dockyardd already running: client start-up, the API round
trips, the kernel work, the container's life and its removal.

Cases: none, host, bridge, bridge with `-p PORT:80`, container:<a running
target>, and the client's start-up (`dockyard --help`, `dockyard ps`, and the
bare interpreter for reference). Every round runs each case once, in an order
rotated by one each round, so that drift on the machine (other jobs, caches,
thermal) hits all cases alike. When Docker can run here (a docker client and
a dockerd binary), a private dockerd is started inside the lab's host
namespace and measured in the same rounds; a dockerd already running on the
machine is never used, since it would work in the root namespace.

It prints a table (median, p10-p90, min-max), the bridge-minus-none and
bridge-minus-host differences, and the goals of issue 2 as met or not met.
Times are reported, never asserted: the exit status is 0 unless a command
failed (1) or the run was interrupted (130).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "demo"))

from netlab import Interrupted, Lab, LabError, raise_on_termination, signals_ignored  # noqa: E402

TARGET = "bench-target"
GOAL_BRIDGE_MS = 60.0
GOAL_BRIDGE_OVER_NONE_MS = 10.0
# Issue 2's reference figures, measured on this machine kind before dockyard existed.
REFERENCE = (
    "Docker 20.10: 302 ms for a bridge `docker run --rm true`, 84 ms more than with --net none; "
    "Podman 4.3: 372-420 ms"
)
DOCKER_IMAGE = "dybench-true:latest"
DOCKER_BIP = "192.0.2.1/24"  # TEST-NET-1, inside the lab's host namespace only


class BenchError(Exception):
    """A measured command failed: the benchmark cannot vouch for its figures."""


@dataclass
class Case:
    """One thing to time: a tool, a label for the table, and the full command."""

    tool: str  # "dockyard", "docker" or "python"
    label: str
    argv: list[str]
    env: dict[str, str] | None = None
    ms: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.tool} {self.label}"


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


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(ms),
        "p10": percentile(ms, 10),
        "p90": percentile(ms, 90),
        "min": min(ms),
        "max": max(ms),
    }


# -- timing --------------------------------------------------------------------


def time_once(case: Case) -> float:
    """Wall time of the whole command in milliseconds; a BenchError when it fails."""
    start = time.perf_counter_ns()
    try:
        r = subprocess.run(
            case.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=case.env,
            timeout=60,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{case.key}: did not finish within 60 s") from e
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if r.returncode != 0:
        stderr = r.stderr.decode(errors="replace").strip()
        raise BenchError(f"{case.key}: `{' '.join(case.argv)}` exited {r.returncode}: {stderr}")
    return elapsed


def measure(cases: list[Case], runs: int, warmup: int) -> list[list[str]]:
    """Warm every case up, then `runs` rounds, each case once a round in a rotated order.

    Returns the order of each round (case keys), for the raw results.
    """
    for _ in range(warmup):
        for case in cases:
            time_once(case)
    orders: list[list[str]] = []
    for r in range(runs):
        shift = r % len(cases)
        order = cases[shift:] + cases[:shift]
        for case in order:
            case.ms.append(time_once(case))
        orders.append([c.key for c in order])
    return orders


# -- the cases -----------------------------------------------------------------


def dockyard_cases(lab: Lab, port: int) -> list[Case]:
    def run(label: str, *opts: str) -> Case:
        return Case("dockyard", label, lab.dy_cmd("run", "--rm", *opts, "true"))

    return [
        run("none", "--net", "none"),
        run("host", "--net", "host"),
        run("bridge", "--net", "bridge"),
        run(f"bridge -p {port}:80", "--net", "bridge", "-p", f"{port}:80"),
        run(f"container:{TARGET}", "--net", f"container:{TARGET}"),
        Case("dockyard", "--help", lab.dy_cmd("--help")),
        Case("dockyard", "ps", lab.dy_cmd("ps")),
        Case("python", "-c pass", [sys.executable, "-c", "pass"]),
    ]


class PrivateDocker:
    """A dockerd of the benchmark's own, inside the lab's host namespace.

    Its data and exec roots live under the lab's $ROOT, its bridge on TEST-NET-1,
    its iptables rules in the lab's namespace: deleting the lab removes it all.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.root / "docker"
        self.sock = self.dir / "exec" / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def why_not() -> str | None:
        """None when a side-by-side run is possible, else the reason it is not."""
        if not shutil.which("docker"):
            return "no docker client"
        if not shutil.which("dockerd"):
            return f"the docker client is at {shutil.which('docker')}, but there is no dockerd to run"
        return None

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"`docker {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
        return r

    def start(self) -> None:
        (self.dir / "exec").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                # `ip netns exec` also mounts a /sys of the lab's namespace, which dockerd reads.
                [
                    *("ip", "netns", "exec", self.lab.host, "dockerd"),
                    *("--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec")),
                    *("--host", f"unix://{self.sock}", "--pidfile", str(self.dir / "dockerd.pid")),
                    *("--bip", DOCKER_BIP),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.lab.remember_pid(self.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"dockerd exited {self.proc.returncode}; see {self.dir / 'dockerd.log'}")
            probe = subprocess.run(["docker", "info"], capture_output=True, env=self.env, timeout=30)
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise BenchError(f"dockerd did not answer within 60 s; see {self.dir / 'dockerd.log'}")
        self._import_image()
        self.docker("run", "-d", "--name", TARGET, DOCKER_IMAGE, "/bin/sleep", "infinity")

    def _import_image(self) -> None:
        """An image holding only /bin/true and /bin/sleep with their libraries (no registry)."""
        tar_path = self.dir / "image.tar"
        members: dict[str, str] = {}  # path in the image -> the host file it copies
        for binary in ("/bin/true", "/bin/sleep"):
            members[binary.lstrip("/")] = os.path.realpath(binary)
            ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
            for line in ldd.stdout.splitlines():
                paths = [w for w in line.split() if w.startswith("/")]
                if paths:
                    members[paths[0].lstrip("/")] = os.path.realpath(paths[0])
        with tarfile.open(tar_path, "w") as tar:
            for arcname, source in sorted(members.items()):
                tar.add(source, arcname=arcname)
        self.docker("import", str(tar_path), DOCKER_IMAGE, timeout=120)

    def cases(self, port: int) -> list[Case]:
        docker = shutil.which("docker") or "docker"

        def run(label: str, *opts: str) -> Case:
            argv = [docker, "run", "--rm", *opts, DOCKER_IMAGE, "/bin/true"]
            return Case("docker", label, argv, self.env)

        return [
            run("none", "--net", "none"),
            run("host", "--net", "host"),
            run("bridge", "--net", "bridge"),
            run(f"bridge -p {port}:80", "--net", "bridge", "-p", f"{port}:80"),
            run(f"container:{TARGET}", "--net", f"container:{TARGET}"),
            Case("docker", "--help", [docker, "--help"], self.env),
            Case("docker", "ps", [docker, "ps"], self.env),
        ]

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            try:
                self.docker("rm", "-f", TARGET, timeout=30)
            except (BenchError, subprocess.TimeoutExpired) as e:
                problems.append(str(e))
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd (pid {self.proc.pid}) ignored SIGTERM for 30 s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        return problems


# -- the report ----------------------------------------------------------------


def fmt(ms: float) -> str:
    return f"{ms:7.1f}"


def table(cases: list[Case], runs: int) -> list[str]:
    head = f"{'command':<44} {'median':>7} {'p10':>7} {'p90':>7} {'min':>7} {'max':>7}   (ms, {runs} runs)"
    lines = [head, "-" * len(head)]
    for case in cases:
        s = summary(case.ms)
        figures = " ".join(fmt(s[k]) for k in ("median", "p10", "p90", "min", "max"))
        lines.append(f"{case.key:<44} {figures}")
    return lines


def difference(a: Case, b: Case) -> dict[str, float]:
    """a minus b: the difference of medians, and the median of the per-round differences."""
    paired = [x - y for x, y in zip(a.ms, b.ms, strict=True)]
    return {
        "of_medians": statistics.median(a.ms) - statistics.median(b.ms),
        "paired": statistics.median(paired),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    cases: list[Case], runs: int, docker_note: str | None, host_info: dict[str, object]
) -> dict[str, object]:
    by_key = {c.key: c for c in cases}
    out: list[str] = []
    out.append("dockyard run latency: whole-command wall time, daemon already up")
    out.append(
        f"machine: {host_info['cpus']} CPUs, Linux {host_info['kernel']}, Python {host_info['python']}; "
        f"load average {host_info['load_before']} before, {host_info['load_after']} after"
    )
    out.append(f"each round runs every case once, rotated by one each round; {runs} rounds")
    out.append("")
    out += table(cases, runs)

    results: dict[str, object] = {}
    out.append("")
    out.append(
        f"{'differences (ms)':<44} {'of medians':>10} {'paired':>10}   (paired: median of per-round a-b)"
    )
    for tool in ("dockyard", "docker"):
        bridge = by_key.get(f"{tool} bridge")
        if bridge is None:
            continue
        for other in ("none", "host"):
            d = difference(bridge, by_key[f"{tool} {other}"])
            results[f"{tool} bridge-{other}"] = d
            out.append(f"{tool + ' bridge - ' + other:<44} {d['of_medians']:>10.1f} {d['paired']:>10.1f}")

    out.append("")
    out.append("client start-up (median)")
    for key, what in (
        ("dockyard --help", "argparse only, no daemon round trip"),
        ("dockyard ps", "one API round trip to the running daemon"),
        ("python -c pass", "the bare interpreter, for reference"),
        ("docker --help", ""),
        ("docker ps", ""),
    ):
        if key in by_key:
            med = statistics.median(by_key[key].ms)
            out.append(f"  {key:<42} {fmt(med)} ms   {what}".rstrip())

    bridge_ms = statistics.median(by_key["dockyard bridge"].ms)
    over_none = difference(by_key["dockyard bridge"], by_key["dockyard none"])["of_medians"]
    goals: dict[str, dict[str, float | bool]] = {
        "bridge_run": {"ms": bridge_ms, "goal_ms": GOAL_BRIDGE_MS, "met": bridge_ms < GOAL_BRIDGE_MS},
        "bridge_minus_none": {
            "ms": over_none,
            "goal_ms": GOAL_BRIDGE_OVER_NONE_MS,
            "met": over_none < GOAL_BRIDGE_OVER_NONE_MS,
        },
    }
    out.append("")
    out.append("goals (issue 2)")
    labels = {
        "bridge_run": f"dockyard run --rm true on the bridge under {GOAL_BRIDGE_MS:.0f} ms",
        "bridge_minus_none": f"bridge minus none under {GOAL_BRIDGE_OVER_NONE_MS:.0f} ms",
    }
    for name, goal in goals.items():
        out.append(f"  {labels[name]:<50} {verdict(bool(goal['met'])):<8} {fmt(float(goal['ms']))} ms")
    out.append("")
    out.append(f"reference (issue 2, same machine kind): {REFERENCE}")
    if docker_note:
        out.append(f"docker: not installed, no side-by-side figures ({docker_note})")
    else:
        out.append("docker: measured side by side above (a private dockerd in the lab's host namespace)")
    print("\n".join(out), flush=True)
    return {"differences": results, "goals": goals}


# -- main ----------------------------------------------------------------------


def machine(load_before: str) -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_before": load_before,
        "load_after": load_average(),
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="timed runs per case (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per case first (default 3)")
    p.add_argument(
        "--port",
        type=int,
        default=18080,
        help="host port of the -p case (default 18080; 0: a free port chosen by dockyard each run)",
    )
    p.add_argument("--smoke", action="store_true", help="2 runs per case and 1 warm-up: checks it works")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON to PATH")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup = 2, 1
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1 and --warmup at least 0")
    if not 0 <= args.port <= 65534:
        p.error("--port must be 0 or a port number below 65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("run_latency: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    load_before = load_average()
    lab = Lab("dybench")
    docker_note = PrivateDocker.why_not()
    docker = PrivateDocker(lab) if docker_note is None else None
    status = 0
    problems: list[str] = []
    try:
        lab.setup()
        lab.start_daemon()
        lab.dy("run", "-d", "--name", TARGET, "sleep", "infinity")
        lab.remember_container(TARGET)
        cases = dockyard_cases(lab, args.port)
        if docker is not None:
            docker.start()
            cases += docker.cases(args.port + 1 if args.port else 0)
        print(
            f"timing {len(cases)} cases: {args.warmup} warm-up and {args.runs} timed runs each ...",
            flush=True,
        )
        orders = measure(cases, args.runs, args.warmup)
        host_info = machine(load_before)
        derived = report(cases, args.runs, docker_note, host_info)
        if args.json:
            raw = {
                "runs": args.runs,
                "warmup": args.warmup,
                "machine": host_info,
                "cases": [
                    {"tool": c.tool, "label": c.label, "argv": c.argv, "ms": c.ms, **summary(c.ms)}
                    for c in cases
                ],
                "rounds": orders,
                "docker": None if docker_note else "side by side",
                "docker_note": docker_note,
                **derived,
            }
            Path(args.json).write_text(json.dumps(raw, indent=2) + "\n")
            print(f"raw results written to {args.json}")
    except (BenchError, LabError) as e:
        print(f"run_latency: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\nrun_latency: interrupted", file=sys.stderr)
        status = 130
    except Interrupted as e:
        print(f"\nrun_latency: interrupted ({e})", file=sys.stderr)
        status = 128 + e.signum
    finally:
        with signals_ignored():
            if docker is not None:
                problems += docker.stop()
            problems += lab.teardown()
            problems += [f"left behind: {thing}" for thing in lab.leftovers()]
    for problem in problems:
        print(f"run_latency: cleanup: {problem}", file=sys.stderr)
    if problems and status == 0:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
