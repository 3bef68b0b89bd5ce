"""Manifests, indexes and image configs (Docker's and OCI's): their media types, shapes and checks.

Pure: bytes in, typed values out, with InvalidArgument naming what is
wrong. What a registry or an archive hands over is checked here before
anything is stored: a digest is sha256 and well formed, a layer's media
type is one dockyard can extract, a config's diff ids match its layers.
An index (or Docker's manifest list) is resolved to one platform's
manifest by Docker's rule: same OS and architecture, the variant matching
when both give one, the best variant for the host otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dockyard import digests
from dockyard.errors import InvalidArgument
from dockyard.model import ImageConfig
from dockyard.policy.references import DIGEST_RE

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDIST = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)

MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
# What a registry is asked for, most wanted first.
ACCEPT = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
LAYER_TYPES = (DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD)
CONFIG_TYPES = (DOCKER_CONFIG, OCI_CONFIG)
# A manifest, index or config larger than this is refused before it is parsed.
DOCUMENT_MAX = 4 * 1024 * 1024

# Go's names, as images and registries give them.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def host_platform(machine: str) -> Platform:
    """The platform of a host whose `uname -m` is `machine`."""
    arch = GOARCH.get(machine, machine)
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine, "")
    return Platform("linux", arch, variant)


def parse_platform(text: str, host: Platform) -> Platform:
    """`--platform`: os[/arch[/variant]]; the host's where not given."""
    parts = text.strip().lower().split("/")
    if not text.strip() or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: give os[/architecture[/variant]]")
    if parts[0] != "linux":
        raise InvalidArgument(f"platform {text!r} is not supported: dockyard runs linux images only")
    arch = GOARCH.get(parts[1], parts[1]) if len(parts) > 1 else host.architecture
    variant = parts[2] if len(parts) > 2 else (host.variant if arch == host.architecture else "")
    return Platform(parts[0], arch, variant)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


def _json(raw: bytes, what: str) -> dict[str, Any]:
    if len(raw) > DOCUMENT_MAX:
        raise InvalidArgument(f"{what} is too large ({len(raw)} bytes)")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    return doc


