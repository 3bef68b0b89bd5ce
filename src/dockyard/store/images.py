"""Images' records: the image (config and manifest, byte for byte), its layers, its names.

The files (blobs, extracted layers) are engine/images' and images/'s; a row
here is what keeps them. Names are stored normalized
(`docker.io/library/busybox:latest`, `...@sha256:...`), one image each.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from dockyard.model import Image, ImageLayer
from dockyard.store.database import Database, now

TAG = "tag"
DIGEST = "digest"


class ImageRecords(Database):
    _IMG_COLS = "id, config, manifest, manifest_media_type, added, last_tagged"

    def _image(self, row: sqlite3.Row | tuple[Any, ...]) -> Image:
        layers = tuple(
            ImageLayer(r[0], r[1], r[2], int(r[3]), int(r[4]))
            for r in self._q(
                "SELECT diff_id, blob_digest, media_type, blob_size, size FROM image_layers"
                " WHERE image_id=? ORDER BY position",
                (row[0],),
            )
        )
        names = self._q("SELECT name, kind FROM image_names WHERE image_id=? ORDER BY added, name", (row[0],))
        return Image(
            id=row[0],
            config=bytes(row[1]),
            manifest=bytes(row[2]),
            manifest_media_type=row[3],
            layers=layers,
            added=row[4],
            tags=tuple(n for n, kind in names if kind == TAG),
            digests=tuple(n for n, kind in names if kind == DIGEST),
            last_tagged=row[5],
        )

    def add_image(self, image: Image) -> bool:
        """Record an image and its layers; False when one of that id is recorded already (kept)."""
        with self.transaction():
            if self._q("SELECT 1 FROM images WHERE id=?", (image.id,)):
                return False
            self._q(
                f"INSERT INTO images({self._IMG_COLS}) VALUES(?,?,?,?,?,?)",
                (image.id, image.config, image.manifest, image.manifest_media_type, image.added or now(), ""),
            )
            for position, layer in enumerate(image.layers):
                self._q(
                    "INSERT INTO image_layers(image_id, position, diff_id, blob_digest, media_type,"
                    " blob_size, size) VALUES(?,?,?,?,?,?,?)",
                    (
                        image.id,
                        position,
                        layer.diff_id,
                        layer.blob_digest,
                        layer.media_type,
                        layer.blob_size,
                        layer.size,
                    ),
                )
            return True

    def find_image(self, image_id: str) -> Image | None:
        rows = self._q(f"SELECT {self._IMG_COLS} FROM images WHERE id=?", (image_id,))
        return self._image(rows[0]) if rows else None

    def images(self) -> list[Image]:
        return [self._image(r) for r in self._q(f"SELECT {self._IMG_COLS} FROM images ORDER BY added DESC")]

    def image_ids_with_prefix(self, hex_prefix: str) -> list[str]:
        """Ids starting sha256:<hex_prefix> (the prefix is hex, checked by the caller)."""
        return [r[0] for r in self._q("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hex_prefix}%",))]

    def image_of_name(self, name: str) -> str | None:
        rows = self._q("SELECT image_id FROM image_names WHERE name=?", (name,))
        return rows[0][0] if rows else None

    def set_image_name(self, name: str, image_id: str, kind: str) -> str | None:
        """Point `name` at an image; the image it named before, if another."""
        with self.transaction():
            before = self.image_of_name(name)
            self._q(
                "INSERT INTO image_names(name, image_id, kind, added) VALUES(?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id, added=excluded.added",
                (name, image_id, kind, now()),
            )
            if kind == TAG:
                self._q("UPDATE images SET last_tagged=? WHERE id=?", (now(), image_id))
            return before if before != image_id else None

    def remove_image_name(self, name: str) -> None:
        self._q("DELETE FROM image_names WHERE name=?", (name,))

    def remove_image(self, image_id: str) -> None:
        with self.transaction():
            self._q("DELETE FROM image_names WHERE image_id=?", (image_id,))
            self._q("DELETE FROM image_layers WHERE image_id=?", (image_id,))
            self._q("DELETE FROM images WHERE id=?", (image_id,))

    def image_blobs_in_use(self) -> set[str]:
        return {r[0] for r in self._q("SELECT DISTINCT blob_digest FROM image_layers")}

    def image_layers_in_use(self) -> set[str]:
        return {r[0] for r in self._q("SELECT DISTINCT diff_id FROM image_layers")}

    def containers_using_image(self, image_id: str) -> list[str]:
        """Names of the containers whose config names this image (its `image` key, by id).

        The hook for containers on images: a container made from an image
        records the image's id under `image` in its config; until then no
        config has the key and no image is in use.
        """
        rows = self._q(
            "SELECT name FROM containers WHERE json_extract(config, '$.image') = ? ORDER BY created",
            (image_id,),
        )
        return [r[0] for r in rows]
