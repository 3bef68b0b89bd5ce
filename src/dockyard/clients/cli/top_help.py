"""`dockyard --help` (and a bare `dockyard`) without argparse.

The help of the whole command is asked for more than any other and needs
nothing but its own text: importing argparse (re, enum, gettext, locale)
and building the parser cost about as much as the interpreter's own start.
This module holds the top-level parser's words (the global options, the
description, each command's line) and lays them out exactly as argparse
3.11's HelpFormatter does for that parser; clients/cli/__init__.py builds
the argparse parser from the same words. tests/unit/test_cli_parser.py
proves the two texts equal at every width, so a command added to a
register() without its line here fails there. Where this layout is not
proven (another Python, a word longer than the width), `render` returns
None and argparse prints the help.
"""

from __future__ import annotations

import os
import sys

PROG = "dockyard"
DESCRIPTION = "Run processes as containers, wired up the way Docker does."
# (option, metavar or None for a flag, help), in the parser's order after -h.
OPTIONS: tuple[tuple[str, str | None, str], ...] = (
    ("--root", "ROOT", "state directory (env DOCKYARD_ROOT, default /var/lib/dockyard)"),
    ("--host-netns", "NAME|PATH", "work as if this network namespace were the host"),
    ("--bridge", "NAME", "the default bridge's name (default dockyard0)"),
    ("--bip", "CIDR", "the default bridge's address with prefix, e.g. 10.10.0.1/24"),
    ("--debug", None, "show tracebacks"),
)
HELP_OPTION = ("-h, --help", "show this help message and exit")  # argparse's own
# Each command's line in the help, in the order the modules register them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("run", "run a command in a new container"),
    ("exec", "run a command in a running container"),
    ("ps", "list containers"),
    ("inspect", "low-level information on containers (JSON)"),
    ("logs", "a detached container's output"),
    ("stop", "stop containers: SIGTERM, then SIGKILL after a grace period"),
    ("kill", "send a signal to containers (default SIGKILL)"),
    ("rm", "remove containers"),
    ("port", "list a container's published ports"),
    ("restart", "stop then start containers"),
    ("rename", "rename a container"),
    ("top", "a running container's processes"),
    ("container", "manage containers"),
    ("network", "manage networks"),
    ("daemon", "manage dockyardd, the engine daemon"),
    ("system", "manage dockyard's state"),
    ("images", "list images"),
    ("pull", "pull an image from a registry"),
    ("load", "load images from a docker save archive or an OCI layout"),
    ("import", "make an image from a root file system tarball"),
    ("save", "write images to a tar archive (standard output by default)"),
    ("tag", "give an image another name"),
    ("rmi", "remove images"),
    ("image", "manage images"),
    ("explain", "the path a packet takes to and from a container or a network"),
    ("trace", "follow a real packet through the hooks and chains it meets"),
    ("graph", "draw the host's topology (DOT, SVG or PNG)"),
)
METAVAR = "COMMAND"
WITH_VALUE = frozenset(option for option, metavar, _ in OPTIONS if metavar)
FLAGS = frozenset(option for option, metavar, _ in OPTIONS if not metavar)


def terminal_width() -> int:
    """shutil.get_terminal_size()'s columns, without importing shutil (and bz2, lzma, fnmatch)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def wanted(argv: list[str]) -> bool:
    """Whether argv asks for the top-level help and nothing argparse must judge:
    only global options, spelled out in full with their values, and -h/--help
    or no command at all (a bare `dockyard` prints the help too)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help") or word in FLAGS:
            i += 1
            continue
        option, eq, _ = word.partition("=")
        if eq and option in WITH_VALUE:
            i += 1
            continue
        if word in WITH_VALUE and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            i += 2
            continue
        return False
    return True


def _chunks(text: str) -> list[str]:
    """textwrap's chunks for text of single spaces: words and spaces, a word split
    after a hyphen between letters (two before it, two after it: 'low-' 'level')."""
    out: list[str] = []
    for n, word in enumerate(text.split(" ")):
        if n:
            out.append(" ")
        start = 0
        for i in range(2, len(word) - 2):
            if (
                word[i] == "-"
                and word[i - 2 : i].isalpha()
                and word[i + 1].isalpha()
                and (word[i + 2].isalpha() or (word[i + 2] == "-" and word[i + 3 : i + 4].isalpha()))
            ):
                out.append(word[start : i + 1])
                start = i + 1
        out.append(word[start:])
    return out


