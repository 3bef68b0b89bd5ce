"""What start does for issue 13's fields: further networks, sysctls, bind mounts, extra hosts.

Called from container_run.py: `check` at create (bad input changes
nothing), the rest at start, each kernel step pushing its undo. Also the
networks of a container that is not running (network connect and
disconnect of a created or stopped container change its config; they take
effect at its next start, as Docker's do).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dockyard.engine.steps import Undo
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.kernel import sysctl
from dockyard.model import (
    Container,
    ContainerConfig,
    Endpoint,
    EndpointOwner,
    EndpointRequest,
    ModeKind,
    Network,
)

# A bind target there would be covered by the container's own /proc, /sys or /dev.
RUNTIME_TARGETS = ("/proc", "/sys")


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def check_start(c: Container) -> None:
    """What start refuses of a container that left its first network while it was not running."""
    if c.config.network_left and c.config.ports:
        raise InvalidArgument(
            f"container {c.name} publishes its ports on {c.config.network_mode.network_name}, which it "
            "left: connect it to that network again"
        )


def check(engine: Any, config: ContainerConfig) -> None:
    """Refusals of the fields before the container is recorded."""
    root = str(engine.paths.root)
    for m in config.mounts:
        if not Path(m.source).exists():
            raise InvalidArgument(f"invalid mount config: bind source path does not exist: {m.source}")
        if _under(m.source, root) or _under(root, m.source):
            raise InvalidArgument(
                f"invalid mount config: {m.source} holds dockyard's state ({root}); "
                "a container may not reach it"
            )
        if any(_under(m.target, t) for t in RUNTIME_TARGETS):
            raise InvalidArgument(f"invalid mount config: {m.target} is the container's own {m.target[:5]}")
    names = [r.network for r in config.networks]
    first = config.network_mode.network_name
    for name in names:
        if names.count(name) > 1 or name == first:
            raise InvalidArgument(f"container cannot be connected to network {name} twice")
        if name in ("host", "none"):
            raise InvalidArgument(f"container cannot be connected to the {name} network and another")
        n = engine.store.find_network(name)
        if n is not None:
            engine.endpoints.check_request(n, None, False)


def with_image_id(engine: Any, config: ContainerConfig) -> ContainerConfig:
    """The id of the image the config names, when the store has it: its users are known."""
    if not config.image:
        return config
    try:
        return replace(config, image_id=engine.images.get(config.image).id)
    except (NotFound, InvalidArgument):  # not pulled: a name only, until containers run images
        return config


def plug_further(engine: Any, c: Container, pin: Path, has_default_route: bool, undo: Undo) -> list[Endpoint]:
    """Record and plug the further networks of c's config as eth1, eth2, ..."""
    out = []
    for i, req in enumerate(c.config.networks, start=1):
        network = engine.store.get_network(req.network)
        engine.endpoints.check_request(network, req.ip, False, req.ip6)
        ifname = f"eth{i}"
        endpoint, _ = engine.endpoints.record(
            EndpointOwner.container(c.id),
            network,
            ifname,
            req.ip,
            (),
            req.aliases,
            req.mac,
            requested_ip6=req.ip6,
            plugging=True,
        )
        route = not has_default_route and not network.internal
        engine.endpoints.plug(network, endpoint, (), pin, undo, route)
        has_default_route = has_default_route or route
        out.append(endpoint)
    return out


def apply_sysctls(c: Container, pin: Path) -> None:
    """--sysctl net.*: written in the container's network namespace before its process starts."""
    if c.config.sysctls:
        sysctl.write_in_netns(pin, c.config.sysctls)


def extra_host_lines(engine: Any, c: Container) -> list[tuple[str, str]]:
    """--add-host entries as (address, name); host-gateway is the default bridge's gateway."""
    out = []
    for name, address in c.config.extra_hosts:
        if address == "host-gateway":
            bridge = engine.store.network_named("bridge")
            if bridge is None or bridge.gateway is None:
                raise InvalidArgument("--add-host host-gateway: the default bridge has no gateway")
            address = str(bridge.gateway)
        out.append((address, name))
    return out


# -- networks of a container not running ------------------------------------


def connect_later(engine: Any, c: Container, network: Network, req: EndpointRequest) -> None:
    """network connect of a created or stopped container: joined at its next start."""
    mode = c.config.network_mode
    if mode.kind in (ModeKind.HOST, ModeKind.NONE, ModeKind.CONTAINER):
        raise InvalidArgument(
            f"container {c.name} uses the {mode} network mode and cannot be connected to other networks"
        )
    if network.builtin:
        raise InvalidArgument(f"containers cannot be connected to the pre-defined network {network.name}")
    first = network.name == mode.network_name
    if (first and not c.config.network_left) or any(r.network == network.name for r in c.config.networks):
        raise Conflict(f"container {c.name} is already connected to network {network.name}")
    engine.endpoints.check_request(network, req.ip, False, req.ip6)
    if first:  # back on the first network it left, with what this connect asks
        config = replace(
            c.config, network_left=False, aliases=req.aliases, ip=req.ip, ip6=req.ip6, mac=req.mac
        )
        engine.store.update_config(c.id, config)
        return
    engine.store.update_config(c.id, replace(c.config, networks=(*c.config.networks, req)))


def disconnect_later(engine: Any, c: Container, network: Network) -> None:
    """network disconnect of a created or stopped container: it will not join at start."""
    kept = tuple(r for r in c.config.networks if r.network not in (network.name, network.id))
    if len(kept) != len(c.config.networks):
        engine.store.update_config(c.id, replace(c.config, networks=kept))
        return
    if c.config.network_mode.network_name == network.name and not c.config.network_left:
        engine.store.update_config(c.id, replace(c.config, network_left=True, aliases=(), ip=None, mac=""))
        return
    raise NotFound(f"container {c.name} is not connected to network {network.name}")
