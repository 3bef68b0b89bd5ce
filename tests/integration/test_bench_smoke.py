"""Every benchmark script runs once with tiny counts, so that none of them rots.

The figures are not checked (tests never assert a time); the scripts must
run to the end, print their table and leave nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs(script: str, tmp_path: Path) -> None:
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    out = tmp_path / "result.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.strip(), "a benchmark prints a table"
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    # Bench labs are named dybench-*; other namespaces may come and go meanwhile.
    left = {n for n in after - before if n.startswith("dybench")}
    assert not left, f"namespaces left behind: {left}"
