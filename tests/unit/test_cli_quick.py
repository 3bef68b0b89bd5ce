"""clients/cli/quick.py reads a plain `run` as argparse does, or declines.

Two checks: its tables are the parsers' own (every option, dest, kind and
default of the top-level and `run` parsers), and on any command line it
either gives the namespace argparse gives or declines (None), never
something else: hand-picked lines, then lines hypothesis makes from the
options, their forms and awkward values.
"""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.clients.cli import UsageError, quick
from dockyard.clients.cli.parser import build_parser


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    top = build_parser(["run", "true"])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return top, sub.choices["run"]


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return quick.FLAG
    if isinstance(action, argparse._AppendAction):
        return quick.APPEND
    assert type(action) is argparse._StoreAction, action
    return quick.INT if action.type is int else quick.VALUE


def test_the_tables_are_the_parsers_own() -> None:
    top, run = _parsers()
    top_options = {
        o: (a.dest, quick.FLAG if a.nargs == 0 else quick.VALUE)
        for a in top._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
        for o in a.option_strings
    }
    assert top_options == quick.GLOBAL
    assert {dest: top.get_default(dest) for dest, _ in top_options.values()} == quick.GLOBAL_DEFAULTS
    run_options = {
        o: (a.dest, _kind(a))
        for a in run._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
        for o in a.option_strings
    }
    assert run_options == quick.RUN
    assert {dest: run.get_default(dest) for dest, _ in run_options.values()} == quick.RUN_DEFAULTS


def _argparse(argv: list[str]) -> dict[str, object] | None:
    top, _ = _parsers()
    try:
        return vars(top.parse_args(argv))
    except (UsageError, SystemExit):
        return None


def _same_or_declined(argv: list[str]) -> bool:
    """Whether quick gave argparse's namespace (True) or declined (False); fails otherwise."""
    got = quick.parse_run(argv)
    if got is None:
        return False
    assert vars(got) == _argparse(argv), argv
    return True


READ = [
    ["run", "true"],
    ["--root", "/r", "--host-netns", "ns", "run", "--rm", "true"],
    ["--root=/r", "--debug", "run", "-d", "--name", "web", "sleep", "300"],
    ["run", "--rm", "--net", "none", "true"],
    ["run", "-dit", "-p80:80", "-p", "8080-8090:80-90/udp", "sh", "-c", "echo -x --rm"],
    ["run", "-dp", "80:80", "--network=host", "--network", "other", "true"],
    ["run", "--pids-limit", "-1", "--stop-timeout=3", "-e", "A=b", "-e", "C", "env"],
    ["run", "-h", "box", "--hostname", "box2", "-u", "1:1", "-w", "/tmp", "id"],
    ["run", "--name", "", "true"],
    ["run", "--label", "a=1", "-l", "b", "-v", "/a:/b:ro", "--mount", "type=bind,source=/a,target=/b", "ls"],
    ["run", "--restart", "always", "--add-host", "h:1.2.3.4", "--sysctl", "net.x=1", "true"],
    ["run", "--mac-address", "02:42:ac:11:00:02", "--stop-signal", "SIGUSR1", "true"],
    ["run", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--init", "true"],
    ["run", "--security-opt", "no-new-privileges", "--group-add", "audio", "--expose", "80", "-P", "true"],
    ["run", "--ip", "10.1.0.5", "--ip6", "2001:db8::5", "--network-alias", "db", "true"],
    ["run", "--dns", "1.1.1.1", "--dns-search", "example", "--dns-option", "ndots:2", "true"],
    ["run", "--pids-limit", "-.5e", "true"],  # not a number argparse takes: its error
    ["run", "echo", "--na", "--x", "-c", "--rm", "-h"],  # no ambiguous word: the command's
]
DECLINED = [
    ["run"],
    ["run", "--help"],
    ["--help"],
    ["-h", "run", "true"],
    ["run", "--", "true"],
    ["run", "--rm", "--", "echo", "--"],
    ["run", "--na", "web", "true"],  # an abbreviation
    ["run", "--frobnicate", "true"],
    ["run", "--rm=yes", "true"],
    ["run", "-p=80:80", "true"],
    ["run", "-eA=b", "env"],
    ["run", "--name", "-x", "true"],
    ["run", "--pids-limit", "lots", "true"],
    ["run", "--pids-limit", "1.5", "true"],
    ["run", "-x", "true"],
    ["run", "-", "true"],
    ["run", "-1", "true"],
    ["run", "", "true"],
    ["ps"],
    ["--root", "/r"],
    ["network", "create", "run"],
    ["--ro", "/r", "run", "true"],
    ["run", "--name"],
    ["run", "--publish=--", "true"],
    ["run", "-e--", "true"],
    ["run", "-e", "--", "true"],
    ["run", "echo", "--ne"],  # argparse stops at an ambiguous word, even in the command
    ["run", "echo", "--b"],  # ambiguous among the top-level options
    ["run", "echo", "--=x"],
]


@pytest.mark.parametrize("argv", READ, ids=[" ".join(a) or "empty" for a in READ])
def test_plain_run_lines_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    expected = _argparse(argv)
    got = quick.parse_run(argv)
    if expected is None:
        assert got is None, argv
    else:
        assert got is not None and vars(got) == expected


@pytest.mark.parametrize("argv", DECLINED, ids=[" ".join(a) or "empty" for a in DECLINED])
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert quick.parse_run(argv) is None


OPTION_WORDS = [*sorted(quick.RUN), "--he", "--net=", "--rm=1", "-dit", "-it", "-dp", "-x", "--", "-"]
VALUES = st.one_of(
    st.sampled_from(["80:80", "-1", "-.5", "-1.5", "-x", "", "a=b", "--", "run", "5", " 7", "-2.", "٣"]),
    st.text(max_size=6),
)


# The command's own words, some of them abbreviations argparse sorts as options (--ne, --b).
COMMAND_WORDS = [
    "true",
    "echo",
    "-n",
    "--rm",
    "--",
    "x=y",
    "--n",
    "--ne",
    "--na",
    "--b",
    "--h",
    "--ro",
    "-hx",
    "--=1",
]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    argv: list[str] = []
    for option in draw(st.lists(st.sampled_from(sorted(quick.GLOBAL)), max_size=3)):
        argv += (
            [option]
            if not quick.GLOBAL[option][1]
            else draw(st.sampled_from([[option, "/x"], [f"{option}=y"]]))
        )
    argv.append("run")
    for _ in range(draw(st.integers(0, 5))):
        word = draw(st.sampled_from(OPTION_WORDS))
        form = draw(st.integers(0, 3))
        if form == 0:
            argv.append(word)
        elif form == 1:
            argv += [word, draw(VALUES)]
        elif form == 2:
            argv.append(word + draw(VALUES))
        else:
            argv.append(f"{word}={draw(VALUES)}")
    argv += draw(st.lists(st.one_of(st.sampled_from(COMMAND_WORDS), VALUES), max_size=4))
    return argv


@settings(max_examples=400, deadline=None)
@given(command_lines())
def test_any_run_line_is_read_as_argparse_reads_it_or_declined(argv: list[str]) -> None:
    _same_or_declined(argv)


def test_a_plain_run_is_read_without_argparse() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from dockyard.clients.cli.quick import parse_run; "
        "assert parse_run(['--root', '/r', 'run', '--rm', '-p', '80:80', 'true']) is not None; "
        "print('argparse' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