def _descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{what} is not a descriptor")
    media_type = raw.get("mediaType", "")
    digest = raw.get("digest")
    size = raw.get("size")
    if not isinstance(media_type, str):
        raise InvalidArgument(f"{what}: mediaType must be a string")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidArgument(f"{what}: digest {digest!r} is not sha256: and 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{what}: size must be a whole number of bytes")
    platform = None
    p = raw.get("platform")
    if isinstance(p, dict):
        platform = Platform(str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", "")))
    notes = raw.get("annotations") or {}
    annotations = tuple(sorted((str(k), str(v)) for k, v in notes.items())) if isinstance(notes, dict) else ()
    urls = raw.get("urls") or ()
    return Descriptor(
        media_type, digest, size, platform, annotations, tuple(str(u) for u in urls if isinstance(u, str))
    )


def media_type_of(raw: bytes, fallback: str = "") -> str:
    """The document's own mediaType; an OCI document may leave it out (then by its fields)."""
    doc = _json(raw, "the manifest")
    media_type = doc.get("mediaType") or fallback
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if not isinstance(media_type, str):
        raise InvalidArgument("the manifest's mediaType must be a string")
    return media_type


def parse_manifest(raw: bytes, media_type: str = "") -> Manifest:
    doc = _json(raw, "the image manifest")
    media_type = doc.get("mediaType") or media_type or OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise InvalidArgument(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise InvalidArgument("unsupported manifest: only schema version 2 (Docker v2, OCI) is read")
    config = _descriptor(doc.get("config"), "the manifest's config")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise InvalidArgument(f"not a container image: its config is {config.media_type!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidArgument("the manifest's layers must be a list")
    layers = tuple(_descriptor(item, f"layer {i}") for i, item in enumerate(raw_layers))
    for layer in layers:
        if layer.media_type in OCI_NONDIST or layer.media_type == DOCKER_FOREIGN_GZIP or layer.urls:
            raise InvalidArgument(
                f"layer {layer.digest} is a foreign (non-distributable) layer, which dockyard does not fetch"
            )
        if layer.media_type not in LAYER_TYPES:
            raise InvalidArgument(f"unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, config, layers)


def parse_index(raw: bytes, media_type: str = "") -> Index:
    doc = _json(raw, "the image index")
    media_type = doc.get("mediaType") or media_type or OCI_INDEX
    if media_type not in INDEX_TYPES:
        raise InvalidArgument(f"unsupported index media type {media_type!r}")
    items = doc.get("manifests")
    if not isinstance(items, list):
        raise InvalidArgument("the index's manifests must be a list")
    return Index(media_type, tuple(_descriptor(item, f"manifest {i}") for i, item in enumerate(items)))


def _variant_rank(host: Platform, variant: str) -> int | None:
    """How well a candidate's variant suits the wanted one: 0 best; None when it does not."""
    if variant == host.variant or not variant or not host.variant:
        return 0 if variant == host.variant else 1
    # arm64 v8 runs only v8; arm v7 runs v7, v6 and v5 (Docker's platform matcher).
    order = ["v8", "v7", "v6", "v5"]
    if host.architecture == "arm" and variant in order and host.variant in order:
        distance = order.index(variant) - order.index(host.variant)
        return distance if distance > 0 else None
    return None


def choose(index: Index, wanted: Platform) -> Descriptor:
    """The manifest of `wanted`'s platform; InvalidArgument naming the platforms there are."""
    best: tuple[int, int, Descriptor] | None = None
    for position, d in enumerate(index.manifests):
        if d.media_type and d.media_type not in MANIFEST_TYPES:
            continue  # attestations, nested indexes
        p = d.platform
        if p is None or p.os != wanted.os or p.architecture != wanted.architecture:
            continue
        rank = _variant_rank(wanted, p.variant)
        if rank is None:
            continue
        if best is None or (rank, position) < best[:2]:
            best = (rank, position, d)
    if best is None:
        offered = sorted({str(d.platform) for d in index.manifests if d.platform and d.platform.os})
        raise InvalidArgument(
            f"no matching manifest for {wanted} in the manifest list entries"
            + (f" (it has {', '.join(offered)})" if offered else "")
        )
    return best[2]


# -- image configs --------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass(frozen=True)
class ConfigView:
    """What dockyard reads from an image's config JSON."""

    doc: dict[str, Any]
    diff_ids: tuple[str, ...]
    runtime: ImageConfig
    created: str
    architecture: str
    os: str
    variant: str
    history: tuple[HistoryEntry, ...]


def _strs(raw: Any, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InvalidArgument(f"the image config's {what} must be a list of strings")
    return tuple(raw)


def _keys(raw: Any, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidArgument(f"the image config's {what} must be an object")
    return tuple(sorted(str(k) for k in raw))


def _str(raw: Any, what: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidArgument(f"the image config's {what} must be a string")
    return raw


def runtime_config(c: Any) -> ImageConfig:
    c = c if isinstance(c, dict) else {}
    labels = c.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("the image config's Labels must be an object")
    return ImageConfig(
        cmd=_strs(c.get("Cmd"), "Cmd"),
        entrypoint=_strs(c.get("Entrypoint"), "Entrypoint"),
        env=_strs(c.get("Env"), "Env"),
        workdir=_str(c.get("WorkingDir"), "WorkingDir"),
        user=_str(c.get("User"), "User"),
        stop_signal=_str(c.get("StopSignal"), "StopSignal"),
        exposed_ports=_keys(c.get("ExposedPorts"), "ExposedPorts"),
        volumes=_keys(c.get("Volumes"), "Volumes"),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
    )


def parse_config(raw: bytes) -> ConfigView:
    doc = _json(raw, "the image config")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument('the image config has no rootfs of type "layers"')
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids):
        raise InvalidArgument("the image config's diff_ids must be sha256 digests")
    history = []
    for item in doc.get("history") or []:
        if isinstance(item, dict):
            history.append(
                HistoryEntry(
                    str(item.get("created") or ""),
                    str(item.get("created_by") or ""),
                    str(item.get("comment") or ""),
                    bool(item.get("empty_layer")),
                )
            )
    os_name = _str(doc.get("os"), "os") or "linux"
    return ConfigView(
        doc=doc,
        diff_ids=tuple(diff_ids),
        runtime=runtime_config(doc.get("config")),
        created=_str(doc.get("created"), "created"),
        architecture=_str(doc.get("architecture"), "architecture"),
        os=os_name,
        variant=_str(doc.get("variant"), "variant"),
        history=tuple(history),
    )


def check_layers(view: ConfigView, manifest: Manifest) -> None:
    if len(view.diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"the image config names {len(view.diff_ids)} layers and the manifest "
            f"{len(manifest.layers)}: the image is inconsistent"
        )


def sha256(data: bytes) -> str:
    h = digests.content_sha256()
    h.update(data)
    return "sha256:" + h.hexdigest()


def canonical(doc: Any) -> bytes:
    """A document dockyard writes (a manifest for a loaded or imported image): stable bytes."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def make_manifest(config_digest: str, config_size: int, layers: list[tuple[str, str, int]]) -> bytes:
    """An OCI manifest for a config and (media type, digest, size) layers, bottom first."""
    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": m, "digest": d, "size": s} for m, d, s in layers],
        }
    )
