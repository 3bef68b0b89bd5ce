"""kernel/files.py: files under $ROOT are written and read without following links."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.errors import KernelError
from dockyard.kernel import files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "containers" / "c1").mkdir(parents=True)
    return r


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "precious"
    target.write_text("precious\n")
    return target


def test_write_is_atomic_with_its_mode_and_replaces_a_link_not_its_target(root: Path, outside: Path) -> None:
    path = root / "containers" / "c1" / "hosts"
    path.symlink_to(outside)
    old = os.umask(0o077)
    try:
        files.write(root, path, "127.0.0.1 localhost\n", 0o644)
    finally:
        os.umask(old)
    assert outside.read_text() == "precious\n"
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert path.read_text() == "127.0.0.1 localhost\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["hosts"]  # no temporary file left


def test_write_refuses_a_linked_directory_on_the_way(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "containers" / "c2").symlink_to(elsewhere)
    with pytest.raises(KernelError, match="symbolic link"):
        files.write(root, root / "containers" / "c2" / "exit", "{}")
    assert list(elsewhere.iterdir()) == []
    with pytest.raises(KernelError, match="not under"):
        files.write(root, elsewhere / "exit", "{}")
    # make_dirs creates what is missing, still without following.
    files.write(root, root / "containers" / "c3" / "exit", "{}", make_dirs=True)
    assert (root / "containers" / "c3" / "exit").read_text() == "{}"


def test_rewrite_in_place_only_a_file_of_ours(root: Path, outside: Path) -> None:
    path = root / "containers" / "c1" / "resolv.conf"
    assert files.rewrite(root, path, "nameserver 10.0.0.1\n") is files.Rewrite.MISSING
    assert not path.exists()
    path.write_text("nameserver 10.0.0.1\n")
    inode = path.stat().st_ino
    assert files.rewrite(root, path, "nameserver 10.0.0.1\n") is files.Rewrite.UNCHANGED
    assert files.rewrite(root, path, "nameserver 10.0.0.2\n") is files.Rewrite.WRITTEN
    assert path.stat().st_ino == inode and path.read_text() == "nameserver 10.0.0.2\n"  # a bind mount sees it

    path.unlink()
    path.symlink_to(outside)
    assert files.rewrite(root, path, "nameserver 10.0.0.3\n") is files.Rewrite.REPLACED
    assert outside.read_text() == "precious\n" and not path.is_symlink()

    path.unlink()
    os.link(outside, path)  # a hard link to a file elsewhere: writing in place would change it
    assert files.rewrite(root, path, "nameserver 10.0.0.4\n") is files.Rewrite.REPLACED
    assert outside.read_text() == "precious\n" and path.stat().st_nlink == 1

    path.unlink()
    os.mkfifo(path)  # opening a FIFO must not block
    assert files.rewrite(root, path, "nameserver 10.0.0.5\n") is files.Rewrite.REPLACED
    assert path.read_text() == "nameserver 10.0.0.5\n"


def test_read_and_is_regular_never_follow(root: Path, outside: Path) -> None:
    path = root / "containers" / "c1" / "exit"
    path.symlink_to(outside)
    assert files.read(root, path) is None
    assert not files.is_regular(root, path)
    path.unlink()
    path.write_text('{"status": 3}')
    assert files.read(root, path) == b'{"status": 3}'
    assert files.is_regular(root, path)
    assert files.read(root, root / "containers" / "c9" / "exit") is None


def test_open_private_refuses_a_link_and_restricts_what_exists(root: Path, outside: Path) -> None:
    log = root / "daemon.log"
    log.symlink_to(outside)
    with pytest.raises(KernelError, match="symbolic link"):
        files.open_private(log, 0o600, append=True)
    log.unlink()
    log.write_text("old\n")
    log.chmod(0o644)
    fd = files.open_private(log, 0o600, append=True)
    os.write(fd, b"new\n")
    os.close(fd)
    assert log.read_text() == "old\nnew\n" and stat.S_IMODE(log.stat().st_mode) == 0o600
    files.restrict(root / "missing", 0o600)  # nothing to do
    (root / "other").symlink_to(outside)
    outside.chmod(0o644)
    with pytest.raises(KernelError):
        files.restrict(root / "other", 0o600)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
