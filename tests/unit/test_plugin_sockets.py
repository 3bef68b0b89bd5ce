"""Where dockyardd serves its Docker plugins: Docker names a plugin by its socket's file name."""

from __future__ import annotations

from pathlib import Path

from dockyard.daemon.plugin import overlay_socket


def test_the_overlay_driver_s_socket_is_beside_the_plugin_s_and_names_dockyard_overlay() -> None:
    assert overlay_socket(Path("/run/docker/plugins/dockyard.sock")) == Path(
        "/run/docker/plugins/dockyard-overlay.sock"
    )
    # daemon.json's docker-plugin-socket names another: the overlay's is named after it.
    assert overlay_socket(Path("/srv/plugins/dy.sock")) == Path("/srv/plugins/dy-overlay.sock")
