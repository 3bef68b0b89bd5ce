"""Images' use cases: the store's records and images/'s files, kept in step.

This package owns what an image is to the rest of dockyard: finding one by
any name Docker takes (`busybox`, `busybox:1`, `localhost:5000/x@sha256:..`,
an id or a prefix of one), listing, tagging, removing, pruning, history,
and gc of the files no record keeps. Pull, load, import and save are in
pull.py and archive.py; they share this service's bookkeeping.

For containers on images (the next step), `Images.get(ref)` gives the
image, `runtime_config(image)` its Cmd, Entrypoint, Env, WorkingDir, User,
StopSignal and ExposedPorts, and `layer_dirs(image)` its extracted layers,
top first, ready to be an overlay's lowerdirs. A container made from an
image records the image's id under `image` in its config: that is what
`users` (and so rm's refusal) reads.

Files and records: a blob or layer directory is written whole under tmp/
and renamed into place before the record that keeps it is written; what a
failure or a crash leaves without a record goes with gc. An operation
marks the digests it is writing (`_writing`), so that a gc, rm or prune
running meanwhile keeps them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.images.content import ContentStore
from dockyard.model import ContainerState, Image, ImageConfig
from dockyard.policy import manifests, references
from dockyard.policy.image_filters import PRUNE_FILTERS, ImageFilter
from dockyard.settings import DaemonSettings
from dockyard.store import Store
from dockyard.store.images import DIGEST, TAG


@dataclass(frozen=True)
class HistoryItem:
    id: str
    created: str
    created_by: str
    tags: tuple[str, ...]
    size: int
    comment: str


def familiar(name: str) -> str:
    return references.parse(name, default_tag=False).familiar()


class Images:
    def __init__(self, settings: DaemonSettings, store: Store, machine: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.content = ContentStore(settings.root)
        self.platform = manifests.host_platform(machine or os.uname().machine)
        # Records change under this lock; downloads and extraction run outside it.
        self.lock = threading.RLock()
        self._writing: dict[str, int] = {}
        self._busy = 0

    # -- finding ------------------------------------------------------------------

    def find(self, ref: str) -> Image | None:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("an image name is empty")
        bare = ref.removeprefix("sha256:")
        if references.HEX64_RE.match(bare):
            image = self.store.find_image("sha256:" + bare)
            if image is not None or ref.startswith("sha256:"):
                return image
        try:
            parsed = references.parse(ref)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            image_id = self.store.image_of_name(
                str(parsed.with_digest(parsed.digest)) if parsed.digest else str(parsed)
            )
            if image_id is not None:
                return self.store.find_image(image_id)
        if references.is_id_like(ref) and (ref.startswith("sha256:") or "/" not in ref):
            ids = self.store.image_ids_with_prefix(bare)
            if len(ids) > 1:
                raise Conflict(f"image id prefix {ref!r} is ambiguous; give more characters")
            if ids:
                return self.store.find_image(ids[0])
        if parsed is None:
            references.parse(ref)  # raises its error
        return None

    def get(self, ref: str) -> Image:
        image = self.find(ref)
        if image is None:
            raise NotFound(f"No such image: {ref}")
        return image

    def view(self, image: Image) -> manifests.ConfigView:
        return manifests.parse_config(image.config)

    def runtime_config(self, image: Image) -> ImageConfig:
        """What a container of this image runs with, unless told otherwise."""
        return self.view(image).runtime

    def layer_dirs(self, image: Image) -> list[Path]:
        """The image's extracted layers, top first: an overlay's lowerdir, in order."""
        return [self.content.layer_path(layer.diff_id) for layer in reversed(image.layers)]

    def users(self, image: Image) -> list[tuple[str, bool]]:
        """The containers made from this image: (name, running)."""
        out = []
        for name in self.store.containers_using_image(image.id):
            c = self.store.find_container(name)
            if c is not None:
                out.append((c.name, c.state is ContainerState.RUNNING))
        return out

    def matching(self, wanted: ImageFilter) -> list[Image]:
        images = self.store.images()
        before = [self.get(r) for r in wanted.before]
        since = [self.get(r) for r in wanted.since]
        out = []
        for image in images:
            if wanted.dangling is not None and wanted.dangling != (not image.tags):
                continue
            if not wanted.matches_names(image.tags, image.digests):
                continue
            if wanted.labels and not wanted.matches_labels(self.runtime_config(image).labels):
                continue
            if any(image.added >= b.added for b in before) or any(image.added <= s.added for s in since):
                continue
            out.append(image)
        return out

    # -- names ----------------------------------------------------------------------

    def tag(self, ref: str, repo: str, tag: str) -> str:
        """`docker tag`: repo (maybe with :tag) and tag; the new name, normalized."""
        image = self.get(ref)
        target = references.tag_target(repo, tag, "refusing to create a tag with a digest reference")
        with self.lock:
            self.store.set_image_name(str(target), image.id, TAG)
        return str(target)

    def add_names(self, image_id: str, names: list[str]) -> list[str]:
        """Tag an image with normalized names; the names a removed image lost are dropped."""
        done = []
        with self.lock:
            for name in names:
                ref = references.parse(name)
                if ref.digest:
                    self.store.set_image_name(str(ref.with_digest(ref.digest)), image_id, DIGEST)
                else:
                    self.store.set_image_name(str(ref), image_id, TAG)
                done.append(str(ref))
        return done

    # -- removing ---------------------------------------------------------------------

    def _conflict(self, image: Image, force: bool, running_only: bool) -> None:
        for name, running in self.users(image):
            if running:
                raise Conflict(
                    f"conflict: unable to delete {image.short_id} (cannot be forced) - image is being "
                    f"used by running container {name}"
                )
            if not force and not running_only:
                raise Conflict(
                    f"conflict: unable to delete {image.short_id} (must be forced) - image is being "
                    f"used by stopped container {name}"
                )

    def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """`docker rmi`: Docker's answer, [{"Untagged": name} ..., {"Deleted": id} ...]."""
        with self.lock:
            image = self.get(ref)
            records: list[dict[str, str]] = []
            by_id = references.is_id_like(ref) and ref.removeprefix("sha256:") in image.id
            names = [*image.tags, *image.digests]
            if not by_id:
                parsed = references.parse(ref)
                name = str(parsed.with_digest(parsed.digest)) if parsed.digest else str(parsed)
                self.store.remove_image_name(name)
                records.append({"Untagged": familiar(name)})
                if not parsed.digest:
                    # The last tag of a repository takes the repository's digests with it.
                    repo = parsed.repository
                    if not any(references.parse(t).repository == repo for t in image.tags if t != name):
                        for d in image.digests:
                            if references.parse(d, default_tag=False).repository == repo:
                                self.store.remove_image_name(d)
                                records.append({"Untagged": familiar(d)})
                image = self.get(image.id)
                if image.tags or image.digests:
                    return records
                if self.users(image):
                    return records  # kept, untagged, for the containers that use it (Docker's way)
            else:
                repos = {references.parse(n, default_tag=False).repository for n in names}
                if (len(image.tags) > 1 or len(repos) > 1) and not force:
                    raise Conflict(
                        f"conflict: unable to delete {image.short_id} (must be forced) - image is "
                        "referenced in multiple repositories"
                    )
                self._conflict(image, force, running_only=False)
                for name in names:
                    self.store.remove_image_name(name)
                    records.append({"Untagged": familiar(name)})
            self._conflict(image, force, running_only=True)
            self.store.remove_image(image.id)
            records.append({"Deleted": image.id})
            self.drop_unused()
            return records

    def prune(self, filters: str | None) -> tuple[list[dict[str, str]], int]:
        """`docker image prune`: dangling images by default, every unused one with dangling=false."""
        wanted = ImageFilter.parse(filters, PRUNE_FILTERS)
        dangling_only = wanted.dangling is not False
        records: list[dict[str, str]] = []
        with self.lock:
            for image in self.store.images():
                if dangling_only and image.tags:
                    continue
                if wanted.labels and not wanted.matches_labels(self.runtime_config(image).labels):
                    continue
                if self.users(image):
                    continue
                for name in (*image.tags, *image.digests):
                    records.append({"Untagged": familiar(name)})
                self.store.remove_image(image.id)
                records.append({"Deleted": image.id})
            reclaimed = self.drop_unused()
        return records, reclaimed

    def history(self, ref: str) -> list[HistoryItem]:
        image = self.get(ref)
        view = self.view(image)
        entries = list(view.history) or [
            manifests.HistoryEntry(view.created, "", "", False) for _ in image.layers
        ]
        layers = list(image.layers)
        items: list[tuple[manifests.HistoryEntry, int]] = []
        for entry in entries:
            size = 0
            if not entry.empty_layer and layers:
                size = layers.pop(0).size
            items.append((entry, size))
        out = []
        for i, (entry, size) in enumerate(reversed(items)):
            out.append(
                HistoryItem(
                    image.id if i == 0 else "<missing>",
                    entry.created,
                    entry.created_by,
                    tuple(familiar(t) for t in image.tags) if i == 0 else (),
                    size,
                    entry.comment,
                )
            )
        return out

    # -- files ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, *digests: str) -> Iterator[None]:
        """Digests being written by an operation: gc, rm and prune keep them meanwhile."""
        with self.lock:
            for d in digests:
                self._writing[d] = self._writing.get(d, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                for d in digests:
                    self._writing[d] -= 1
                    if not self._writing[d]:
                        del self._writing[d]

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """An operation that may have files under tmp/: gc leaves tmp/ alone meanwhile."""
        with self.lock:
            self._busy += 1
        try:
            yield
        finally:
            with self.lock:
                self._busy -= 1

    def drop_unused(self) -> int:
        """Remove blobs and layers no image record keeps (nor an operation is writing); bytes freed."""
        freed = 0
        with self.lock:
            keep_blobs = self.store.image_blobs_in_use() | set(self._writing)
            keep_layers = self.store.image_layers_in_use() | set(self._writing)
            for digest in self.content.blobs_present() - keep_blobs:
                with contextlib.suppress(OSError):
                    freed += self.content.blob_size(digest)
                self.content.remove_blob(digest)
            for diff_id in self.content.layers_present() - keep_layers:
                freed += _tree_size(self.content.layer_path(diff_id))
                self.content.remove_layer(diff_id)
        return freed

    def gc(self) -> list[str]:
        """What a crash or failure left: partial writes, and files no record keeps."""
        removed: list[str] = []
        with self.lock:
            if not self.content.dir.exists():
                return removed
            if not self._busy:
                removed += self.content.remove_partial()
            blobs = self.content.blobs_present()
            layers = self.content.layers_present()
            self.drop_unused()
            removed += [f"image blob {d}" for d in sorted(blobs - self.content.blobs_present())]
            removed += [f"image layer {d}" for d in sorted(layers - self.content.layers_present())]
        return removed


def _tree_size(path: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total