def _wrap(text: str, width: int) -> list[str] | None:
    """textwrap.wrap(text, width) for one line of words, or None where a chunk is
    longer than the width (textwrap would break it: left to argparse)."""
    chunks = _chunks(" ".join(text.split()))
    chunks.reverse()
    lines: list[str] = []
    while chunks:
        line: list[str] = []
        length = 0
        if chunks[-1] == " " and lines:
            chunks.pop()
        while chunks and length + len(chunks[-1]) <= width:
            length += len(chunks[-1])
            line.append(chunks.pop())
        if chunks and len(chunks[-1]) > width:
            return None
        if line and line[-1] == " ":
            line.pop()
        if line:
            lines.append("".join(line))
    return lines


def _usage(width: int) -> str:
    prefix, prog = "usage: ", PROG
    opt_parts = ["[-h]"] + [f"[{o} {m}]" if m else f"[{o}]" for o, m, _ in OPTIONS]
    pos_parts = [METAVAR, "..."]
    usage = " ".join([prog, *opt_parts, *pos_parts])
    if len(prefix) + len(usage) <= width:
        return prefix + usage

    def lines_of(parts: list[str], indent: str, first: str | None = None) -> list[str]:
        lines: list[str] = []
        line: list[str] = []
        length = len(first if first is not None else indent) - 1
        for part in parts:
            if length + 1 + len(part) > width and line:
                lines.append(indent + " ".join(line))
                line = []
                length = len(indent) - 1
            line.append(part)
            length += len(part) + 1
        if line:
            lines.append(indent + " ".join(line))
        if first is not None:
            lines[0] = lines[0][len(indent) :]
        return lines

    if len(prefix) + len(prog) <= 0.75 * width:
        indent = " " * (len(prefix) + len(prog) + 1)
        lines = lines_of([prog, *opt_parts], indent, prefix)
        lines.extend(lines_of(pos_parts, indent))
    else:
        indent = " " * len(prefix)
        lines = lines_of(opt_parts + pos_parts, indent)
        if len(lines) > 1:
            lines = lines_of(opt_parts, indent) + lines_of(pos_parts, indent)
        lines = [prog, *lines]
    return prefix + "\n".join(lines)


def render(width: int) -> str | None:
    """The top-level help at this width, as argparse 3.11 lays it out; None where
    that is not proven here (argparse prints it then)."""
    if sys.version_info[:2] != (3, 11):
        return None
    invocations = [HELP_OPTION[0]] + [f"{o} {m}" if m else o for o, m, _ in OPTIONS]
    longest = max(len(x) + 2 for x in [*invocations, METAVAR, *(name for name, _ in COMMANDS)])
    help_position = min(longest + 2, min(24, max(width - 20, 4)))
    help_width = max(width - help_position, 11)

    def item(indent: int, invocation: str, text: str) -> str | None:
        lines = _wrap(text, help_width)
        if not lines:
            return None
        action_width = help_position - indent - 2
        if len(invocation) <= action_width:
            head = "%*s%-*s  " % (indent, "", action_width, invocation)  # noqa: UP031 (argparse's own)
            first = 0
        else:
            head = "%*s%s\n" % (indent, "", invocation)  # noqa: UP031
            first = help_position
        rest = "".join("%*s%s\n" % (help_position, "", line) for line in lines[1:])  # noqa: UP031
        return head + "%*s%s\n" % (first, "", lines[0]) + rest  # noqa: UP031

    description = _wrap(DESCRIPTION, max(width, 11))
    commands = [item(4, name, text) for name, text in COMMANDS]
    options = [
        item(2, invocation, text)
        for invocation, text in zip(
            invocations, [HELP_OPTION[1], *(text for _, _, text in OPTIONS)], strict=True
        )
    ]
    if description is None or None in commands or None in options:
        return None
    return (
        _usage(width)
        + "\n\n"
        + "\n".join(description)
        + "\n\npositional arguments:\n  "
        + METAVAR
        + "\n"
        + "".join(c for c in commands if c)
        + "\noptions:\n"
        + "".join(o for o in options if o)
    )
