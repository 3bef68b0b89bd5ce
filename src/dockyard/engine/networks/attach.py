"""Connect and disconnect a running container: NetworkAttach.

This module owns the checks of a connect (a bridge-mode container, running,
not yet on that network, not a pre-defined network), the next free ethN,
the endpoint recorded and plugged under an intent (undone whole on
failure), the release of disconnect (with -f, also of an endpoint whose
container is gone, as Docker's ForceEndpointDelete), either kept in the
container's config as Docker keeps it for the next start, and the
container's resolv.conf refreshed after either.

Addresses and plugging are endpoints.py's; resolv.conf's text is
containers/env.py's.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import replace

from dockyard.engine.containers.env import ContainerFiles
from dockyard.engine.coordination import Intents
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.events import Events
from dockyard.engine.sandbox import Sandboxes
from dockyard.engine.steps import Undo, step
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import ContainerConfig, Endpoint, EndpointOwner, EndpointRequest, ModeKind, Network
from dockyard.store import Store


def _joined(config: ContainerConfig, network: Network, req: EndpointRequest) -> ContainerConfig:
    """What a live connect asked, kept in the config as Docker keeps it: joined again at each start,
    and echoed by inspect (IPAMConfig)."""
    if network.name == config.network_mode.network_name:
        return replace(config, network_left=False, aliases=req.aliases, ip=req.ip, ip6=req.ip6, mac=req.mac)
    kept = tuple(r for r in config.networks if r.network not in (network.name, network.id))
    return replace(config, networks=(*kept, req))


def _left(config: ContainerConfig, network: Network) -> ContainerConfig:
    """A live disconnect, kept: the next start does not join the network again."""
    if network.name == config.network_mode.network_name:
        return replace(config, network_left=True, aliases=(), ip=None, ip6=None, mac="")
    return replace(
        config, networks=tuple(r for r in config.networks if r.network not in (network.name, network.id))
    )


class NetworkAttach:
    """connect, disconnect."""

    def __init__(
        self,
        *,
        store: Store,
        lock: threading.RLock,
        endpoints: Endpoints,
        sandboxes: Sandboxes,
        intents: Intents,
        files: ContainerFiles,
        events: Events,
        ensure_dns: Callable[[], None],
    ) -> None:
        self.store = store
        self.lock = lock
        self.endpoints = endpoints
        self.sandboxes = sandboxes
        self.intents = intents
        self.files = files
        self.events = events
        self.ensure_dns = ensure_dns

    # -- network connect / disconnect ---------------------------------------------

    def connect(
        self,
        network_ref: str,
        container_ref: str,
        ip: ipaddress.IPv4Address | None = None,
        aliases: tuple[str, ...] = (),
        mac: str = "",
        ip6: ipaddress.IPv6Address | None = None,
    ) -> Endpoint:
        """Plug a running container into one more network: a new ethN appears."""
        network = self.store.get_network(network_ref)
        self.ensure_dns()
        with self.lock:
            c = self.store.get_container(container_ref)
            kind = c.config.network_mode.kind
            if kind in (ModeKind.HOST, ModeKind.NONE, ModeKind.CONTAINER):
                raise InvalidArgument(
                    f"container {c.name} uses the {c.config.network_mode} network mode and cannot be "
                    "connected to other networks"
                )
            if network.builtin:
                raise InvalidArgument(
                    f"containers cannot be connected to the pre-defined network {network.name}"
                )
            if not c.running:
                raise Conflict(f"container {c.name} is not running; start it before connecting it")
            self.endpoints.check_request(network, ip, False, ip6)
            current = self.store.endpoints(container_id=c.id)
            if any(ep.network_id == network.id for ep in current):
                raise Conflict(f"container {c.name} is already connected to network {network.name}")
            used = {ep.ifname for ep in self.store.endpoints(container_id=c.id, state=None)}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            undo = Undo()
            me = EndpointOwner.container(c.id)
            with self.intents.under("connect", f"{c.id}/{ifname}"):
                try:
                    undo.push(lambda: self.endpoints.drop_records(me, only_ifname=ifname), "connect.records")
                    endpoint, _ = self.endpoints.record(
                        me, network, ifname, ip, (), aliases, mac, requested_ip6=ip6, plugging=True
                    )
                    has_route = any(
                        (n := self.store.find_network(ep.network_id)) is not None and not n.internal
                        for ep in current
                    )
                    self.endpoints.plug(network, endpoint, (), self.sandboxes.pin(c.id), undo, not has_route)
                    self.store.update_config(
                        c.id, _joined(c.config, network, EndpointRequest(network.name, ip, aliases, mac, ip6))
                    )
                except BaseException as e:
                    undo.rollback(e, f"connect of container {c.name} to network {network.name}")
                    raise
                step("connect.done")
            self.files.refresh_resolv_conf(c)
            self.events.network("connect", network, c.id)
        return endpoint

    def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        network = self.store.get_network(network_ref)
        with self.lock:
            if force and self.store.find_container(container_ref) is None:
                self._delete_left_behind(network, container_ref)
                return
            c = self.store.get_container(container_ref)
            found = [ep for ep in self.store.endpoints(container_id=c.id) if ep.network_id == network.id]
            if not found:
                # Even with -f, as Docker: force is for a container gone, not for a non-member.
                raise NotFound(f"container {c.name} is not connected to network {network.name}")
            step("disconnect.begin")
            # Off the network when the command returns: the veth goes now, not by the reaper.
            self.endpoints.release(EndpointOwner.container(c.id), only=found[0], now=True)
            self.store.update_config(c.id, _left(c.config, network))
            self.files.refresh_resolv_conf(c)
            step("disconnect.done")
            self.events.network("disconnect", network, c.id)

    def _delete_left_behind(self, network: Network, container_ref: str) -> None:
        """disconnect -f of a container that is gone (Docker's ForceEndpointDelete): its endpoint
        on the network, left behind, released; none there is Docker's error, not found."""
        found = [
            ep
            for ep in self.store.endpoints(network_id=network.id)
            if ep.owner.container_id is not None
            and ep.owner.key.startswith(container_ref)
            and self.store.find_container(ep.owner.key) is None
        ]
        if len({ep.owner.key for ep in found}) != 1:
            # A name cannot be matched once its container is gone; an id prefix must be unique.
            raise NotFound(
                f"no such container: {container_ref}, and no endpoint of it on network {network.name}"
            )
        self.endpoints.release(found[0].owner, only=found[0], now=True)
        self.events.network("disconnect", network, found[0].owner.key)
