"""Named steps of mutating operations: undo on failure, and fault injection.

Every mutation goes through named steps (`step("run.veth")`). On failure the
undo callables pushed so far run in reverse and secondary errors are kept
(style.md 3.4). For tests of crash safety, `DOCKYARD_FAULT=<step>` (or
`<step>@<n>` for its n-th passage) in the daemon's environment makes it die
with SIGKILL when it reaches that step, exactly as a crash would, so that
recovery can be proven step by step; `<step>[@<n>]:error` makes that step
raise a KernelError instead, as a failing kernel call would, so that the
undo of a handled failure can be proven too. Several faults are given
apart by commas. An undo step pushed with a name passes step `undo.<name>`
when it runs, so that a failing rollback can be injected as well
(`run.spawned:error,undo.run.sandbox:error`). `DOCKYARD_TRACE=1` prints each
step with a timestamp, which is also how tests list the steps an operation
takes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from dockyard.errors import DockyardError, KernelError

log = logging.getLogger(__name__)

FAULT_ENV = "DOCKYARD_FAULT"
TRACE_ENV = "DOCKYARD_TRACE"


def _faults(spec: str) -> dict[str, tuple[int, str]]:
    """{step: (the passage it fails at, "error" or "" for a crash)} from DOCKYARD_FAULT."""
    out = {}
    for part in spec.split(","):
        where, _, kind = part.strip().partition(":")
        name, _, nth = where.partition("@")
        if name:
            out[name] = (int(nth) if nth.isdigit() else 1, kind)
    return out


_faults_at = _faults(os.environ.get(FAULT_ENV, ""))
_trace = bool(os.environ.get(TRACE_ENV))
# DOCKYARD_DELAY=<step>=<seconds>: a slow step, for tests of concurrency. <step>=<absolute path>:
# the step waits until that file exists (at most GATE_BOUND seconds), so a test that must see
# the step held up opens the gate once it has looked, never racing a clock it does not control.
_delay_name, _, _delay_value = os.environ.get("DOCKYARD_DELAY", "").partition("=")
GATE_BOUND = 300.0
_passages: dict[str, int] = {}


def step(name: str) -> None:
    """Mark a step; die here if this is the step a test asked to crash at."""
    if _trace:
        print(f"trace {time.monotonic() * 1000:.1f} {name}", file=sys.stderr, flush=True)
    if _delay_name == name:
        _hold()
    fault = _faults_at.get(name)
    if fault is not None:
        _passages[name] = _passages.get(name, 0) + 1
        at, kind = fault
        if _passages[name] == at:
            if kind == "error":
                raise KernelError(f"injected failure at step {name}")
            os.kill(os.getpid(), signal.SIGKILL)


def _hold() -> None:
    if not _delay_value.startswith("/"):
        time.sleep(float(_delay_value or 0))
        return
    end = time.monotonic() + GATE_BOUND
    while not os.path.exists(_delay_value) and time.monotonic() < end:
        time.sleep(0.01)


class Undo:
    """Undo steps, run in reverse on failure; secondary errors are collected and reported.

    A caller that failed calls rollback(error, what) and re-raises error: the
    undo steps run, and any that fail are logged with the original failure's
    chain and named in the error's message ("rollback also failed: ..."), so
    that the user learns what was left behind and the daemon's log has why.
    What was left is gc's to finish (`dockyard system gc`).
    """

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, undo: Callable[[], object], name: str = "") -> None:
        """Push an undo step; a named one passes step `undo.<name>` when it runs."""
        self.steps.append((name, undo))

    def run(self) -> list[Exception]:
        errors: list[Exception] = []
        for name, undo in reversed(self.steps):
            try:
                if name:
                    step(f"undo.{name}")
                undo()
            except Exception as e:
                errors.append(e)
        self.steps.clear()
        return errors

    def rollback(self, error: BaseException, what: str) -> list[Exception]:
        """Undo after `error` (raised by `what`), reporting the steps that failed; returns them."""
        failed = self.run()
        if failed:
            report_rollback(error, what, failed)
        return failed

    def clear(self) -> None:
        self.steps.clear()


def report_rollback(error: BaseException, what: str, failed: list[Exception]) -> None:
    """Log failed undo steps with the chain of the failure that made them run, and name them on it."""
    summary = "; ".join(str(e) or repr(e) for e in failed)
    log.error(
        "%s failed (%s); rollback also failed: %s",
        what,
        str(error),  # as it was: the note below goes into the message
        summary,
        exc_info=(type(error), error, error.__traceback__),
    )
    for e in failed:
        log.error("rollback step of %s failed", what, exc_info=(type(e), e, e.__traceback__))
    note = f"rollback also failed: {summary}; `dockyard system gc` finishes it"
    if isinstance(error, DockyardError):
        error.message = f"{error.message} ({note})"
        error.args = (error.message, *error.args[1:])
    else:
        error.add_note(note)
