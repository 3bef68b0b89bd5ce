"""Pull from a registry: Debian's docker-registry in the lab, filled by skopeo from archives made here.

By tag and by digest (gzip layers, as skopeo pushes them; zstd ones in OCI form), through an index by platform,
a corrupted layer refused with nothing left, basic auth (htpasswd, docker
login) and the token flow (a bearer-token front, tests/tools/token_registry.py,
before the registry). The docker CLI and docker-py are the clients.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from docker_cli import DockerCli
from images_lab import TOKEN_REGISTRY, Registry, busybox_tarball, multi_layer_archive, sha256
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    return DockerCli.for_lab(lab, tmp_path)


def _archives(docker: DockerCli, tmp: Path) -> tuple[Path, str, Path, str, list[str]]:
    """busybox (imported, then saved) and the two-layer image, as docker save archives."""
    busybox_id = docker.ok("import", "-", "busybox:latest", input=busybox_tarball()).strip()
    busybox = tmp / "busybox.tar"
    docker.ok("save", "-o", str(busybox), "busybox")
    docker.ok("rmi", "busybox")
    data, multi_id, diff_ids = multi_layer_archive("multi:1")
    multi = tmp / "multi.tar"
    multi.write_bytes(data)
    return busybox, busybox_id, multi, multi_id, diff_ids


def _stored(lab: Lab) -> set[str]:
    base = lab.root / "images"
    return {str(p.relative_to(base)) for p in base.rglob("*")} if base.exists() else set()


def test_pull_by_tag_and_digest(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    busybox, busybox_id, multi, multi_id, diff_ids = _archives(docker, tmp_path)
    registry = Registry(lab)
    registry.push(busybox, "tools/busybox:latest")
    registry.push(multi, "multi:1")
    r = registry.address

    out = docker.ok("pull", f"{r}/tools/busybox")
    assert "Pull complete" in out and f"Status: Downloaded newer image for {r}/tools/busybox:latest" in out
    digest = registry.manifest_digest("tools/busybox", "latest")
    assert f"Digest: {digest}" in out
    info = json.loads(docker.ok("image", "inspect", f"{r}/tools/busybox"))[0]
    assert info["Id"] == busybox_id, "the image's id survives save, push and pull"
    assert info["RepoDigests"] == [f"{r}/tools/busybox@{digest}"]
    (layer,) = info["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert Path(layer, "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    # Again: nothing to fetch.
    assert "Image is up to date" in docker.ok("pull", f"{r}/tools/busybox:latest")

    # By digest, the two-layer image; its whiteout and opaque directory as after a load.
    multi_digest = registry.manifest_digest("multi", "1")
    out = docker.ok("pull", f"{r}/multi@{multi_digest}")
    assert "Pull complete" in out
    info = json.loads(docker.ok("image", "inspect", f"{r}/multi@{multi_digest}"))[0]
    assert info["Id"] == multi_id and info["RootFS"]["Layers"] == diff_ids
    assert info["RepoTags"] == [] and info["RepoDigests"] == [f"{r}/multi@{multi_digest}"]
    upper = Path(info["GraphDriver"]["Data"]["LowerDir"].split(":")[0])
    st = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"

    # docker-py: list, pull, get (save) and load, remove.
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=f"unix://{lab.root}/dockyard.sock", version="1.41")
    try:
        assert {i.id for i in client.images.list()} == {busybox_id, multi_id}
        client.images.remove(f"{r}/tools/busybox:latest")
        pulled = client.images.pull(f"{r}/tools/busybox", tag="latest")
        assert pulled.id == busybox_id
        saved = b"".join(pulled.save())
        client.images.remove(busybox_id, force=True)
        (loaded,) = client.images.load(saved)
        assert loaded.id == busybox_id and f"{r}/tools/busybox:latest" in loaded.tags
    finally:
        client.close()
    registry.stop()


def test_an_index_is_resolved_by_platform(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    busybox, busybox_id, *_ = _archives(docker, tmp_path)
    registry = Registry(lab)
    registry.push(busybox, "busybox:latest")
    raw = registry.http("GET", "/v2/busybox/manifests/latest")[1]
    status, manifest_raw = 0, b""
    # Ask for the OCI or Docker manifest as stored, with its media type.
    manifest = json.loads(raw)
    media_type = manifest.get("mediaType", "application/vnd.docker.distribution.manifest.v2+json")
    manifest_raw = raw
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            # An arm64 entry first (its manifest is the amd64 one: a lie the config gives away).
            {
                "mediaType": media_type,
                "digest": sha256(manifest_raw),
                "size": len(manifest_raw),
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
            {
                "mediaType": media_type,
                "digest": sha256(manifest_raw),
                "size": len(manifest_raw),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    body = json.dumps(index).encode()
    status, answer = registry.http("PUT", "/v2/busybox/manifests/multiarch", body, index["mediaType"])
    assert status == 201, answer
    r = registry.address
    out = docker.ok("pull", f"{r}/busybox:multiarch")
    assert f"Digest: {sha256(body)}" in out
    assert json.loads(docker.ok("image", "inspect", f"{r}/busybox:multiarch"))[0]["Id"] == busybox_id
    res = docker.run("pull", "--platform", "linux/s390x", f"{r}/busybox:multiarch")
    assert res.returncode == 1 and b"no matching manifest for linux/s390x" in res.stderr, res.stderr
    res = docker.run("pull", "--platform", "linux/arm64", f"{r}/busybox:multiarch")
    assert res.returncode == 1 and b"is for linux/amd64, not linux/arm64" in res.stderr, res.stderr
    registry.stop()


def test_a_corrupted_layer_is_refused_and_nothing_is_left(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    _busybox, _busybox_id, multi, *_ = _archives(docker, tmp_path)
    registry = Registry(lab)
    registry.push(multi, "multi:1")
    manifest = json.loads(registry.http("GET", "/v2/multi/manifests/1")[1])
    top = manifest["layers"][-1]["digest"]
    blob = registry.blob_file(top)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))
    before = _stored(lab)
    r = docker.run("pull", f"{registry.address}/multi:1")
    assert r.returncode == 1, r.stdout
    assert f"blob {top} has the digest".encode() in r.stderr + r.stdout, (r.stdout, r.stderr)
    assert docker.ok("images", "-q") == ""
    # The lower layer came whole but no image keeps it: gone with the failed pull, tmp/ empty.
    assert _stored(lab) == before
    assert not list((lab.root / "images" / "tmp").iterdir())
    registry.stop()


def test_basic_auth_with_docker_login(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    busybox, busybox_id, *_ = _archives(docker, tmp_path)
    registry = Registry(lab, users={"alice": "s3cret"})
    registry.push(busybox, "busybox:1", creds="alice:s3cret")
    r = registry.address
    res = docker.run("pull", f"{r}/busybox:1")
    assert res.returncode == 1 and b"needs a login" in res.stderr, res.stderr
    res = docker.run("login", "-u", "alice", "--password-stdin", r, input=b"wrong\n")
    assert res.returncode == 1 and b"refused the credentials" in res.stderr, res.stderr
    docker.ok("login", "-u", "alice", "--password-stdin", r, input=b"s3cret\n")
    out = docker.ok("pull", f"{r}/busybox:1")
    assert "Pull complete" in out
    assert json.loads(docker.ok("image", "inspect", f"{r}/busybox:1"))[0]["Id"] == busybox_id
    registry.stop()


def test_the_token_flow(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    busybox, busybox_id, *_ = _archives(docker, tmp_path)
    registry = Registry(lab)
    registry.push(busybox, "busybox:1")
    front = lab.spawn_in(lab.host, sys.executable, TOKEN_REGISTRY, "5001", "5000", "bob", "pw")
    lab.eventually(
        lambda: (
            lab.in_host(
                sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 5001), 1)"
            ).returncode
            == 0
        ),
        timeout=10,
        what="the token front listening",
    )
    res = docker.run("pull", "127.0.0.1:5001/busybox:1")
    assert res.returncode == 1 and b"refused the credentials" in res.stderr, res.stderr
    docker.ok("login", "-u", "bob", "--password-stdin", "127.0.0.1:5001", input=b"pw\n")
    out = docker.ok("pull", "127.0.0.1:5001/busybox:1")
    assert "Pull complete" in out
    assert json.loads(docker.ok("image", "inspect", "127.0.0.1:5001/busybox:1"))[0]["Id"] == busybox_id
    front.kill()
    _out, err = front.communicate(timeout=10)
    # The flow was taken: refused without credentials, then tokens for the repository's pull scope.
    assert "token refused" in err and "token given" in err and "scope=repository%3Abusybox%3Apull" in err, err
    registry.stop()


def test_zstd_layers_are_pulled_and_run(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    """An image whose layers the registry holds zstd-compressed: pulled, checked, and a container runs on it."""
    busybox, _, _, _, _ = _archives(docker, tmp_path)
    registry = Registry(lab)
    # OCI's form (zstd has no Docker media type): the config is rewritten, so the id is a new one.
    registry.push(busybox, "zstd/busybox:1", "--dest-compress-format", "zstd", "--format", "oci")
    status, raw = registry.http("GET", "/v2/zstd/busybox/manifests/1")
    assert status == 200
    (layer,) = json.loads(raw)["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    r = registry.address
    assert "Pull complete" in docker.ok("pull", f"{r}/zstd/busybox:1")
    info = json.loads(docker.ok("image", "inspect", f"{r}/zstd/busybox:1"))[0]
    (layer_dir,) = info["GraphDriver"]["Data"]["LowerDir"].split(":")
    assert Path(layer_dir, "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    cid = docker.ok("create", f"{r}/zstd/busybox:1", "sh", "-c", "echo ran from zstd; ls /bin").strip()
    docker.ok("start", cid)
    assert docker.ok("wait", cid).strip() == "0"
    out = lab.dy_ok("logs", cid).split()
    assert out[:3] == ["ran", "from", "zstd"] and "busybox" in out
    registry.stop()
