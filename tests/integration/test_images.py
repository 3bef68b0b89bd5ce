"""Images through the docker CLI and dockyard's: import, load, save, tag, rmi, prune, history, inspect.

The real docker CLI is the judge (DOCKER_HOST at the lab's socket). Two
images, made here: busybox (`docker import` of a tarball of Debian's
busybox-static) and a two-layer image (a `docker save`-format archive
written by the test, with a whiteout and an opaque directory in its upper
layer, checked after extraction and through a real overlay mount).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from docker_cli import DockerCli
from images_lab import LOWER, busybox_tarball, multi_layer_archive
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    return DockerCli.for_lab(lab, tmp_path)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_import_save_load_round_trip_with_the_docker_cli(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    image_id = docker.ok(
        "import",
        "-c",
        'CMD ["/bin/sh"]',
        "-c",
        "ENV A=1",
        "-m",
        "busybox, made here",
        "-",
        "busybox:latest",
        input=busybox_tarball(),
    ).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    listing = docker.ok("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").splitlines()
    assert listing == [f"busybox latest {image_id[7:19]}"]
    info = json.loads(docker.ok("image", "inspect", "busybox"))[0]
    assert info["Id"] == image_id and info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["/bin/sh"] and info["Config"]["Env"] == ["A=1"]
    assert info["Comment"] == "busybox, made here" and info["Os"] == "linux"
    # The layer is extracted, busybox and its links in it.
    (layer_dir,) = info["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert Path(layer_dir, "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(Path(layer_dir, "bin/sh")) == "busybox"
    assert stat.S_IMODE(Path(layer_dir, "tmp").stat().st_mode) == 0o1777
    history = docker.ok("history", "--format", "{{.ID}} {{.Comment}}", "busybox").splitlines()
    assert history == [f"{image_id[7:19]} busybox, made here"]

    docker.ok("tag", "busybox", "127.0.0.1:5000/tools/busybox:1")
    assert docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "127.0.0.1:5000/tools/*").split() == [
        "127.0.0.1:5000/tools/busybox:1"
    ]
    archive = tmp_path / "busybox.tar"
    docker.ok("save", "-o", str(archive), "busybox", "127.0.0.1:5000/tools/busybox:1")
    out = docker.ok("rmi", "busybox", "127.0.0.1:5000/tools/busybox:1")
    assert out.splitlines() == [
        "Untagged: busybox:latest",
        "Untagged: 127.0.0.1:5000/tools/busybox:1",
        f"Deleted: {image_id}",
    ]
    assert docker.ok("images", "-q") == ""
    assert not Path(layer_dir).exists(), "the image's layer went with it"

    out = docker.ok("load", "-i", str(archive))
    assert sorted(out.splitlines()) == [
        "Loaded image: 127.0.0.1:5000/tools/busybox:1",
        "Loaded image: busybox:latest",
    ]
    # One line per name (Docker's way), one id: the same as before the round trip.
    assert set(docker.ok("images", "-q", "--no-trunc").split()) == {image_id}
    # Saved again, the archive holds the same blobs (the image's own, byte for byte).
    again = tmp_path / "again.tar"
    docker.ok("save", "-o", str(again), image_id)
    assert _tar_names(again) >= {n for n in _tar_names(archive) if n.startswith("blobs/")}

    # rmi by id refuses an image with two tags unless forced; prune -a takes it.
    r = docker.run("rmi", image_id[7:19])
    assert r.returncode == 1 and b"must be forced" in r.stderr and b"multiple repositories" in r.stderr
    out = docker.ok("image", "prune", "-af")
    assert f"deleted: {image_id}" in out
    assert docker.ok("images", "-q") == ""
    images_dir = lab.root / "images"
    assert _files(images_dir / "layers") == set() and _files(images_dir / "blobs/sha256") == set()


def _tar_names(path: Path) -> set[str]:
    import tarfile

    with tarfile.open(path) as t:
        return set(t.getnames())


def test_a_multi_layer_archive_loads_with_whiteouts_in_overlayfs_form(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    data, image_id, diff_ids = multi_layer_archive("multi:1")
    archive = tmp_path / "multi.tar"
    archive.write_bytes(data)
    # dockyard's own CLI this time.
    out = lab.dy_ok("load", "-i", str(archive))
    assert out.strip() == "Loaded image: multi:1"
    info = json.loads(lab.dy_ok("image", "inspect", "multi:1"))[0]
    assert info["Id"] == image_id and info["RootFS"]["Layers"] == diff_ids
    assert info["Config"]["WorkingDir"] == "/etc" and info["Config"]["StopSignal"] == "SIGINT"
    upper, lower = (Path(p) for p in info["GraphDriver"]["Data"]["LowerDir"].split(":"))
    assert lower.name == diff_ids[0][7:] and upper.name == diff_ids[1][7:]
    # The whiteout is a 0/0 character device, the opaque directory has overlayfs's xattr.
    gone = upper / "etc/gone"
    st = os.lstat(gone)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"
    assert not (upper / "etc/.wh.gone").exists() and not (upper / "opq/.wh..wh..opq").exists()
    assert (lower / "etc/gone").read_bytes() == b"removed by the upper layer\n"
    assert {n for _k, n, _d in LOWER} == _files(lower)
    # And overlayfs reads them so: mounted in a mount namespace of its own, gone with it.
    merged = tmp_path / "merged"
    merged.mkdir()
    r = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t overlay overlay -o lowerdir={upper}:{lower} {merged} && ls -A {merged}/etc {merged}/opq",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"{merged}/etc:", "added", "keep", f"{merged}/opq:", "new"]

    history = json.loads(lab.dy_ok("image", "history", "--format", "json", "multi:1"))
    assert [h["CreatedBy"] for h in history] == [
        "/bin/sh -c #(nop) ADD upper",
        "/bin/sh -c #(nop) CMD",
        "/bin/sh -c #(nop) ADD lower",
    ]
    assert history[0]["Id"] == image_id and history[1]["Size"] == 0
    # docker's view of the same image.
    assert docker.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").split() == [
        "multi:1",
        image_id[7:19],
    ]


def test_bad_archives_and_names_are_refused_and_change_nothing(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    r = docker.run("load", input=buf.getvalue())
    assert r.returncode == 1 and b"leads out of the layer" in r.stderr, r.stderr
    assert not (tmp_path / "escape").exists() and not (lab.root / "images" / "escape").exists()
    # A layer whose content is not what the config's diff id says.
    data, _image_id, _ = multi_layer_archive()
    tampered = data.replace(b"kept\n", b"KEPT\n")
    r = docker.run("load", input=tampered)
    assert r.returncode == 1 and b"not the diff id" in r.stderr, r.stderr
    r = docker.run("image", "inspect", "No/Such:image")
    assert r.returncode == 1
    r = lab.dy("rmi", "nosuch")
    assert r.returncode == 125 and r.stderr.strip() == "dockyard: No such image: nosuch"
    r = lab.dy("tag", "nosuch", "x")
    assert r.returncode == 125 and "No such image" in r.stderr
    assert docker.ok("images", "-q") == ""
    images_dir = lab.root / "images"
    assert _files(images_dir / "layers") == set() and _files(images_dir / "blobs/sha256") == set()
    assert _files(images_dir / "tmp") == set()


def test_import_of_compressed_tarballs(lab: Lab, docker: DockerCli) -> None:
    """gzip and zstd are read (by their first bytes): the same layer, the same diff id."""
    import gzip

    import zstandard

    plain = busybox_tarball()
    ids = {}
    for name, data in (
        ("plain", plain),
        ("gzip", gzip.compress(plain)),
        ("zstd", zstandard.ZstdCompressor().compress(plain)),
    ):
        ids[name] = docker.ok("import", "-", f"bb:{name}", input=data).strip()
    layers = {json.loads(docker.ok("image", "inspect", i))[0]["RootFS"]["Layers"][0] for i in ids.values()}
    assert len(layers) == 1 and layers == {"sha256:" + __import__("hashlib").sha256(plain).hexdigest()}
    r = docker.run("import", "-", "bb:broken", input=b"\x28\xb5\x2f\xfd" + b"not zstd at all" * 10)
    assert r.returncode == 1 and b"broken" in r.stderr, r.stderr
