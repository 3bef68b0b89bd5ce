"""What a container of an image runs with: the request's fields over the image's, as Docker merges them.

Pure logic. Docker's rules (moby daemon/create.go, merge in
daemon/commit.go): an entrypoint given replaces the image's and drops the
image's command unless a command is given too; a command given replaces the
image's; the environment is the image's with the request's variables over
it, by name; the working directory, the user and the stop signal are the
request's when given; -P publishes the image's exposed ports as well as the request's.
"""

from __future__ import annotations

from dataclasses import replace

from dockyard.errors import InvalidArgument
from dockyard.model import ContainerConfig, ImageConfig, ImageRun
from dockyard.policy import ports


def command(image: ImageConfig, run: ImageRun) -> tuple[str, ...]:
    entrypoint = run.entrypoint if run.entrypoint is not None else image.entrypoint
    if run.cmd:
        cmd = run.cmd
    elif run.entrypoint is not None:
        cmd = ()
    else:
        cmd = image.cmd
    return (*entrypoint, *cmd)


def environment(image: tuple[str, ...], given: tuple[str, ...]) -> tuple[str, ...]:
    names = {item.partition("=")[0] for item in given}
    return (*(item for item in image if item.partition("=")[0] not in names), *given)


def container_config(
    cfg: ContainerConfig, image: ImageConfig, image_id: str, run: ImageRun
) -> ContainerConfig:
    argv = command(image, run)
    if not argv:
        raise InvalidArgument(f"no command specified: image {run.name} has no default command")
    requests = cfg.ports
    if run.publish_all:
        exposed = [p for spec in image.exposed_ports for p in ports.parse_expose(spec)]
        requests = ports.publish_all(requests, exposed)
    return replace(
        cfg,
        cmd=argv,
        env=environment(image.env, cfg.env),
        workdir=cfg.workdir or image.workdir,
        user=cfg.user or image.user,
        stop_signal=cfg.stop_signal or image.stop_signal,
        ports=requests,
        image=run.name,
        image_id=image_id,
    )
