"""A benchmark's findings as data: tables, goals, notes and plots.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). Every comparison script builds one Report, prints it as text
and writes it into its JSON (`{"report": ..., "raw": ...}`); bench/suite.py
gathers the reports of a run into bench/results/<timestamp>.json and renders
docs/benchmarks.md with PNG plots from them. The scripts own the figures;
this module owns how a finding is shown, so that the terminal, the JSON and
the page always say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import summary


def spread(values: Sequence[float], digits: int = 1, ends: int = 0, lo: str = "p10", hi: str = "p90") -> str:
    """A cell: the median and its spread, e.g. "53.0 (41-60)"; "-" when nothing was measured."""
    if not values:
        return "-"
    s = summary(values)
    return f"{s['median']:,.{digits}f} ({s[lo]:,.{ends}f}-{s[hi]:,.{ends}f})"


def times(value: float) -> str:
    """A ratio cell, e.g. "0.22x"."""
    return f"{value:.2f}x"


Cell = Callable[[str, Any], "str | None"]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]  # cells already formatted; numbers right-aligned in text

    @staticmethod
    def grid(
        title: str, rows: dict[str, Any], columns: list[tuple[str, Sequence[str], Cell]], first: str = ""
    ) -> Table:
        """A row per item of `rows` (label -> key); for each (header, tools, cell) of `columns`, a
        column per tool, headed by the header with the tool in it ("{} ms"), cell(tool, key) in it
        ("-" where it says None)."""
        head = [first, *(header.format(t) for header, tools, _ in columns for t in tools)]
        body = [
            [label, *(_dash(cell(t, key)) for _, tools, cell in columns for t in tools)]
            for label, key in rows.items()
        ]
        return Table(title, head, body)


def _dash(cell: str | None) -> str:
    return "-" if cell is None else cell


@dataclass
class Goal:
    text: str  # what was aimed at, e.g. "bridge run under 60 ms"
    met: bool
    measured: str  # the figure it is judged on, e.g. "53.0 ms"
    comparison: str = ""  # the side-by-side ratio, e.g. "0.17x Docker"

    @property
    def verdict(self) -> str:
        return "met" if self.met else "NOT met"


@dataclass
class Series:
    name: str
    x: list[Any]  # numbers for a line plot, labels for a bar plot
    y: list[float]
    lo: list[float] | None = None  # spread below y (p10), drawn as an error bar
    hi: list[float] | None = None  # spread above y (p90)

    @staticmethod
    def of(
        name: str, x: list[Any], samples: list[Sequence[float]], lo: str = "p10", hi: str = "p90"
    ) -> Series:
        """Medians of the samples, with their spread."""
        s = [summary(v) for v in samples]
        return Series(name, x, [v["median"] for v in s], [v[lo] for v in s], [v[hi] for v in s])


@dataclass
class Plot:
    name: str  # file stem of the PNG
    title: str
    kind: str  # "bar" (grouped by x label) or "line"
    xlabel: str
    ylabel: str
    series: list[Series]
    logy: bool = False


@dataclass
class Report:
    key: str  # the script, e.g. "run_latency"
    title: str
    method: str  # how it measures, one paragraph
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Report:
        return Report(
            key=d["key"],
            title=d["title"],
            method=d["method"],
            tables=[Table(**t) for t in d.get("tables", [])],
            goals=[Goal(**g) for g in d.get("goals", [])],
            notes=list(d.get("notes", [])),
            plots=[
                Plot(**{**p, "series": [Series(**s) for s in p.get("series", [])]})
                for p in d.get("plots", [])
            ],
        )

    # -- as text, for the terminal ----------------------------------------------

    def text(self) -> str:
        out = [self.title, "=" * len(self.title)]
        for t in self.tables:
            if t.rows:
                out += ["", t.title, *_text_table(t.columns, t.rows)]
        if self.goals:
            out += ["", "goals"]
            out += _text_table(
                ["goal", "measured", "side by side", "verdict"],
                [[g.text, g.measured, g.comparison or "-", g.verdict] for g in self.goals],
            )
        if self.notes:
            out += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(out)

    # -- as Markdown, for docs/benchmarks.md --------------------------------------

    def markdown(self, images: dict[str, str]) -> str:
        """The report as a Markdown section; `images` maps plot names to their relative paths."""
        out = [f"## {self.title}", "", self.method, ""]
        for t in self.tables:
            if t.rows:
                out += [f"**{t.title}**", "", *_md_table(t.columns, t.rows), ""]
        for p in self.plots:
            if p.name in images:
                out += [f"![{p.title}]({images[p.name]})", ""]
        if self.goals:
            out += ["**Goals**", ""]
            out += _md_table(
                ["goal", "measured", "side by side", "verdict"],
                [[g.text, g.measured, g.comparison or "-", f"**{g.verdict}**"] for g in self.goals],
            )
            out.append("")
        if self.notes:
            out += [f"- {n}" for n in self.notes]
            out.append("")
        return "\n".join(out)


def _is_number(cell: str) -> bool:
    cell = cell.strip().rstrip("x%").replace(",", "").lstrip("+-")
    return bool(cell) and cell.replace(".", "", 1).isdigit()


def _text_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            parts.append(cell.rjust(widths[i]) if i and _is_number(cell) else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    numeric = [
        bool(rows) and all(_is_number(r[i]) or r[i] in ("-", "") for r in rows) for i in range(len(columns))
    ]
    align = ["---:" if i and numeric[i] else "---" for i in range(len(columns))]
    return [
        "| " + " | ".join(esc(c) for c in columns) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(esc(c) for c in r) + " |" for r in rows),
    ]


# -- plots ---------------------------------------------------------------------------


def draw(plot: Plot, path: Path) -> None:
    """A PNG of the plot (matplotlib, imported only here: the scripts do not need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    if plot.kind == "bar":
        labels = list(dict.fromkeys(x for s in plot.series for x in s.x))
        width = 0.8 / max(1, len(plot.series))
        for i, s in enumerate(plot.series):
            pos = [labels.index(x) + (i - (len(plot.series) - 1) / 2) * width for x in s.x]
            err = _errors(s)
            ax.bar(pos, s.y, width, label=s.name, yerr=err, capsize=3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20 if max(len(str(x)) for x in labels) > 8 else 0, ha="right")
    else:
        for s in plot.series:
            err = _errors(s)
            ax.errorbar(s.x, s.y, yerr=err, label=s.name, marker="o", markersize=3, capsize=2)
    if plot.logy:
        ax.set_yscale("log")
    ax.set_title(plot.title)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.grid(axis="y", alpha=0.3)
    if len(plot.series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _errors(s: Series) -> list[list[float]] | None:
    if s.lo is None or s.hi is None:
        return None
    return [
        [max(0.0, y - lo) for y, lo in zip(s.y, s.lo, strict=True)],
        [max(0.0, hi - y) for y, hi in zip(s.y, s.hi, strict=True)],
    ]
