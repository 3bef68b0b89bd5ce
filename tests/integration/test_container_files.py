"""A container's files through the docker CLI: diff, cp both ways (running and stopped), export.

Containers run on a busybox image made here (`docker import`). Every path
given resolves inside the container's root: a link in the container to a
host directory leads the copy to the container's own files, never the host's.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from docker_cli import DockerCli
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    return DockerCli.for_lab(lab, tmp_path, busybox=True)


def _finished(docker: DockerCli, *args: str) -> str:
    cid = docker.ok("create", *args).strip()
    docker.ok("start", cid)
    assert docker.ok("wait", cid).strip() == "0"
    return cid


def test_diff_shows_what_the_container_changed(lab: Lab, docker: DockerCli) -> None:
    cid = _finished(docker, "busybox", "sh", "-c", "echo new > /tmp/added; rm /bin/stat; mkdir -p /var/x")
    lines = docker.ok("diff", cid).splitlines()
    assert "C /tmp" in lines and "A /tmp/added" in lines
    assert "D /bin/stat" in lines and "C /bin" in lines
    assert "A /var" in lines and "A /var/x" in lines
    # The engine's own mount points are not the container's changes.
    assert not [line for line in lines if line.split()[-1] in ("/etc/hosts", "/proc", "/dev")]


def test_cp_out_of_and_into_a_stopped_container(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    cid = _finished(
        docker, "--name", "box", "busybox", "sh", "-c", "mkdir /data; echo hello > /data/greeting"
    )
    out = tmp_path / "out"
    docker.ok("cp", "box:/data", str(out))
    assert (out / "greeting").read_text() == "hello\n"
    docker.ok("cp", "box:/data/greeting", str(tmp_path / "one"))
    assert (tmp_path / "one").read_text() == "hello\n"

    source = tmp_path / "in.txt"
    source.write_text("from the host\n")
    docker.ok("cp", str(source), "box:/data/")
    docker.ok("start", "box")  # runs its command again: the file is in its layer
    assert docker.ok("wait", "box").strip() == "0"
    docker.ok("cp", "box:/data/in.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "from the host\n"
    r = docker.run("cp", "box:/nosuch", str(tmp_path / "x"))
    assert r.returncode != 0 and "Could not find the file /nosuch in container" in r.stderr.decode()
    assert cid


def test_cp_with_a_running_container_sees_its_mounts(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    docker.ok("run", "-d", "--name", "live", "--init", "busybox", "sh", "-c", "echo up > /tmp/up; sleep 300")
    lab.eventually(
        lambda: docker.run("cp", "live:/tmp/up", str(tmp_path / "up")).returncode == 0, 20, "the file"
    )
    assert (tmp_path / "up").read_text() == "up\n"
    # /etc/hosts is the engine's bind mount in the running root.
    docker.ok("cp", "live:/etc/hosts", str(tmp_path / "hosts"))
    assert "127.0.0.1" in (tmp_path / "hosts").read_text()
    (tmp_path / "note").write_text("note\n")
    docker.ok("cp", str(tmp_path / "note"), "live:/tmp/")
    docker.ok("cp", "live:/tmp/note", str(tmp_path / "note-back"))
    assert (tmp_path / "note-back").read_text() == "note\n"
    docker.ok("rm", "-f", "live")


def test_a_link_in_the_container_never_leads_to_the_hosts_files(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    host_dir = tmp_path / "host-secret"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host only\n")
    _finished(
        docker, "--name", "sneaky", "busybox", "sh", "-c", f"ln -s {host_dir} /tmp/link; ls -l /tmp/link"
    )
    # The attempt is real: the link is in the container, pointing at the host's directory.
    assert str(host_dir) in lab.dy_ok("logs", "sneaky")
    r = docker.run("cp", "sneaky:/tmp/link/secret", str(tmp_path / "stolen"))
    assert r.returncode != 0 and not (tmp_path / "stolen").exists()
    (tmp_path / "planted").write_text("planted\n")
    docker.run("cp", str(tmp_path / "planted"), "sneaky:/tmp/link/")
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]
    # An archive entry that climbs out of the target directory is refused.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../escape")
        info.size = 2
        t.addfile(info, io.BytesIO(b"x\n"))
    r = docker.run("cp", "-", "sneaky:/tmp", input=buf.getvalue())
    assert r.returncode != 0 and "refused archive entry" in r.stderr.decode()


def test_export_is_the_image_and_the_containers_layer(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    _finished(docker, "--name", "ex", "busybox", "sh", "-c", "echo kept > /tmp/kept; rm /bin/ls")
    target = tmp_path / "ex.tar"
    docker.ok("export", "-o", str(target), "ex")
    with tarfile.open(target) as t:
        names = set(t.getnames())
        assert "bin/busybox" in names and "tmp/kept" in names and "bin/ls" not in names
        member = t.extractfile("tmp/kept")
        assert member is not None and member.read() == b"kept\n"
    # A container of the host's tree has nothing of its own to export.
    lab.dy_ok("run", "--name", "hosty", "true")
    r = docker.run("export", "-o", str(tmp_path / "h.tar"), "hosty")
    assert r.returncode != 0 and "has no image" in r.stderr.decode()
