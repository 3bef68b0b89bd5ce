"""What every script does around its measurement: its options, its labs, its ending.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). A script parses its options with `options()`, then hands
`main()` a function that measures in a `Run` and returns its Report and raw
figures. `main()` checks for root, turns Ctrl-C and SIGTERM into exceptions,
prints the report, writes `{"report": ..., "raw": ...}` to --json, and at
the end, whatever happened, stops the reference daemons by PID and tears
every lab down; what had to be forced fails a run that had succeeded.

The labs are the integration tests' (tests/lab.py through demo/netlab.py):
a host namespace, an upstream namespace on TEST-NET addresses and a fresh
$ROOT per tool, so that no tool's firewall slows another's and nothing
touches the root namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from _common import BenchError, descendants, load_average, machine, machine_line, process_table
from _reference import PrivateDocker, PrivatePodman
from _report import Report
from netlab import (
    HOST_ADDR,
    HOST_IF,
    UP_ADDR,
    Interrupted,
    LabError,
    ScriptLab,
    raise_on_termination,
    record,
    signals_ignored,
)

__all__ = [
    "HOST_ADDR",
    "HOST_IF",
    "UP_ADDR",
    "LabError",
    "Run",
    "ScriptLab",
    "engine_parts",
    "main",
    "options",
]


class Daemon(Protocol):
    def stop(self) -> list[str]: ...


class Reference(Protocol):
    @staticmethod
    def why_not() -> str | None: ...


def options(doc: str, smoke: str, references: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A parser with the options every script has: --smoke, --json and a --no-TOOL per reference."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help=smoke)
    p.add_argument("--json", metavar="PATH", help="also write the report and raw results as JSON to PATH")
    for tool in references:
        p.add_argument(f"--no-{tool}", action="store_true", help=f"do not measure {tool}")
    return p


class Run:
    """One run of a script: its labs, the reference daemons it started, a work directory, notes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.load_before = load_average()
        self.work = Path(tempfile.mkdtemp(prefix=f"dybench-{name}-"))
        record("dir", str(self.work))
        self.labs: list[ScriptLab] = []
        self.daemons: list[Daemon] = []
        self.notes: list[str] = []
        self.problems: list[str] = []  # of labs torn down early
        self.failures: list[str] = []  # found while measuring: the report is still printed, the run fails

    def lab(self, daemon: bool = False) -> ScriptLab:
        """A lab of its own, set up; with daemon, dockyardd started in it."""
        lab = ScriptLab("dybench")
        self.labs.append(lab)
        lab.setup()
        if daemon:
            lab.start_daemon()
        return lab

    def retire(self, lab: ScriptLab) -> None:
        """Tear a lab down before the run ends (what it left is a problem of the run)."""
        self.labs.remove(lab)
        self.problems += lab.teardown()

    def can_run(self, tool: str, cls: Reference, skip: bool) -> bool:
        """Whether a reference tool runs here; a note says why when it does not."""
        why = f"not asked for (--smoke or --no-{tool})" if skip else cls.why_not()
        if why:
            self.notes.append(f"{tool}: not measured: {why}")
        return why is None

    def docker(self, lab: ScriptLab | None = None, bip: str = "192.0.2.1/24") -> PrivateDocker:
        """A private dockerd in a lab of its own (a new one unless given), started."""
        docker = PrivateDocker((lab or self.lab()).host, self.work / "docker", bip=bip)
        self.daemons.append(docker)
        docker.start()
        self.notes.append(f"docker: {docker.version()}, a private dockerd in its lab's host namespace")
        return docker

    def podman(self) -> PrivatePodman:
        podman = PrivatePodman(self.lab().host, self.work / "podman")
        self.daemons.append(podman)
        podman.start()
        self.notes.append(f"podman: {podman.version()} (netavark, crun, --cgroups=disabled)")
        return podman

    def close(self) -> list[str]:
        """Stop the reference daemons by their PID, tear the labs down: what was left behind."""
        problems = self.problems
        with signals_ignored():
            for daemon in self.daemons:
                problems += daemon.stop()
            for lab in self.labs:
                problems += lab.teardown()
            shutil.rmtree(self.work, ignore_errors=True)
        return problems


def engine_parts(lab: ScriptLab) -> dict[str, list[int]]:
    """dockyard's processes in a lab, by part: dockyardd, its shim, its resolver, their other
    descendants, and "own": the containers' processes (the shim's descendants)."""
    table = process_table()
    daemon, shim, resolver = (lab.pid_of(f) for f in ("dockyardd.pid", "shim.pid", "dns.pid"))
    parts: dict[str, list[int]] = {"dockyardd": [], "shim": [], "resolver": [], "other": [], "own": []}
    if daemon is None or daemon not in table:
        return parts
    own = descendants(table, shim) if shim in table else set()
    parts["dockyardd"] = [daemon]
    parts["shim"] = [shim] if shim is not None and shim in table else []
    parts["resolver"] = [resolver] if resolver is not None and resolver in table else []
    parts["other"] = sorted(descendants(table, daemon) - own - {shim, resolver})
    parts["own"] = sorted(own)
    return parts


Measure = Callable[[Run], tuple[Report, dict[str, Any]]]


def main(name: str, args: argparse.Namespace, measure: Measure, needs_root: bool = True) -> int:
    """Measure, print the report, write the JSON, clean up; the exit status.

    0 when the run succeeded, 1 when a command failed or cleanup had to force
    something, 130 (or 128 + the signal) when interrupted. Times are never
    judged here: goals are printed met or NOT met.
    """
    if needs_root and os.geteuid() != 0:
        print(f"{name}: needs root (it makes network namespaces)", file=sys.stderr)
        return 1
    raise_on_termination()
    run = Run(name)
    status = 0
    problems: list[str] = []
    try:
        report, raw = measure(run)
        info = machine(run.load_before)
        report.method = f"{report.method} {machine_line(info)}".strip()
        report.notes = [*run.notes, *report.notes]
        print(report.text(), flush=True)
        if args.json:
            document = {"report": report.to_dict(), "raw": {**raw, "machine": info}}
            Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
            print(f"raw results written to {args.json}")
        for failure in run.failures:
            print(f"{name}: {failure}", file=sys.stderr)
            status = 1
    except (BenchError, LabError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        status = 130
    except Interrupted as e:
        print(f"\n{name}: interrupted ({e})", file=sys.stderr)
        status = 128 + e.signum
    finally:
        problems = run.close()
    for problem in problems:
        print(f"{name}: cleanup: {problem}", file=sys.stderr)
    return 1 if problems and status == 0 else status
