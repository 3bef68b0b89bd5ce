"""What every side-by-side script does around its measurement: a lab per tool that can run,
and at the end its exit status, its cleanup and its results file.

The scripts import it after putting demo/ on sys.path (netlab is there).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from netlab import Interrupted, Lab, signals_ignored


class Daemon(Protocol):
    def stop(self) -> list[str]: ...


class Reference(Protocol):
    @staticmethod
    def why_not() -> str | None: ...


def labs_for(references: Iterable[tuple[str, bool, Reference]]) -> tuple[dict[str, Lab], list[str]]:
    """A lab for dockyard, and one per reference tool (name, not asked for, its class) that can
    run here; the notes say why the others are not measured."""
    labs = {"dockyard": Lab("dybench")}
    notes: list[str] = []
    for tool, not_asked, cls in references:
        why = f"not asked for (--smoke or --no-{tool})" if not_asked else cls.why_not()
        if why:
            notes.append(f"{tool}: not measured: {why}")
        else:
            labs[tool] = Lab("dybench")
    return labs, notes


def failure_status(script: str, e: BaseException) -> int:
    """Say why the script stopped; the exit status a shell expects for it."""
    if isinstance(e, Interrupted):
        print(f"\n{script}: interrupted ({e})", file=sys.stderr)
        return 128 + e.signum
    if isinstance(e, KeyboardInterrupt):
        print(f"\n{script}: interrupted", file=sys.stderr)
        return 130
    print(f"{script}: {e}", file=sys.stderr)
    return 1


def clean_up(daemons: Iterable[Daemon | None], labs: Iterable[Lab], work: Path) -> list[str]:
    """Stop the reference daemons by their PID, tear the labs down: what was left behind."""
    problems: list[str] = []
    with signals_ignored():
        for daemon in daemons:
            if daemon is not None:
                problems += daemon.stop()
        for lab in labs:
            problems += lab.teardown()
            problems += [f"left behind: {thing}" for thing in lab.leftovers()]
        shutil.rmtree(work, ignore_errors=True)
    return problems


def exit_status(script: str, status: int, problems: list[str]) -> int:
    """A cleanup problem fails a run that had succeeded."""
    for problem in problems:
        print(f"{script}: cleanup: {problem}", file=sys.stderr)
    return 1 if problems and status == 0 else status


def write_results(path: str, report: Any, raw: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps({"report": report.to_dict(), "raw": raw}, indent=2) + "\n")
    print(f"raw results written to {path}")
