"""The benchmark suite runs once with tiny counts and no reference tools, so that none of it rots.

`bench/suite.py --smoke` runs every script once (each with `--smoke`) and
renders the page from their reports, as `make bench` does at full size. The
figures are not checked (tests never assert a time); every script must run
to the end, report, and leave nothing behind, and the page must show each
comparison with its plots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.stem != "suite")


def _namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def test_every_benchmark_runs_and_the_page_renders(tmp_path: Path) -> None:
    before = _namespaces()
    r = subprocess.run(
        [sys.executable, str(BENCH / "suite.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(results) == 1, f"one results file expected: {r.stdout[-3000:]}{r.stderr[-2000:]}"
    scripts = results[0]["scripts"]
    assert sorted(scripts) == SCRIPTS, "the suite runs every script in bench/"
    failed = {name: rec["output"][-1500:] for name, rec in scripts.items() if rec["status"] != 0}
    assert not failed, f"scripts failed: {failed}"
    assert r.returncode == 0, r.stderr[-2000:]
    for name, rec in scripts.items():
        assert rec["output"].strip(), f"{name} printed nothing"

    page = (tmp_path / "benchmarks.md").read_text()
    for name, rec in scripts.items():
        report = rec.get("report")
        if report:
            assert f"## {report['title']}" in page
            for plot in report["plots"]:
                png = tmp_path / "benchmarks" / f"{plot['name']}.png"
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
                assert f"benchmarks/{plot['name']}.png" in page
        else:
            assert f"## {name}" in page

    # Bench namespaces are named dybench-* (or dyt-b* for the DNS one); others may come and go meanwhile.
    left = {n for n in _namespaces() - before if n.startswith(("dyb", "dyt-b"))}
    assert not left, f"namespaces left behind: {left}"
