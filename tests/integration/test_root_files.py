"""Files under $ROOT: never written through a link, and root's alone (0600/0700).

A container sees the host's file system, so anything under $ROOT may be
replaced by a link (or a hard link) to a file elsewhere; whatever dockyard
writes there must land in $ROOT, never in the link's target.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from lab import Lab


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_connect_and_disconnect_do_not_write_through_a_planted_link(lab: Lab, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("precious\n")
    lab.dy_ok("network", "create", "--subnet", "10.71.0.0/24", "linked")
    cid = lab.run_d("--name", "c1", "sleep", "300")
    resolv = lab.root / "containers" / cid / "resolv.conf"
    assert resolv.is_file() and not resolv.is_symlink()

    # A symbolic link where resolv.conf was: connect rewrites it (it now names linked's gateway).
    resolv.unlink()
    resolv.symlink_to(precious)
    lab.dy_ok("network", "connect", "linked", "c1")
    assert precious.read_text() == "precious\n"  # the link was not followed
    # Replaced by a regular file saying what the container's resolv.conf should.
    assert not resolv.is_symlink() and resolv.is_file()
    assert resolv.read_text().split()[:2] == ["nameserver", "10.71.0.1"]
    assert "was not the file dockyard wrote" in (lab.root / "daemon.log").read_text()
    # The container never saw the target either: it keeps the copy it started with.
    assert "precious" not in lab.dy_ok("exec", "c1", "cat", "/etc/resolv.conf")

    # A hard link to the file elsewhere: writing in place would change it. Disconnect too.
    resolv.unlink()
    os.link(precious, resolv)
    lab.dy_ok("network", "disconnect", "linked", "c1")
    assert precious.read_text() == "precious\n"
    assert resolv.stat().st_nlink == 1 and "10.71.0.1" not in resolv.read_text()
    assert lab.inspect("c1")["NetworkSettings"]["Networks"].keys() == {"bridge"}


def test_the_exit_file_is_not_written_through_a_planted_link(lab: Lab, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("precious\n")
    cid = lab.run_d("--name", "ends", "sleep", "300")
    exit_file = lab.root / "containers" / cid / "exit"
    exit_file.symlink_to(precious)
    # And where an older shim put its temporary file, written before its rename.
    (lab.root / "containers" / cid / "exit.tmp").symlink_to(precious)
    lab.dy_ok("kill", "ends")  # SIGKILL: 137
    lab.eventually(lambda: not lab.inspect("ends")["State"]["Running"], what="the exit recorded")
    assert precious.read_text() == "precious\n"
    assert not exit_file.is_symlink()
    assert json.loads(exit_file.read_text())["status"] == 137
    assert lab.inspect("ends")["State"]["ExitCode"] == 137


def test_state_files_are_private_even_in_a_root_made_with_looser_modes(lab: Lab) -> None:
    lab.dy_ok("run", "--rm", "true")  # an older daemon made the database, the log, ...
    lab.dy_ok("daemon", "stop")
    db = lab.root / "dockyard.db"
    log = lab.root / "daemon.log"
    for suffix in ("-wal", "-shm"):  # left by a daemon that did not close them, say
        db.with_name(db.name + suffix).touch()
    for path in (db, log, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.chmod(0o644)
    lab.root.chmod(0o755)

    cid = lab.run_d("--name", "logs", "sh", "-c", "echo hello; sleep 300")
    container_log = lab.root / "containers" / cid / "container.log"
    lab.eventually(
        lambda: [json.loads(line)["log"] for line in container_log.read_text().splitlines()] == ["hello\n"],
        what="the container's output (json-file: one entry per line)",
    )
    assert _mode(lab.root) == 0o700
    assert {p.name: _mode(p) for p in (db, log, container_log)} == {
        "dockyard.db": 0o600,
        "daemon.log": 0o600,
        "container.log": 0o600,
    }
    # The daemon runs in WAL mode: its -wal and -shm are there, with the database's mode.
    for suffix in ("-wal", "-shm"):
        assert _mode(db.with_name(db.name + suffix)) == 0o600, suffix
