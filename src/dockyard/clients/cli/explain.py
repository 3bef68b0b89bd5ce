"""dockyard explain, trace and graph: the packet path, for people (and tools with --format json).

Thin: the daemon reads the kernel and reasons; this module prints. `graph`
renders DOT to SVG or PNG with Graphviz's `dot` command, run as a child
process (no library is imported into the client).
"""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from typing import Any, TextIO

GRAPH_FORMATS = ("dot", "svg", "png", "json")
EFFECT_MARKS = {"drop": "x", "dnat": ">", "masquerade": "~", "answer": "*", "refuse": "!", "local": "!"}


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="the path a packet takes to and from a container or a network")
    p.add_argument("--port", default="", metavar="PORT[/PROTO]", help="which sources reach this port")
    p.add_argument("--from", dest="source", default="", metavar="ADDRESS|CONTAINER", help="only this source")
    p.add_argument("--format", default="text", choices=("text", "json"))
    p.add_argument("-v", "--verbose", action="store_true", help="every step of each packet's way")
    p.add_argument("ref", metavar="CONTAINER|NETWORK")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("trace", help="follow a real packet through the hooks and chains it meets")
    p.add_argument("--from", dest="source", required=True, metavar="ADDRESS")
    p.add_argument("--to", dest="target", required=True, metavar="ADDRESS:PORT[/PROTO]")
    p.add_argument("--probe", action="store_true", help="send the packet (from the host or a container)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="wait for a packet (10)")
    p.add_argument("--format", default="text", choices=("text", "json"))
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("graph", help="draw the host's topology (DOT, SVG or PNG)")
    p.add_argument("network", nargs="?", default="", metavar="NETWORK")
    p.add_argument("--format", default="", choices=GRAPH_FORMATS, help="dot (default), svg, png or json")
    p.add_argument("-o", "--output", default="", metavar="FILE", help="write the graph here")
    p.set_defaults(func=cmd_graph)


# -- explain -------------------------------------------------------------------------


def cmd_explain(client: Any, args: argparse.Namespace) -> int:
    import json  # not at import: `--help` stays light

    if args.source and not args.port:
        raise InvalidArgument("--from needs --port: say which port of the container")
    report = client.explain(args.ref, args.port, args.source)
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_report(report, sys.stdout, verbose=args.verbose or bool(args.source))
    return 0


def print_report(report: dict[str, Any], out: TextIO, verbose: bool = False) -> None:
    out.write(f"{report['subject']}\n")
    for section in report["sections"]:
        out.write(f"\n{section['title']}\n")
        for claim in section["claims"]:
            out.write(_wrapped(f"- {claim['text']}", "  "))
            if claim["mismatch"]:
                out.write(_wrapped(f"!! records and kernel differ: {claim['mismatch']}", "    "))
    for note in report.get("notes", []):
        out.write(f"\nnote: {note}\n")
    verdicts = report.get("verdicts") or []
    if verdicts:
        out.write("\nWho reaches it\n")
        source = None
        for v in verdicts:
            if v["source"] != source:
                source = v["source"]
                out.write(f"  from {source}\n")
            if v["answered"]:
                word = f"REACHES {v['target']}, answered"
            elif v["reaches"]:
                word = f"ARRIVES at {v['target']}, unanswered"
            else:
                word = "DOES NOT REACH it"
            out.write(_wrapped(f"to {v['dst']}: {word}: {v['decided_by']}", "    "))
            if v["note"]:
                out.write(_wrapped(f"({v['note']})", "      "))
            if verbose:
                for hop in v["hops"]:
                    mark = EFFECT_MARKS.get(hop["effect"], "-")
                    out.write(_wrapped(f"{mark} {hop['where']}: {hop['text']}", "      "))
    mismatches = report.get("mismatches") or []
    if mismatches:
        out.write(f"\n{len(mismatches)} mismatch(es) between the records and the kernel\n")
    else:
        out.write("\nthe kernel matches the records\n")


def _wrapped(text: str, indent: str, width: int = 100) -> str:
    """One claim, wrapped at word boundaries under its indent (never inside a `rule`)."""
    words = text.split(" ")
    lines: list[str] = []
    line = indent
    for w in words:
        if len(line) + len(w) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent + "  "
        line += w + " "
    lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


# -- trace ---------------------------------------------------------------------------


def cmd_trace(client: Any, args: argparse.Namespace) -> int:
    import json  # not at import: `--help` stays light

    def ready(message: dict[str, Any]) -> None:
        what = "sending the probe" if args.probe else f"send a packet now; waiting up to {args.timeout:g} s"
        print(
            f"dockyard: tracing {message.get('flow', '')} (tables {message.get('tables', '')}): {what}",
            file=sys.stderr,
            flush=True,
        )

    report = client.trace(args.source, args.target, args.probe, args.timeout, ready)
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_trace(report, sys.stdout)
    return 0


def print_trace(report: dict[str, Any], out: TextIO) -> None:
    out.write(f"trace of {report['flow']}\n")
    if report.get("probe"):
        out.write(f"probe: {report['probe']}\n")
    for i, pkt in enumerate(report["packets"], 1):
        out.write(f"\npacket {i} (trace id {pkt['trace_id']}):\n")
        if pkt["packet"]:
            out.write(_wrapped(pkt["packet"], "    "))
        for n, step in enumerate(pkt["steps"], 1):
            where = f"{step['family']} {step['table']} {step['chain']}"
            what = step["rule"] if step["kind"] == "rule" else step["kind"]
            verdict = f" -> {step['verdict']}" if step["verdict"] else ""
            out.write(_wrapped(f"{n:2}. {where} [{step['hook']}]: {what}{verdict}", "  "))
        out.write(_wrapped(f"fate: {pkt['fate']}", "  "))
    out.write(_wrapped(f"\nconntrack: {report['nat']}", ""))
    for note in report.get("notes", []):
        out.write(_wrapped(f"note: {note}", ""))
    out.write(f"the trace's tables ({report['tables']}) are deleted: nothing of it is left\n")


# -- graph ---------------------------------------------------------------------------


def cmd_graph(client: Any, args: argparse.Namespace) -> int:
    import json  # not at import: `--help` stays light

    fmt = args.format
    if not fmt:
        ext = os.path.splitext(args.output)[1].lower().lstrip(".")
        fmt = ext if ext in GRAPH_FORMATS else "dot"
    if fmt == "png" and not args.output and sys.stdout.isatty():
        raise InvalidArgument("a PNG is not for a terminal: give -o FILE (or pipe it)")
    graph = client.graph(args.network)
    if fmt == "json":
        data = (json.dumps({k: v for k, v in graph.items() if k != "dot"}, indent=2) + "\n").encode()
    elif fmt == "dot":
        data = graph["dot"].encode()
    else:
        data = render(graph["dot"], fmt)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def render(dot: str, fmt: str) -> bytes:
    """DOT to SVG or PNG by Graphviz's dot command."""
    import shutil
    import subprocess  # not at import: `--help` stays light

    tool = shutil.which("dot")
    if tool is None:
        raise DockyardError(
            f"cannot draw {fmt}: Graphviz's dot command is not installed (apt-get install graphviz); "
            "--format dot prints the text it would draw"
        )
    try:
        r = subprocess.run([tool, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DockyardError(f"cannot draw {fmt} with {tool}: {e}") from None
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip().splitlines()
        raise DockyardError(f"dot could not draw the graph: {said[0] if said else f'exit {r.returncode}'}")
    return r.stdout
