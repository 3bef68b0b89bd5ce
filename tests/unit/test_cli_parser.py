"""The CLI builds only the parser of the command it runs (clients/cli/__init__.py):
the help and the choices are those of the whole parser, and a command found
only by argparse (an abbreviated global option) is parsed by the whole one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dockyard.clients import cli
from dockyard.clients.cli import parser as parser_module
from dockyard.clients.cli import top_help


def test_the_help_without_any_command_built_is_the_whole_parsers() -> None:
    assert cli.build_parser(["--help"]).format_help() == cli.build_parser().format_help()


def test_an_unknown_command_is_refused_with_every_command_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nosuch"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("dockyard: argument COMMAND: invalid choice: 'nosuch' (choose from 'run', ")
    assert "'network'" in err and "'graph'" in err


def test_a_command_after_an_abbreviated_option_gets_its_own_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # command_word() takes "/x" for the command; argparse reads --ro as --root, then "network".
    with pytest.raises(SystemExit) as e:
        cli.main(["--ro", "/x", "network", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dockyard network [-h] COMMAND ...")
    assert "create     create a network" in out


def _argparse_help(monkeypatch: pytest.MonkeyPatch, width: int) -> str:
    monkeypatch.setenv("COLUMNS", str(width + 2))  # the Formatter's width is the terminal's less 2
    return cli.build_parser().format_help()


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="top_help lays out argparse 3.11's help only")
def test_the_top_level_help_without_argparse_is_argparses_at_every_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command's line and option of top_help.py is the parser's, laid out as argparse does."""
    for width in range(1, 301):
        text = top_help.render(width)
        if text is None:
            assert width < 40, f"top_help leaves a terminal of {width} columns to argparse"
            continue
        assert text == _argparse_help(monkeypatch, width), f"at {width} columns"


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        ([], True),
        (["--help"], True),
        (["-h"], True),
        (["--root", "/x", "--host-netns", "ns", "--debug", "--help"], True),
        (["--root=/x", "--bip", "10.0.0.1/24"], True),
        (["--ro", "/x", "--help"], False),  # an abbreviation: argparse's to read
        (["--root", "-h"], False),  # --root lacks its value
        (["--root"], False),
        (["ps"], False),
        (["--help", "ps"], False),
        (["-hx"], False),
    ],
)
def test_only_the_top_level_help_skips_argparse(argv: list[str], wanted: bool) -> None:
    assert top_help.wanted(argv) is wanted


def test_dockyard_help_imports_no_argparse() -> None:
    code = (
        "import sys; from dockyard.clients import cli; code = cli.main(['--root', '/x', '--help']); "
        "assert code == 0, code; print(sorted(m for m in ('argparse', 're', 'typing') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    ).stdout
    assert out.endswith("[]\n"), out
    assert out.startswith("usage: dockyard [-h] [--root ROOT]")


def test_the_registrar_table_names_every_command_in_the_whole_parsers_order() -> None:
    whole = cli.build_parser()
    (sub,) = [a for a in whole._actions if a.dest == "command"]
    listed = [name for _, commands in parser_module.REGISTRARS for name in commands]
    assert listed == [a.dest for a in sub._choices_actions]  # type: ignore[attr-defined]
    assert listed == [name for name, _ in top_help.COMMANDS]


@pytest.mark.parametrize(("module", "commands"), parser_module.REGISTRARS)
def test_each_command_gets_its_own_modules_parser(module: str, commands: tuple[str, ...]) -> None:
    for name in commands:
        built = cli.build_parser([name])
        (sub,) = [a for a in built._actions if a.dest == "command"]
        parser = sub.choices[name]  # type: ignore[index]
        assert isinstance(parser, parser_module.Parser), (module, name)
        assert parser.prog == f"dockyard {name}"
        assert built.format_help() == cli.build_parser().format_help()


def test_a_run_imports_no_other_commands_module() -> None:
    code = (
        "import sys; from dockyard.clients import cli; cli.build_parser(['run']).parse_args(['run', 'true']); "
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('dockyard.clients.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['output', 'parser', 'run', 'run_fields', 'top_help']", out
