"""Images' records: a database of before images gets the tables; rm refuses an image a container uses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dockyard.engine.images import Images
from dockyard.errors import Conflict
from dockyard.model import Container, ContainerConfig, Image, ImageLayer
from dockyard.settings import DaemonSettings
from dockyard.store import Store, config_to_json


def _image(n: int) -> Image:
    layer = ImageLayer(
        "sha256:" + f"{n}" * 64, "sha256:" + f"{n + 1}" * 64, "application/vnd.oci.image.layer.v1.tar", 10, 7
    )
    config = b'{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:' + f"{n}".encode() * 64 + b'"]}}'
    import hashlib

    return Image("sha256:" + hashlib.sha256(config).hexdigest(), config, b"{}", "m", (layer,))


def test_a_database_from_before_images_gets_their_tables(tmp_path: Path) -> None:
    db = tmp_path / "dockyard.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("PRAGMA user_version=1")
    store = Store(db)
    image = _image(1)
    assert store.add_image(image) and not store.add_image(image)
    assert store.find_image(image.id).layers == image.layers  # type: ignore[union-attr]
    store.close()


def test_rm_refuses_an_image_a_container_names(tmp_path: Path) -> None:
    store = Store(tmp_path / "dockyard.db")
    images = Images(DaemonSettings(root=tmp_path), store, machine="x86_64")
    image = _image(2)
    store.add_image(image)
    images.add_names(image.id, ["busybox:latest"])
    # The hook: a container made from an image records its id under `image` in its config.
    config = ContainerConfig(cmd=("sh",), image="busybox", image_id=image.id)
    assert f'"image": "{image.id}"' in config_to_json(config)
    store.add_container(Container(id="c" * 64, name="user", config=config))
    assert images.users(image) == [("user", False)]
    with pytest.raises(Conflict, match="used by stopped container user"):
        images.remove(image.id)
    # By name: untagged, kept for the container (Docker's way); forced by id: removed.
    assert images.remove("busybox") == [{"Untagged": "busybox:latest"}]
    assert store.find_image(image.id) is not None
    assert images.remove(image.id, force=True) == [{"Deleted": image.id}]
    assert images.prune(None) == ([], 0)
    store.close()
