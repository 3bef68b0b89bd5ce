"""`docker pull`: an image from a registry, every byte checked against its digest.

The order: the manifest (by tag or digest; an index or manifest list is
resolved to the host's platform, or --platform's), the config, then each
layer: downloaded to tmp/ while hashed, refused unless its sha256 is the
manifest's digest, renamed into place, extracted once to a directory of
its own (skipped when that diff id is already here), refused unless the
uncompressed tar's sha256 is the config's diff id. The image's record comes
last. A failure removes what this pull placed and no record keeps: nothing
is left half-stored.

Progress goes out as Docker's JSON messages (the `docker pull` bars).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dockyard.engine.images import Images
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.images.content import DigestMismatch
from dockyard.images.extract import extract
from dockyard.model import Image, ImageLayer
from dockyard.policy import manifests, references
from dockyard.store import now

if TYPE_CHECKING:
    # Imported by the calls that need them: http.client (and email) only once
    # a pull, a login or an auth header comes, not in every daemon (its memory).
    from dockyard.images.registry import Credentials, Registry

Emit = Callable[[dict[str, Any]], None]
# At most this often a layer's progress is told (Docker's CLI redraws on each message).
PROGRESS_INTERVAL = 0.1


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class _Progress:
    def __init__(self, emit: Emit, layer_id: str, status: str, total: int) -> None:
        self.emit = emit
        self.id = layer_id
        self.status = status
        self.total = total
        self.last = 0.0

    def __call__(self, current: int) -> None:
        t = time.monotonic()
        if t - self.last < PROGRESS_INTERVAL:
            return
        self.last = t
        detail: dict[str, int] = {"current": current}
        if self.total > 0:
            detail["total"] = self.total
        self.emit({"status": self.status, "progressDetail": detail, "id": self.id})


def insecure(images: Images, host: str) -> bool:
    from dockyard.images.registry import is_insecure_by_default

    if is_insecure_by_default(host):
        return True
    import ipaddress

    for entry in images.settings.insecure_registries:
        if entry == host:
            return True
        with contextlib.suppress(ValueError):
            name = host.rsplit(":", 1)[0].strip("[]")
            if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                return True
    return False


def credentials(header: str) -> Credentials | None:
    """Docker's X-Registry-Auth header, parsed."""
    from dockyard.images.registry import Credentials

    return Credentials.from_header(header)


def login(images: Images, server: str, username: str, password: str) -> None:
    """`docker login`: whether the credentials are good at that registry (its /v2/)."""
    host = server.removeprefix("https://").removeprefix("http://").rstrip("/")
    host = host.removesuffix("/v1").removesuffix("/v2").rstrip("/")
    if not host or host in (references.LEGACY_DOMAIN, references.DEFAULT_DOMAIN):
        host = references.DEFAULT_REGISTRY_HOST
    if not username:
        raise InvalidArgument("login needs a username")
    from dockyard.images.registry import Credentials, Registry

    Registry(host, Credentials(username, password), insecure(images, host)).check_login()


def pull(
    images: Images,
    image: str,
    tag: str,
    platform: str,
    credentials: Credentials | None,
    emit: Emit,
) -> Image:
    """Pull `image` (`fromImage`) at `tag` (a tag or a digest); Docker's messages through `emit`."""
    if not image:
        raise InvalidArgument("pull needs an image name (fromImage)")
    ref = references.parse(image, default_tag=False)
    if tag:
        if ref.tag or ref.digest:
            raise InvalidArgument(f"invalid reference format: {image} with tag {tag}")
        ref = ref.with_digest(tag) if tag.startswith("sha256:") else ref.with_tag(references.check_tag(tag))
        if ref.digest:
            references.check_digest(ref.digest)
    elif not ref.tag and not ref.digest:
        raise InvalidArgument(
            "pulling every tag of a repository (docker pull -a) is not supported; give a tag"
        )
    wanted = manifests.parse_platform(platform, images.platform) if platform else images.platform
    from dockyard.images.registry import Registry

    registry = Registry(ref.registry_host, credentials, insecure(images, ref.registry_host))
    with images.busy():
        return _pull(images, registry, ref, wanted, emit)


def _fetch_manifest(registry: Registry, ref: references.Reference, reference: str) -> tuple[bytes, str, str]:
    raw, media_type = registry.manifest(ref.path, reference)
    digest = manifests.sha256(raw)
    if reference.startswith("sha256:") and digest != reference:
        raise DigestMismatch(f"the registry's manifest {reference} has the digest {digest}: refused")
    return raw, manifests.media_type_of(raw, media_type), digest


