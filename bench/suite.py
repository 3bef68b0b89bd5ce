"""Every benchmark in one run: results in bench/results/, the page in docs/benchmarks.md.

    .venv/bin/python bench/suite.py                 # make bench: everything, reference tools included
    .venv/bin/python bench/suite.py --smoke --out DIR   # make bench-smoke: tiny counts, no reference tools
    .venv/bin/python bench/suite.py --only run_latency,cni_bench
    .venv/bin/python bench/suite.py --render bench/results/20261201T150000Z.json

Runs each comparison script in turn (each makes and removes its own
throwaway namespaces; the root namespace is never touched), with `--json`
into a work directory, then writes one JSON document holding every script's
report, raw figures, exit status, duration and output, and renders it as
Markdown with PNG plots (matplotlib). A script that fails is recorded as
failed, its output kept, and the run goes on; the exit status is 1 when any
failed. Figures are never checked against anything here: the page says
which goals were met and which were not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import load_average, machine
from _report import Report, draw

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The comparisons of the benchmark issue first, in its order; then the others.
SCRIPTS = (
    "run_latency",
    "cni_bench",
    "throughput",
    "publish_ports",
    "scale",
    "networks",
    "dns_latency",
    "robustness",
    "docker_plugin",
    "images",
    "overlay",
    "docker_plugin_calls",
    "ipv6",
)
# bench/README.md's section on what the profiles showed where a goal is missed.
WHY_ANCHOR = "where-a-goal-is-missed-the-report-says-why"
TOOLS = (
    ("dockerd", ["dockerd", "--version"]),
    ("podman", ["podman", "--version"]),
    ("netavark", ["/usr/lib/podman/netavark", "--version"]),
    ("CNI plugins", ["/usr/lib/cni/bridge", "--version"]),
    ("iperf3", ["iperf3", "--version"]),
)


def tool_versions() -> dict[str, str]:
    out = {}
    for name, argv in TOOLS:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = (r.stdout or r.stderr).strip().splitlines()
            out[name] = text[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "not installed"
    return out


def run_script(name: str, work: Path, smoke: bool, extra: list[str]) -> dict[str, object]:
    """One script with --json; what it reported, printed and returned."""
    path = BENCH / f"{name}.py"
    out = work / f"{name}.json"
    argv = [sys.executable, str(path), "--json", str(out), *(["--smoke"] if smoke else []), *extra]
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    status = proc.wait()
    record: dict[str, object] = {
        "status": status,
        "seconds": round(time.monotonic() - started, 1),
        "argv": argv[1:],
        "output": "".join(lines)[-20000:],
    }
    if out.exists():
        data = json.loads(out.read_text())
        if isinstance(data, dict) and "report" in data:
            record["report"] = data["report"]
            record["raw"] = data.get("raw")
        else:
            record["raw"] = data
    return record


# -- the page ------------------------------------------------------------------------


def render(results: dict, page: Path, images_dir: Path) -> None:
    """docs/benchmarks.md (or `page`) and its PNG plots from one results document."""
    images_dir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(images_dir, page.parent)
    reports: list[tuple[str, Report | None, dict]] = []
    for name, record in results["scripts"].items():
        rep = Report.from_dict(record["report"]) if record.get("report") else None
        reports.append((name, rep, record))

    m = results["machine"]
    out = [
        "# Benchmarks",
        "",
        "dockyard measured side by side with the tools people use today, in one run on one machine.",
        "Repeat it with `make bench` (it installs the reference tools from apt, runs every comparison in",
        "throwaway namespaces, writes `bench/results/<timestamp>.json` and renders this page).",
        "Every figure is a median of repeated runs with its spread; the tools alternate within each round;",
        "goals are printed as met or not, never tuned to pass.",
        "",
        f"- run: {results['started']} ({results['mode']}), {results['seconds']:.0f} s in all; results in "
        f"`{results['file']}`",
        f"- machine: {m['cpus']} CPUs, Linux {m['kernel']}, Python {m['python']}; "
        f"load average {m['load_before']} before, {m['load_after']} after",
        "- tools: " + "; ".join(f"{k}: {v}" for k, v in results["tools"].items()),
        "",
        "## Goals",
        "",
        "| comparison | goal | measured | side by side | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _name, rep, _record in reports:
        if rep is None:
            continue
        for g in rep.goals:
            cells = [rep.title, g.text, g.measured, g.comparison or "-", f"**{g.verdict}**"]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    readme = os.path.relpath(BENCH / "README.md", page.parent)
    missed = sum(not g.met for _, rep, _ in reports if rep is not None for g in rep.goals)
    if missed:
        out += [
            "",
            f"{missed} goal(s) NOT met in this run. Each row gives the figure it is judged on and, "
            "beside it, what bounds it here (the bare interpreter, the floor of any Python client, "
            "the kernel's own path measured in the same rounds, dockyardd's CPU). What the profiles "
            f"showed, step by step, is in [bench/README.md]({readme}#{WHY_ANCHOR}).",
        ]
    failed = [name for name, _, record in reports if record["status"] != 0]
    if failed:
        out += ["", f"Scripts that failed in this run (their output is below): {', '.join(failed)}."]
    out.append("")
    for name, rep, record in reports:
        images = {}
        if rep is not None:
            for plot in rep.plots:
                file = images_dir / f"{plot.name}.png"
                draw(plot, file)
                images[plot.name] = f"{rel}/{file.name}"
            out.append(rep.markdown(images))
        else:
            out += [f"## {name}", "", f"`bench/{name}.py` ({record['seconds']} s), as it printed:", "", "```"]
            out += [line for line in str(record["output"]).splitlines() if line.strip()][-60:]
            out += ["```", ""]
        if record["status"] != 0:
            out += [f"**`bench/{name}.py` exited {record['status']}.** The end of its output:", "", "```"]
            out += str(record["output"]).strip().splitlines()[-15:]
            out += ["```", ""]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(out).rstrip() + "\n")


# -- main ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--smoke", action="store_true", help="every script with --smoke (tiny, no reference tools)"
    )
    p.add_argument("--only", help="comma-separated script names (default: all)")
    p.add_argument("--list", action="store_true", help="print the scripts the suite runs, in order")
    p.add_argument(
        "--out", type=Path, help="write results and the page here instead of bench/results and docs/"
    )
    p.add_argument("--render", type=Path, metavar="RESULTS", help="only render the page from a results file")
    args = p.parse_args(argv)
    results_dir = args.out or BENCH / "results"
    page = (args.out / "benchmarks.md") if args.out else REPO / "docs" / "benchmarks.md"
    images = page.parent / "benchmarks"
    if args.list:
        print("\n".join(SCRIPTS))
        return 0
    if args.render:
        render(json.loads(args.render.read_text()), page, images)
        print(f"rendered {page}")
        return 0
    if os.geteuid() != 0:
        print("suite: needs root (every script makes network namespaces)", file=sys.stderr)
        return 1
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n]
    unknown = [n for n in names if not (BENCH / f"{n}.py").exists()]
    if unknown:
        p.error(f"no such script: {', '.join(unknown)}")
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    load_before = load_average()
    t0 = time.monotonic()
    scripts = {}
    with tempfile.TemporaryDirectory(prefix="dybench-suite-") as work:
        for name in names:
            scripts[name] = run_script(name, Path(work), args.smoke, [])
    results_dir.mkdir(parents=True, exist_ok=True)
    file = results_dir / f"{stamp}.json"
    results = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "seconds": time.monotonic() - t0,
        "machine": machine(load_before),
        "tools": tool_versions(),
        "file": os.path.relpath(file, REPO) if file.is_relative_to(REPO) else str(file),
        "scripts": scripts,
    }
    file.write_text(json.dumps(results, indent=1) + "\n")
    render(results, page, images)
    failed = [n for n, r in scripts.items() if r["status"] != 0]
    print(f"\nresults: {file}\npage: {page}")
    if failed:
        print(f"suite: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
