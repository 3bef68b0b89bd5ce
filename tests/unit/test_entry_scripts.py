"""The clients' console scripts (dockyard.clients.entry_scripts): they run the clients isolated and
without site, so neither PYTHONPATH nor the current directory can put a module in a root
command's way, and `make deps` has written them into the venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
HIJACK = "raise SystemExit('hijacked: this json came from PYTHONPATH or the current directory')\n"


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "dockyard.clients.entry_scripts", str(bin_dir)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return bin_dir


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """A directory whose json.py a non-isolated interpreter imports first."""
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "json.py").write_text(HIJACK)
    return trap


def _env(trap: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(trap), "PYTHONSTARTUP": str(trap / "json.py"), **extra}


def _run(argv: list[str], trap: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """argv run in the trap: its json.py in PYTHONPATH and in the working directory."""
    return subprocess.run(argv, env=_env(trap, **env), cwd=trap, input=stdin, capture_output=True, text=True)


def test_the_cli_script_is_not_hijacked_by_pythonpath_or_the_current_directory(
    scripts: Path, trap: Path, tmp_path: Path
) -> None:
    # `daemon status` loads the API client, json with it, and changes nothing: no daemon runs
    # for this root, and the command says so (exit 1, as systemctl's status).
    root = tmp_path / "root"
    args = ["--root", str(root), "daemon", "status"]
    # The attack, on the very same command: started as a plain interpreter starts it, caught.
    plain = _run([sys.executable, "-m", "dockyard", *args], trap)
    assert plain.returncode != 0 and "hijacked" in plain.stderr, plain.stderr
    r = _run([str(scripts / "dockyard"), *args], trap)
    assert "hijacked" not in r.stderr
    assert (r.stdout + r.stderr).strip() == f"dockyardd is not running for {root}"
    assert r.returncode == 1


def test_the_cni_script_is_not_hijacked_and_answers_version(scripts: Path, trap: Path) -> None:
    plain = _run([sys.executable, "-m", "dockyard.clients.cni.plugin"], trap, "{}", CNI_COMMAND="VERSION")
    assert plain.returncode != 0 and "hijacked" in plain.stderr, plain.stderr
    r = _run([str(scripts / "dockyard-cni")], trap, "{}", CNI_COMMAND="VERSION")
    assert r.returncode == 0, r.stderr
    assert "1.0.0" in json.loads(r.stdout)["supportedVersions"]


def test_the_scripts_start_the_venvs_interpreter_isolated_and_without_site(scripts: Path) -> None:
    for name in ("dockyard", "dockyard-cni"):
        first = (scripts / name).read_text().splitlines()[0]
        assert first == f"#!{sys.executable} -IS"


def test_make_deps_wrote_them_into_the_venv() -> None:
    for name in ("dockyard", "dockyard-cni"):
        first = (VENV_BIN / name).read_text().splitlines()[0]
        assert first.endswith(" -IS"), f"{VENV_BIN / name} is pip's script: run make deps"
    # The daemon's is pip's: it imports from site-packages.
    assert not (VENV_BIN / "dockyardd").read_text().splitlines()[0].endswith(" -IS")
