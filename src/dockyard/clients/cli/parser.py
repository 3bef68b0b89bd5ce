"""The argparse parser of the command line: every command's, or only the one being run.

Imported only when a command runs (or a help other than the top-level one
is asked for): `dockyard --help` is clients/cli/top_help.py's, without
argparse.
"""

from __future__ import annotations

import argparse

from dockyard.clients.cli import UsageError
from dockyard.clients.cli.top_help import COMMANDS, DESCRIPTION, OPTIONS, PROG, WITH_VALUE, terminal_width


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, told the width: its own way of asking imports shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(prog, indent_increment, max_help_position, width or terminal_width() - 2)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as dockyard errors (exit 125, one line)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        # `--name=--`: argparse drops the "--" and hands the action [] for a string, a
        # traceback further on. No option of dockyard's takes "--" as its value.
        if action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument, not '--'")
        return super()._get_values(action, arg_strings)  # type: ignore[misc]


def command_word(argv: list[str]) -> str | None:
    """The command named in argv, after the global options; None if there is none."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in WITH_VALUE:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return word
    return None


class _Ignored:
    """Stands in for the parsers of commands that were not asked for."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: self


class Rebuild(Exception):
    """argparse chose a command other than the one command_word() found
    (an abbreviated global option, say): parse again with every command built."""


class _Unbuilt:
    """A command's entry in argparse's map while its parser is not built."""

    def parse_known_args(self, *args: object, **kwargs: object) -> object:
        raise Rebuild


class _OnlyOne:
    """Subparsers that fully build only the command being run.

    Building every command's arguments costs ~12 ms, a fifth of a `run`, and
    even a bare parser per command ~0.2 ms each (some 40 of them, for
    `dockyard --help`): the others get only their line in argparse's help
    and a name in its choices. wanted None builds them all; "" (no command
    named: `dockyard --help`) none.
    """

    def __init__(self, sub: argparse._SubParsersAction, wanted: str | None) -> None:  # type: ignore[type-arg]
        self._sub = sub
        self._wanted = wanted

    def add_parser(self, name: str, **kwargs: object) -> object:
        if self._wanted is None or name == self._wanted:
            return self._sub.add_parser(name, **kwargs)  # type: ignore[arg-type]
        # What add_parser records for the help and the choices, without the parser.
        sub = self._sub
        help_text = kwargs.get("help")
        if help_text is not None:
            sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help_text))  # type: ignore[attr-defined]
        sub._name_parser_map[name] = _Unbuilt()  # type: ignore[assignment]
        return _Ignored()


# The module that registers each top-level command, in registration order (top_help.COMMANDS's).
# Only the module of the command being run is imported: the others' names and help lines
# come from top_help.COMMANDS (tests/unit/test_cli_parser.py checks this table).
REGISTRARS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("run", ("run", "exec")),
    ("containers", ("ps", "inspect", "logs", "stop", "kill", "rm", "port")),
    ("container_verbs", ("restart", "rename", "top", "container")),
    ("network", ("network",)),
    ("daemon", ("daemon", "system")),
    ("images", ("images", "pull", "load", "import", "save", "tag", "rmi", "image")),
    ("explain", ("explain", "trace", "graph")),
)


def build_parser(argv: list[str] | None = None) -> Parser:
    p = Parser(prog=PROG, description=DESCRIPTION)
    for option, metavar, help_text in OPTIONS:
        if metavar is None:
            p.add_argument(option, action="store_true", help=help_text)
        else:
            p.add_argument(option, metavar=metavar, help=help_text)
    real = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    wanted = (command_word(argv) or "") if argv is not None else None
    sub = _OnlyOne(real, wanted)
    lines = dict(COMMANDS)
    for module, commands in REGISTRARS:
        if wanted is None or wanted in commands:
            # Importing a command module costs its import (images.py's is ~1 ms): only the one run.
            __import__(f"dockyard.clients.cli.{module}", fromlist=["register"]).register(sub)
        else:
            for name in commands:
                sub.add_parser(name, help=lines[name])
    return p
