"""Image archives: what `docker save` writes and `docker load` reads, both ways.

Read: Docker's format (manifest.json: Config, RepoTags, Layers, with
layers as `<id>/layer.tar`, maybe links to one another), OCI image
layouts (oci-layout, index.json, blobs/sha256/...), and Docker 25's, which
is both at once. The archive is first unpacked under tmp/ (by the layer
extractor, so no name in it can lead outside), then read from there; a
file it names is resolved inside the unpacked tree, links included, never
outside. Gzip- and zstd-compressed archives are read too.

Written: Docker 25's shape, so that Docker of any version, skopeo and
dockyard read it: an OCI layout whose index names each image
(io.containerd.image.name, org.opencontainers.image.ref.name), and a
manifest.json whose entries point into blobs/sha256/. The blobs are the
image's own, byte for byte, so ids and digests survive the round trip.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.images.content import ContentStore
from dockyard.images.extract import extract
from dockyard.policy import manifests
from dockyard.policy.references import DIGEST_RE

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class ArchiveImage:
    config: bytes
    manifest: bytes | None  # an OCI/Docker manifest from the archive, when it has one
    manifest_media_type: str
    layer_files: list[Path]  # bottom first, inside the unpacked archive
    names: list[str]  # as the archive gives them: `busybox:latest`, `docker.io/x/y:1`


def unpack(source: BinaryIO, target: Path) -> None:
    """Unpack an archive (maybe compressed) into the empty directory `target`."""
    extract(source, target)


def _inside(root: Path, name: str) -> Path:
    """The file `name` of the unpacked archive, links resolved, refused when it leads outside."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArgument(f"the archive names an invalid file {name!r}")
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, name.lstrip("/")))
    if not real.startswith(real_root + os.sep):
        raise InvalidArgument(f"the archive's {name!r} leads outside the archive")
    if not os.path.isfile(real):
        raise InvalidArgument(f"the archive has no file {name!r}")
    return Path(real)


def _read_small(path: Path, what: str) -> bytes:
    if path.stat().st_size > manifests.DOCUMENT_MAX:
        raise InvalidArgument(f"the archive's {what} is too large")
    return path.read_bytes()


def _blob(root: Path, digest: str) -> Path:
    if not DIGEST_RE.match(digest):
        raise InvalidArgument(f"the archive names an invalid digest {digest!r}")
    return _inside(root, f"blobs/sha256/{digest.removeprefix('sha256:')}")


def _oci_manifests(root: Path, platform: manifests.Platform) -> list[tuple[bytes, str, list[str]]]:
    """The image manifests an OCI layout's index.json names: (bytes, media type, names)."""
    index = manifests.parse_index(_read_small(_inside(root, "index.json"), "index.json"))
    out = []
    for d in index.manifests:
        names = [v for k, v in d.annotations if k == IMAGE_NAME_ANNOTATION]
        if not names:
            names = [v for k, v in d.annotations if k == REF_NAME_ANNOTATION and ("/" in v or ":" in v)]
        raw = _read_small(_blob(root, d.digest), f"manifest {d.digest}")
        if manifests.sha256(raw) != d.digest:
            raise InvalidArgument(f"the archive's manifest {d.digest} does not match its digest")
        media_type = manifests.media_type_of(raw, d.media_type)
        if media_type in manifests.INDEX_TYPES:
            chosen = manifests.choose(manifests.parse_index(raw, media_type), platform)
            raw = _read_small(_blob(root, chosen.digest), f"manifest {chosen.digest}")
            if manifests.sha256(raw) != chosen.digest:
                raise InvalidArgument(f"the archive's manifest {chosen.digest} does not match its digest")
            media_type = manifests.media_type_of(raw, chosen.media_type)
        out.append((raw, media_type, names))
    return out


