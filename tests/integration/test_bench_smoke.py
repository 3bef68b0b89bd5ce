"""The benchmark suite runs once with tiny counts and no reference tools, so that none of it rots.

`bench/suite.py --smoke` runs every script once (each with `--smoke`) and
renders the page from their reports, as `make bench` does at full size. The
figures are not checked (tests never assert a time); every script must run
to the end, report, and leave nothing behind, and the page must show each
comparison with its plots. "Nothing behind" is judged on what the scripts
made: their labs write every namespace, directory and process into a ledger
this test names ($DOCKYARD_LAB_LEDGER), never on names another run (a
`make bench` on the same machine, say) may share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab import REPO

sys.path.insert(0, str(REPO / "demo"))

from netlab import LEDGER, ledger_leftovers

BENCH = REPO / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.stem != "suite")


def test_every_benchmark_runs_and_the_page_renders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ledger = tmp_path / "ledger"
    r = subprocess.run(
        [sys.executable, str(BENCH / "suite.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, LEDGER: str(ledger)},
    )
    results = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(results) == 1, f"one results file expected: {r.stdout[-3000:]}{r.stderr[-2000:]}"
    scripts = results[0]["scripts"]
    assert sorted(scripts) == SCRIPTS, "the suite runs every script in bench/"
    failed = {name: rec["output"][-1500:] for name, rec in scripts.items() if rec["status"] != 0}
    assert not failed, f"scripts failed: {failed}"
    assert r.returncode == 0, r.stderr[-2000:]
    for name, rec in scripts.items():
        assert rec["output"].strip(), f"{name} printed nothing"

    page = (out / "benchmarks.md").read_text()
    for name, rec in scripts.items():
        report = rec.get("report")
        assert report, f"{name} wrote no report"
        assert any(t["rows"] for t in report["tables"]), f"{name} printed no table"
        assert f"## {report['title']}" in page
        for plot in report["plots"]:
            png = out / "benchmarks" / f"{plot['name']}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
            assert f"benchmarks/{plot['name']}.png" in page

    # Every script made labs, and recorded them; none of what they made is left.
    records = ledger.read_text().splitlines()
    for kind in ("netns", "dir", "process"):
        assert any(line.startswith(f"{kind} ") for line in records), f"no {kind} in the ledger"
    left = ledger_leftovers(ledger)
    assert not left, f"left behind: {left}"
