"""`docker load`, `docker import` and `docker save`: images to and from tar streams.

load: the archive is unpacked under tmp/, each image's layers are
extracted (the diff ids checked against the config) and their files moved
into the blob store, then the image is recorded and tagged. import: one
tarball (plain, gzip or zstd) becomes a one-layer image; the uncompressed
tar is kept as the layer's blob, and the config is Docker's for an import
(architecture, os, created, the --change instructions, the message).
save: images/archives.py writes the stream from the records and blobs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.engine.images import Images, familiar
from dockyard.errors import InvalidArgument
from dockyard.images import archives
from dockyard.images.content import DigestMismatch
from dockyard.images.extract import GZIP_MAGIC, ZSTD_MAGIC, extract
from dockyard.model import Image, ImageLayer
from dockyard.policy import changes, manifests, references
from dockyard.store import now

Emit = Callable[[dict[str, Any]], None]


def _layer_type(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return manifests.OCI_LAYER_GZIP
    if head.startswith(ZSTD_MAGIC):
        return manifests.OCI_LAYER_ZSTD
    return manifests.OCI_LAYER_TAR


def _store_layer(images: Images, path: Path, diff_id: str, placed: list[str]) -> ImageLayer:
    """A layer file of an unpacked archive: extracted (checked against diff_id), moved into the blobs."""
    content = images.content
    media_type = _layer_type(path)
    size = path.stat().st_size
    if content.has_layer(diff_id):
        from dockyard.engine.images.pull import _known_size

        extracted = _known_size(images, diff_id)
    else:
        with content.temp_dir("layer") as tmp, open(path, "rb") as f:
            target = tmp / "layer"
            target.mkdir()
            result = extract(f, target)
            if result.diff_id != diff_id:
                raise DigestMismatch(
                    f"a layer of the archive unpacks to {result.diff_id}, not the diff id {diff_id} "
                    "its config names: refused"
                )
            if content.place_layer(target, diff_id):
                placed.append(diff_id)
            extracted = result.size
    digest, size = content.add_blob_file(path)
    placed.append(digest)
    return ImageLayer(diff_id, digest, media_type, size, extracted)


def _undo(images: Images, placed: list[str]) -> None:
    with images.lock:
        keep = images.store.image_blobs_in_use() | images.store.image_layers_in_use()
        for digest in placed:
            if digest not in keep:
                images.content.remove_blob(digest)
                images.content.remove_layer(digest)


def load(images: Images, body: BinaryIO, emit: Emit) -> list[str]:
    """`docker load`: the images of a `docker save` archive or an OCI layout; what was loaded."""
    loaded: list[str] = []
    with images.busy(), images.content.temp_dir("load") as tmp:
        root = tmp / "archive"
        root.mkdir()
        archives.unpack(body, root)
        found = archives.read(root, images.platform)
        for item in found:
            image_id = manifests.sha256(item.config)
            view = manifests.parse_config(item.config)
            if len(view.diff_ids) != len(item.layer_files):
                raise InvalidArgument(
                    f"image {image_id[:19]} of the archive has {len(item.layer_files)} layers, "
                    f"its config {len(view.diff_ids)}"
                )
            names = [str(references.parse(n)) for n in item.names]
            placed: list[str] = []
            with images.writing(*view.diff_ids):
                try:
                    layers = [
                        _store_layer(images, path, diff_id, placed)
                        for path, diff_id in zip(item.layer_files, view.diff_ids, strict=True)
                    ]
                    manifest, media_type = item.manifest, item.manifest_media_type
                    if manifest is not None:
                        m = manifests.parse_manifest(manifest, media_type)
                        if [d.digest for d in m.layers] != [layer.blob_digest for layer in layers]:
                            manifest = None  # the archive's layers are not the manifest's blobs
                    if manifest is None:
                        manifest = manifests.make_manifest(
                            image_id,
                            len(item.config),
                            [(la.media_type, la.blob_digest, la.blob_size) for la in layers],
                        )
                        media_type = manifests.OCI_MANIFEST
                    images.store.add_image(
                        Image(image_id, item.config, manifest, media_type, tuple(layers), now())
                    )
                    images.add_names(image_id, names)
                except BaseException:
                    _undo(images, placed)
                    raise
            if names:
                for name in names:
                    loaded.append(name)
                    emit({"stream": f"Loaded image: {familiar(name)}\n"})
            else:
                loaded.append(image_id)
                emit({"stream": f"Loaded image ID: {image_id}\n"})
    return loaded


def import_tarball(
    images: Images, body: BinaryIO, repo: str, tag: str, message: str, change: list[str], platform: str
) -> str:
    """`docker import`: a root file system tarball as a one-layer image; its id."""
    target_ref = references.tag_target(repo, tag, "cannot import to a digest reference") if repo else None
    config_part = changes.apply(change)
    wanted = manifests.parse_platform(platform, images.platform) if platform else images.platform
    placed: list[str] = []
    with images.busy(), images.content.temp_dir("import") as tmp:
        layer_dir = tmp / "layer"
        layer_dir.mkdir()
        tar_path = tmp / "layer.tar"
        with open(tar_path, "xb") as keep:
            result = extract(body, layer_dir, keep_tar=keep)
            keep.flush()
            os.fsync(keep.fileno())
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        comment = message or "Imported from -"
        doc: dict[str, Any] = {
            "architecture": wanted.architecture,
            "config": config_part,
            "created": created,
            "history": [{"created": created, "comment": comment, "created_by": ""}],
            "os": wanted.os,
            "rootfs": {"type": "layers", "diff_ids": [result.diff_id]},
        }
        if wanted.variant:
            doc["variant"] = wanted.variant
        if message:
            doc["comment"] = message
        config = json.dumps(doc, separators=(",", ":")).encode()
        image_id = manifests.sha256(config)
        with images.writing(result.diff_id):
            try:
                if images.content.place_layer(layer_dir, result.diff_id):
                    placed.append(result.diff_id)
                digest, blob_size = images.content.add_blob_file(tar_path, result.diff_id)
                placed.append(digest)
                layer = ImageLayer(result.diff_id, digest, manifests.OCI_LAYER_TAR, blob_size, result.size)
                manifest = manifests.make_manifest(
                    image_id, len(config), [(layer.media_type, digest, blob_size)]
                )
                images.store.add_image(
                    Image(image_id, config, manifest, manifests.OCI_MANIFEST, (layer,), now())
                )
                if target_ref is not None:
                    images.add_names(image_id, [str(target_ref)])
            except BaseException:
                _undo(images, placed)
                raise
    return image_id


def save(images: Images, refs: list[str]) -> Callable[[Callable[[bytes], None]], None]:
    """`docker save`: checks the names now; the returned writer streams the archive."""
    if not refs:
        raise InvalidArgument("save needs at least one image name")
    chosen: dict[str, archives.SavedImage] = {}
    for ref in refs:
        image = images.get(ref)
        entry = chosen.get(image.id)
        if entry is None:
            entry = chosen[image.id] = archives.SavedImage(
                image.id,
                image.config,
                image.manifest,
                image.manifest_media_type,
                [layer.blob_digest for layer in image.layers],
                [],
                [],
            )
        # A name saves that name; an id saves every tag of the image (Docker's rule).
        if references.is_id_like(ref) and ref.removeprefix("sha256:") in image.id:
            names = list(image.tags)
        else:
            parsed = references.parse(ref)
            names = [str(parsed)] if not parsed.digest else []
        for name in names:
            if name not in entry.tags:
                entry.tags.append(name)
                entry.familiar_tags.append(familiar(name))
    saved = list(chosen.values())
    for entry in saved:
        for digest in entry.layer_blobs:
            if not images.content.has_blob(digest):
                raise InvalidArgument(f"image {entry.id[:19]} lacks its layer blob {digest}; pull it again")

    def stream(out: Callable[[bytes], None]) -> None:
        with images.writing(*(d for e in saved for d in e.layer_blobs)), contextlib.suppress(BrokenPipeError):
            archives.write(saved, images.content, out)

    return stream