def read(root: Path, platform: manifests.Platform) -> list[ArchiveImage]:
    """The images of an unpacked archive."""
    has_docker = (root / "manifest.json").is_file()
    has_oci = (root / "index.json").is_file()
    if not has_docker and not has_oci:
        raise InvalidArgument(
            "the archive is neither a docker save archive (no manifest.json)"
            " nor an OCI layout (no index.json)"
        )
    oci = _oci_manifests(root, platform) if has_oci else []
    by_config: dict[str, tuple[bytes, str, list[str]]] = {}
    for raw, media_type, names in oci:
        by_config[manifests.parse_manifest(raw, media_type).config.digest] = (raw, media_type, names)
    images: list[ArchiveImage] = []
    if has_docker:
        try:
            entries = json.loads(_read_small(_inside(root, "manifest.json"), "manifest.json"))
        except ValueError as e:
            raise InvalidArgument(f"the archive's manifest.json is not valid JSON: {e}") from None
        if not isinstance(entries, list):
            raise InvalidArgument("the archive's manifest.json is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise InvalidArgument("an entry of the archive's manifest.json is not an object")
            config = _read_small(_inside(root, entry.get("Config", "")), "image config")
            layers = entry.get("Layers") or []
            if not isinstance(layers, list):
                raise InvalidArgument("the archive's manifest.json gives Layers that are not a list")
            tags = entry.get("RepoTags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidArgument("the archive's manifest.json gives RepoTags that are not strings")
            oci_match = by_config.pop(manifests.sha256(config), None)
            images.append(
                ArchiveImage(
                    config,
                    oci_match[0] if oci_match else None,
                    oci_match[1] if oci_match else "",
                    [_inside(root, name) for name in layers],
                    list(tags) or (oci_match[2] if oci_match else []),
                )
            )
    for raw, media_type, names in by_config.values():  # an OCI layout's own, or those manifest.json lacks
        m = manifests.parse_manifest(raw, media_type)
        config = _read_small(_blob(root, m.config.digest), "image config")
        images.append(ArchiveImage(config, raw, media_type, [_blob(root, d.digest) for d in m.layers], names))
    if not images:
        raise InvalidArgument("the archive holds no image")
    return images


# -- writing ------------------------------------------------------------------------------


@dataclass
class SavedImage:
    id: str
    config: bytes
    manifest: bytes
    manifest_media_type: str
    layer_blobs: list[str]  # digests, bottom first
    tags: list[str]  # normalized names with a tag
    familiar_tags: list[str]


class _Writer:
    """What tarfile writes to: the answer's stream."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        if data:
            self._write(bytes(data))
        return len(data)


def _add(tar: tarfile.TarFile, name: str, data: BinaryIO, size: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(mtime)
    tar.addfile(info, data)


def _add_dir(tar: tarfile.TarFile, name: str, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(mtime)
    tar.addfile(info)


def write(images: list[SavedImage], content: ContentStore, out: Callable[[bytes], None]) -> None:
    """The archive of `images`, as a tar stream handed to `out` piece by piece."""
    mtime = time.time()
    index = {"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": []}
    docker_manifest = []
    written: set[str] = set()
    with tarfile.open(fileobj=_Writer(out), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        _add_dir(tar, "blobs", mtime)
        _add_dir(tar, "blobs/sha256", mtime)

        def small(digest: str, data: bytes) -> None:
            if digest not in written:
                written.add(digest)
                _add(
                    tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", io.BytesIO(data), len(data), mtime
                )

        for image in images:
            small(image.id, image.config)
            for digest in image.layer_blobs:
                if digest in written:
                    continue
                written.add(digest)
                with content.open_blob(digest) as f:
                    size = os.fstat(f.fileno()).st_size
                    _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", f, size, mtime)
            manifest_digest = manifests.sha256(image.manifest)
            small(manifest_digest, image.manifest)
            descriptor = {
                "mediaType": image.manifest_media_type,
                "digest": manifest_digest,
                "size": len(image.manifest),
            }
            for name in image.tags or [""]:
                entry: dict[str, object] = dict(descriptor)
                if name:
                    # Docker 25's annotations: the full name, and the tag alone.
                    entry["annotations"] = {
                        IMAGE_NAME_ANNOTATION: name,
                        REF_NAME_ANNOTATION: name.rpartition(":")[2],
                    }
                index["manifests"].append(entry)  # type: ignore[attr-defined]
            docker_manifest.append(
                {
                    "Config": f"blobs/sha256/{image.id.removeprefix('sha256:')}",
                    "RepoTags": image.familiar_tags or None,
                    "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in image.layer_blobs],
                }
            )
        for name, data in (
            ("oci-layout", OCI_LAYOUT),
            ("index.json", json.dumps(index).encode()),
            ("manifest.json", json.dumps(docker_manifest).encode()),
        ):
            _add(tar, name, io.BytesIO(data), len(data), mtime)
