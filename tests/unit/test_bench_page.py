"""bench/suite.py's page: where a goal is missed, it counts the misses and links bench/README.md's
section on what the profiles showed (the anchor exists there); where none is, it says nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import suite  # noqa: E402
from _report import Goal, Report  # noqa: E402


def _results(*goals: Goal) -> dict:
    report = Report(key="run_latency", title="1. Run latency", method="m.", goals=list(goals))
    return {
        "started": "2026-12-07T00:00:00+00:00",
        "mode": "full",
        "seconds": 1.0,
        "machine": {"cpus": 2, "kernel": "6.18", "python": "3.11.7", "load_before": "0", "load_after": "0"},
        "tools": {},
        "file": "bench/results/x.json",
        "scripts": {"run_latency": {"status": 0, "seconds": 1.0, "output": "", "report": report.to_dict()}},
    }


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as '-'."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_a_missed_goal_is_counted_and_linked_to_what_the_profiles_showed(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    results = _results(Goal("a within 40 ms", False, "62.8 ms"), Goal("b", True, "1"), Goal("c", False, "2"))
    suite.render(results, page, tmp_path / "docs" / "benchmarks")
    text = page.read_text()
    (line,) = [x for x in text.splitlines() if "NOT met in this run" in x]
    assert line.startswith("2 goal(s) NOT met in this run.")
    (link,) = re.findall(r"\]\(([^)]+)\)", line)
    target, anchor = link.split("#")
    readme = (page.parent / target).resolve()
    assert readme == BENCH / "README.md"
    assert anchor in _anchors(readme.read_text())


def test_no_missed_goal_no_pointer(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    suite.render(_results(Goal("b", True, "1")), page, tmp_path / "benchmarks")
    assert "NOT met in this run" not in page.read_text()
