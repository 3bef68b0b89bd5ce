"""Containers on images: the image's files are the root, its config the defaults, the host's tree is gone.

The docker CLI makes and starts them (DOCKER_HOST at the lab's socket);
images are made here (`docker import` of busybox-static, a `docker save`
archive of two layers). What a container printed is read with dockyard's
own `logs`.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from docker_cli import DockerCli
from images_lab import busybox_tarball, multi_layer_archive
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    return DockerCli.for_lab(lab, tmp_path)


def _run(lab: Lab, docker: DockerCli, *args: str) -> tuple[int, str]:
    """create, start, wait: (exit code, what it printed)."""
    cid = docker.ok("create", *args).strip()
    docker.ok("start", cid)
    code = int(docker.ok("wait", cid).strip())
    return code, lab.dy_ok("logs", cid)


def test_the_root_is_the_images_and_the_host_tree_is_gone(lab: Lab, docker: DockerCli) -> None:
    image_id = docker.import_image("busybox:latest")
    code, out = _run(
        lab,
        docker,
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "ls /bin; test -e /usr/bin/python3 && echo HOST-TREE; test -e /etc/os-release && echo HOST-ETC;"
        " echo written > /tmp/mine; cat /tmp/mine; cat /etc/hostname; busybox ip -4 -o addr show eth0",
    )
    assert code == 0, out
    lines = out.split()
    # The image's /bin only: busybox and its links.
    assert {"busybox", "sh", "ls", "cat"} <= set(lines) and "python3" not in lines
    assert "HOST-TREE" not in out and "HOST-ETC" not in out
    assert "written" in lines
    # The engine's files are there (the image had no /etc), and the network.
    info = json.loads(docker.ok("inspect", "c1"))[0]
    assert info["Image"] == image_id and info["Config"]["Image"] == "busybox"
    lowers = info["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert len(lowers) == 1 and Path(lowers[0], "bin/busybox").exists()
    assert Path(info["GraphDriver"]["Data"]["UpperDir"], "tmp/mine").read_text() == "written\n"
    assert info["Id"][:12] in lines
    # Its eth0 on the default bridge (the image has no `ip`: busybox's applet).
    assert "inet 172.17." in out
    assert docker.ok("ps", "-a", "--format", "{{.Names}} {{.Image}}").split() == ["c1", "busybox"]
    # A container made without an image (dockyard's own run) says so: no image, the host's `/` below.
    lab.dy_ok("run", "--name", "hosty", "true")
    info = json.loads(docker.ok("inspect", "hosty"))[0]
    assert info["Image"] == "" and info["Config"]["Image"] == ""
    assert info["GraphDriver"]["Data"]["LowerDir"] == "/"

    # Its writes stayed in its own layer: neither the image nor a second container sees them.
    code, out = _run(lab, docker, "busybox", "sh", "-c", "cat /tmp/mine 2>/dev/null || echo ABSENT")
    assert out.split() == ["ABSENT"], out
    (layer,) = json.loads(docker.ok("image", "inspect", "busybox"))[0]["GraphDriver"]["Data"][
        "LowerDir"
    ].split(":")
    assert not Path(layer, "tmp", "mine").exists()


def test_the_images_config_gives_the_defaults(lab: Lab, docker: DockerCli) -> None:
    docker.import_image(
        "greeter:1",
        'CMD ["sh", "-c", "echo $GREETING from $PWD"]',
        "ENV GREETING=hello",
        "WORKDIR /tmp",
    )
    assert _run(lab, docker, "greeter:1") == (0, "hello from /tmp\n")
    # A command given replaces the image's; an environment variable given replaces the image's by name.
    assert _run(
        lab, docker, "-e", "GREETING=bye", "-w", "/bin", "greeter:1", "sh", "-c", "echo $GREETING $PWD"
    ) == (
        0,
        "bye /bin\n",
    )
    # An entrypoint given drops the image's command.
    assert _run(lab, docker, "--entrypoint", "echo", "greeter:1") == (0, "\n")
    # `docker run --rm IMAGE` in the foreground: the image's command and environment, its exit
    # status passed through, and nothing left.
    docker.import_image(
        "exiter:1",
        'CMD ["sh", "-c", "echo $GREETING from $PWD; echo to-err >&2; exit 3"]',
        "ENV GREETING=hi",
        "WORKDIR /tmp",
    )
    before = docker.ok("ps", "-aq").split()
    r = docker.run("run", "--rm", "exiter:1")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"hi from /tmp\n", b"to-err\n")
    assert docker.ok("ps", "-aq").split() == before
    # The two-layer image: its upper layer's whiteout hides the lower's file, the opaque directory its content.
    archive, _, _ = multi_layer_archive("multi:1", base=busybox_tarball())
    docker.ok("load", input=archive)
    code, out = _run(lab, docker, "multi:1", "sh", "-c", "pwd; ls /etc /opq; cat /etc/added")
    assert code == 0, out
    lines = out.split()
    assert lines[0] == "/etc" and {"keep", "added", "new"} <= set(lines), out
    assert "gone" not in lines and "old" not in lines


def test_a_missing_image_is_reported_and_nothing_is_made(lab: Lab, docker: DockerCli) -> None:
    r = docker.run("create", "--pull", "never", "nosuch:1", "true")
    assert r.returncode != 0 and "No such image: nosuch:1" in r.stderr.decode()
    assert docker.ok("ps", "-aq") == ""
    # An image without a command, and none given: refused.
    docker.import_image("bare:1")
    r = docker.run("create", "bare:1")
    assert r.returncode != 0 and "no command specified" in r.stderr.decode()
    assert docker.ok("ps", "-aq") == ""


def test_an_image_in_use_is_kept_until_its_container_goes(lab: Lab, docker: DockerCli) -> None:
    docker.import_image("busybox:latest")
    cid = docker.ok("create", "--name", "user", "busybox", "true").strip()
    r = docker.run("rmi", "busybox")
    # Untagged, kept for its container (Docker's way), which still starts.
    assert r.returncode == 0 and "Deleted" not in r.stdout.decode()
    docker.ok("start", cid)
    assert docker.ok("wait", cid).strip() == "0"
    docker.ok("rm", cid)
    docker.ok("image", "prune", "-f")
    assert docker.ok("images", "-aq") == ""


def test_init_is_bound_into_an_images_root(lab: Lab, docker: DockerCli) -> None:
    docker.import_image("busybox:latest")
    code, out = _run(lab, docker, "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert code == 0 and out.split()[0] == "/dev/init", out


def test_an_images_symlink_cannot_lead_the_engines_files_out_of_its_root(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    """An image whose /etc points at a host path: /etc/hosts lands in the container's layer."""
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()
    buf = io.BytesIO(busybox_tarball())
    with tarfile.open(fileobj=buf, mode="a") as t:
        link = tarfile.TarInfo("etc")
        link.type = tarfile.SYMTYPE
        link.linkname = str(host_dir)
        t.addfile(link)
    docker.import_image("evil:1", tarball=buf.getvalue())
    code, out = _run(lab, docker, "evil:1", "sh", "-c", "cat /etc/hosts; cat /etc/hostname")
    # The attempt was made (the image's /etc does point there) and the files are the container's.
    assert code == 0 and "127.0.0.1" in out, out
    assert list(host_dir.iterdir()) == []