def _pull(
    images: Images, registry: Registry, ref: references.Reference, wanted: manifests.Platform, emit: Emit
) -> Image:
    raw, media_type, top_digest = _fetch_manifest(registry, ref, ref.digest or ref.tag)
    if media_type in manifests.INDEX_TYPES:
        chosen = manifests.choose(manifests.parse_index(raw, media_type), wanted)
        raw, media_type, _ = _fetch_manifest(registry, ref, chosen.digest)
    manifest = manifests.parse_manifest(raw, media_type)
    # Docker's first line; anything that fails before it is the request's error.
    emit({"status": f"Pulling from {ref.path}", "id": ref.digest or ref.tag})
    with registry.blob(ref.path, manifest.config.digest) as (stream, _size):
        config = stream.read(manifests.DOCUMENT_MAX + 1)
    if manifests.sha256(config) != manifest.config.digest:
        raise DigestMismatch(f"the image config {manifest.config.digest} does not match its digest: refused")
    view = manifests.parse_config(config)
    manifests.check_layers(view, manifest)
    if view.os != wanted.os or (view.architecture and view.architecture != wanted.architecture):
        raise InvalidArgument(
            f"the image {ref.familiar()} is for {view.os}/{view.architecture}, not {wanted}"
        )
    image_id = manifest.config.digest
    existing = images.store.find_image(image_id)
    names = [str(ref.with_digest(top_digest))] + ([str(ref)] if ref.tag else [])
    if existing is not None and all(images.content.has_layer(d) for d in view.diff_ids):
        images.add_names(image_id, names)
        emit({"status": f"Digest: {top_digest}"})
        emit({"status": f"Status: Image is up to date for {ref.familiar()}"})
        return images.get(image_id)
    placed: list[str] = []
    digests = [d.digest for d in manifest.layers] + list(view.diff_ids)
    with images.writing(*digests):
        try:
            layers = [
                _layer(images, registry, ref, d, diff_id, emit, placed)
                for d, diff_id in zip(manifest.layers, view.diff_ids, strict=True)
            ]
            record = Image(image_id, config, raw, media_type, tuple(layers), now())
            images.store.add_image(record)
            images.add_names(image_id, names)
        except BaseException:
            with images.lock:
                keep = images.store.image_blobs_in_use() | images.store.image_layers_in_use()
                for digest in placed:
                    if digest in keep:
                        continue
                    images.content.remove_blob(digest)
                    images.content.remove_layer(digest)
            raise
    emit({"status": f"Digest: {top_digest}"})
    emit({"status": f"Status: Downloaded newer image for {ref.familiar()}"})
    return images.get(image_id)


def _layer(
    images: Images,
    registry: Registry,
    ref: references.Reference,
    d: manifests.Descriptor,
    diff_id: str,
    emit: Emit,
    placed: list[str],
) -> ImageLayer:
    short = _short(d.digest)
    content = images.content
    if content.has_layer(diff_id) and content.has_blob(d.digest):
        emit({"status": "Already exists", "progressDetail": {}, "id": short})
        return ImageLayer(diff_id, d.digest, d.media_type, d.size, _known_size(images, diff_id))
    emit({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
    if not content.has_blob(d.digest):
        with registry.blob(ref.path, d.digest) as (stream, _length):
            content.write_blob(stream, d.digest, _Progress(emit, short, "Downloading", d.size))
        placed.append(d.digest)
        emit({"status": "Verifying Checksum", "progressDetail": {}, "id": short})
        emit({"status": "Download complete", "progressDetail": {}, "id": short})
    size = _extract(images, d.digest, diff_id, _Progress(emit, short, "Extracting", d.size), placed)
    emit({"status": "Pull complete", "progressDetail": {}, "id": short})
    return ImageLayer(diff_id, d.digest, d.media_type, d.size, size)


def _known_size(images: Images, diff_id: str) -> int:
    for image in images.store.images():
        for layer in image.layers:
            if layer.diff_id == diff_id:
                return layer.size
    from dockyard.engine.images import _tree_size

    return _tree_size(images.content.layer_path(diff_id))


def _extract(
    images: Images, blob: str, diff_id: str, progress: Callable[[int], None], placed: list[str]
) -> int:
    """Extract blob into the layer `diff_id` (once); the bytes of its files."""
    content = images.content
    if content.has_layer(diff_id):
        return _known_size(images, diff_id)
    with content.temp_dir("layer") as tmp, content.open_blob(blob) as f:
        target = tmp / "layer"
        target.mkdir()
        result = extract(f, target, progress=progress)
        if result.diff_id != diff_id:
            raise DigestMismatch(
                f"layer {blob} unpacks to {result.diff_id}, not the diff id {diff_id} its config "
                "names: refused"
            )
        if content.place_layer(target, diff_id):
            placed.append(diff_id)
    return result.size


def error_message(e: BaseException) -> str:
    if isinstance(e, DockyardError):
        return e.message
    return f"internal error: {e!r} (see the daemon's log)"
