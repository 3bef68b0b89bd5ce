"""The CLI builds only the parser of the command it runs (clients/cli/__init__.py):
the help and the choices are those of the whole parser, and a command found
only by argparse (an abbreviated global option) is parsed by the whole one."""

from __future__ import annotations

import pytest

from dockyard.clients import cli


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
