"""A create request over an image's config, merged as Docker merges them."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.model import ContainerConfig, ImageConfig, ImageRun, PortRequest, Protocol
from dockyard.policy import image_defaults

IMAGE = ImageConfig(
    cmd=("nginx", "-g", "daemon off;"),
    entrypoint=("/docker-entrypoint.sh",),
    env=("PATH=/usr/bin:/bin", "NGINX_VERSION=1.25"),
    workdir="/srv",
    user="www",
    stop_signal="SIGQUIT",
    exposed_ports=("80/tcp", "443/tcp"),
)


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "argv"),
    [
        (None, None, ("/docker-entrypoint.sh", "nginx", "-g", "daemon off;")),
        (None, ("sh",), ("/docker-entrypoint.sh", "sh")),
        (("echo",), None, ("echo",)),  # an entrypoint given drops the image's command
        (("echo",), ("hi",), ("echo", "hi")),
        ((), ("sh",), ("sh",)),  # --entrypoint "" clears it
    ],
)
def test_command(
    entrypoint: tuple[str, ...] | None, cmd: tuple[str, ...] | None, argv: tuple[str, ...]
) -> None:
    assert image_defaults.command(IMAGE, ImageRun("nginx", entrypoint, cmd)) == argv


def test_the_requests_fields_win_and_the_images_fill_in() -> None:
    cfg = ContainerConfig(
        cmd=(), env=("NGINX_VERSION=mine", "A=1"), ports=(PortRequest(80, Protocol.TCP, 8080),)
    )
    out = image_defaults.container_config(
        cfg, IMAGE, "sha256:" + "a" * 64, ImageRun("nginx", publish_all=True)
    )
    assert out.env == ("PATH=/usr/bin:/bin", "NGINX_VERSION=mine", "A=1")
    assert (out.workdir, out.user, out.image, out.image_id) == ("/srv", "www", "nginx", "sha256:" + "a" * 64)
    assert out.stop_signal == "SIGQUIT"
    # -P: the image's exposed ports too, the one -p publishes kept as asked.
    assert [(p.container_port, p.host_port) for p in out.ports] == [(80, 8080), (443, 0)]
    given = image_defaults.container_config(
        ContainerConfig(cmd=(), workdir="/tmp", user="0"), IMAGE, "sha256:" + "a" * 64, ImageRun("nginx")
    )
    assert (given.workdir, given.user, given.ports) == ("/tmp", "0", ())


def test_no_command_at_all_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        image_defaults.container_config(
            ContainerConfig(cmd=()), ImageConfig(), "sha256:" + "b" * 64, ImageRun("x")
        )
