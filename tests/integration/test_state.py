"""A broken state database: a clear error naming the file, never a silent replacement."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess

import pytest

from lab import Lab


def test_a_corrupt_database_is_reported_and_kept(lab: Lab) -> None:
    lab.root.mkdir(parents=True)
    db = lab.root / "dockyard.db"
    garbage = b"this is not a database " * 200
    db.write_bytes(garbage)
    r = lab.dy("ps")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"state database {db} cannot be used" in r.stderr and "move it away" in r.stderr
    assert db.read_bytes() == garbage


def test_an_unreadable_database_is_reported(lab: Lab) -> None:
    (lab.root / "dockyard.db").mkdir(parents=True)
    r = lab.dy("ps")
    assert r.returncode == 125 and "dockyard.db cannot be used" in r.stderr


def test_a_full_disk_leaves_the_old_state_intact(lab: Lab) -> None:
    lab.root.mkdir(parents=True)
    assert subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "dytest", str(lab.root)]).returncode == 0
    try:
        lab.dy_ok("network", "create", "--subnet", "10.96.0.0/24", "before")
        cid = lab.run_d("--name", "kept", "sleep", "300")
        bridges = sorted(n for n in lab.links() if n.startswith("dy-"))
        filler = lab.root / "filler"
        # Unbuffered: nothing is left to flush at close, which would raise ENOSPC outside the suppress.
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        r = lab.dy("network", "create", "--subnet", "10.97.0.0/24", "after")
        assert r.returncode == 125 and "Traceback" not in r.stderr
        assert "cannot write the state database" in r.stderr, r.stderr
        filler.unlink()
        names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
        assert "before" in names and "after" not in names
        assert sorted(n for n in lab.links() if n.startswith("dy-")) == bridges
        assert lab.inspect("kept")["Id"] == cid and lab.inspect("kept")["State"]["Running"]
    finally:
        ids = lab.dy("ps", "-aq").stdout.split()
        if ids:
            lab.dy("rm", "-f", *ids)
        lab.dy("daemon", "stop")
        subprocess.run(["umount", "-l", str(lab.root)])


def test_the_state_database_is_in_wal_mode(lab: Lab) -> None:
    lab.dy_ok("network", "create", "app")
    db = sqlite3.connect(lab.root / "dockyard.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"bip": "10.10.0.1/24",', "is not valid JSON"),
        ('{"mtu": "big"}', "daemon.json: mtu must be an integer"),
        ('["bridge"]', "must hold a JSON object"),
        (
            '{"mtu": 1400, "bridge-name": "br0"}',
            "daemon.json: the following directives don't match any configuration option: bridge-name",
        ),
    ],
)
def test_a_broken_daemon_json_is_one_line_exit_125(lab: Lab, text: str, says: str) -> None:
    lab.root.mkdir(parents=True)
    (lab.root / "daemon.json").write_text(text)
    # A command that starts the daemon (which restores at start), and the daemon in the foreground.
    for args in (("ps",), ("daemon", "run")):
        r = lab.dy(*args, timeout=30)
        assert r.returncode == 125, (args, r)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert says in r.stderr, (args, r.stderr)
    assert not (lab.root / "dockyard.sock").exists()
