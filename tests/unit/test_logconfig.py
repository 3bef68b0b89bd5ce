"""The daemon log's one format, as a process that configured it writes it to its stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = textwrap.dedent("""
    import logging, sys
    from dockyard import logconfig
    logconfig.configure(*sys.argv[1:])
    logconfig.configure(*sys.argv[1:])  # again: still one line per record
    ours, theirs = logging.getLogger("dockyard.engine.reconcile"), logging.getLogger("pyroute2.ndb")
    ours.debug("a detail")
    ours.info("restore: veth1234567 removed")
    ours.warning("a port is not held")
    theirs.info("their chatter")
    theirs.warning("their warning")
    try:
        1 / 0
    except ZeroDivisionError:
        ours.exception("monitor: a check failed")
""")

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ([\w.]+)\[(\d+)\]: (.*)$"
)


def _log(*args: str) -> tuple[list[tuple[str, str, str]], str, int]:
    """The records a process logged (level, logger, message), its whole stderr, its pid."""
    p = subprocess.run(
        [sys.executable, "-c", f"import os; print(os.getpid(), flush=True)\n{SCRIPT}", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    pid = int(p.stdout)
    records = []
    for line in p.stderr.splitlines():
        m = LINE.match(line)
        if m:
            assert int(m[3]) == pid, line
            records.append((m[1], m[2], m[4]))
    return records, p.stderr, pid


def test_records_carry_time_level_module_and_process() -> None:
    records, stderr, _ = _log()
    assert records == [
        ("INFO", "dockyard.engine.reconcile", "restore: veth1234567 removed"),
        ("WARNING", "dockyard.engine.reconcile", "a port is not held"),
        ("WARNING", "pyroute2.ndb", "their warning"),
        ("ERROR", "dockyard.engine.reconcile", "monitor: a check failed"),
    ]
    # An exception comes with its traceback, under its record.
    tail = stderr.split("monitor: a check failed\n", 1)[1]
    assert tail.startswith("Traceback (most recent call last):") and "ZeroDivisionError" in tail, stderr


def test_debug_shows_our_details_but_not_other_libraries_chatter() -> None:
    records, _, _ = _log("debug")
    assert ("DEBUG", "dockyard.engine.reconcile", "a detail") in records
    assert not [r for r in records if r[2] == "their chatter"]


def test_warning_level_leaves_out_info() -> None:
    records, _, _ = _log("warning")
    assert [r[0] for r in records] == ["WARNING", "WARNING", "ERROR"]


def test_an_unknown_level_is_refused() -> None:
    from dockyard import logconfig

    with pytest.raises(ValueError, match="'loud' is not one of debug, info, warning, error"):
        logconfig.configure("loud")
