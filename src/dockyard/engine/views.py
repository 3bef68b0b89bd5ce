"""What ps, inspect and network ls show, read from the records: Views.

The API formats; this module gathers what it formats: a container's
endpoints with their networks, its published ports, its sandbox key (the
pin of the namespace it lives in: its own, its target's in container: mode,
none in host mode), the host or none network Docker lists it under, and a
network's members (running containers, then CNI attachments). Nothing here
changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.cni.attachments import Attachment, Attachments
from dockyard.engine.networks.service import NetworkFilter, Networks
from dockyard.model import Container, DriverName, Endpoint, ModeKind, Network, PortBinding
from dockyard.settings import Paths
from dockyard.store import Store

EndpointView = list[tuple[Endpoint, Network]]
Member = tuple[Container | Attachment, Endpoint]


@dataclass(frozen=True)
class ContainerView:
    """One container as inspect shows it."""

    container: Container
    endpoints: EndpointView
    ports: list[PortBinding]
    # The pin of the network namespace it runs in; "" when not running or in host mode.
    sandbox_key: str
    # container: mode: the target's endpoints, which are this container's view of the network.
    shared: EndpointView | None
    # The container's log file (the shim writes it whether or not a client is attached).
    log_path: str
    mode_network: Network | None


class Views:
    def __init__(self, store: Store, paths: Paths, networks: Networks, attachments: Attachments) -> None:
        self.store = store
        self.paths = paths
        self.networks = networks
        self.attachments = attachments

    # -- containers ----------------------------------------------------------

    def containers(self, running_only: bool = False) -> list[Container]:
        return [c for c in self.store.containers() if c.running or not running_only]

    def endpoints(self, c: Container) -> EndpointView:
        out = []
        for ep in self.store.endpoints(container_id=c.id):
            n = self.store.find_network(ep.network_id)
            if n is not None:
                out.append((ep, n))
        return out

    def ports(self, c: Container) -> list[PortBinding]:
        return [b for _, b in self.store.ports(c.id)]

    def network_named(self, name: str) -> Network | None:
        return self.store.find_network(name)

    def restart_count(self, c: Container) -> int:
        """How often its restart policy has started it again (inspect's RestartCount)."""
        return self.store.restart_state(c.id)[0]

    def mode_network(self, c: Container) -> Network | None:
        """The host or none network of a container in that mode (Docker lists it there)."""
        name = {ModeKind.HOST: "host", ModeKind.NONE: "none"}.get(c.config.network_mode.kind)
        return self.store.network_named(name) if name else None

    def sandbox(self, c: Container) -> tuple[str, EndpointView | None]:
        """(sandbox key, the target's endpoints in container: mode)."""
        if not c.running or c.config.network_mode.kind is ModeKind.HOST:
            return "", None
        owner = c.netns_owner or c.id
        shared = None
        if c.netns_owner:
            target = self.store.find_container(c.netns_owner)
            shared = self.endpoints(target) if target else []
            if target is None or target.config.network_mode.kind is ModeKind.HOST:
                owner = ""
        return (str(self.paths.sandbox_pin(owner)) if owner else ""), shared

    def log_path(self, c: Container) -> Path:
        return self.paths.container_log(c.id)

    def inspect(self, c: Container) -> ContainerView:
        sandbox_key, shared = self.sandbox(c)
        return ContainerView(
            container=c,
            endpoints=self.endpoints(c),
            ports=self.ports(c),
            sandbox_key=sandbox_key,
            shared=shared,
            log_path=str(self.log_path(c)),
            mode_network=self.mode_network(c),
        )

    # -- networks ------------------------------------------------------------

    def networks_matching(self, wanted: NetworkFilter | None = None) -> list[Network]:
        return self.networks.matching(wanted)

    def members(self, n: Network) -> list[Member]:
        """A network's users: its running containers, then its CNI attachments."""
        out: list[Member] = []
        for ep in self.store.endpoints(network_id=n.id):
            cid = ep.owner.container_id
            c = self.store.find_container(cid) if cid is not None else None
            if c is not None and c.running:
                out.append((c, ep))
        out += self.attachments.members(n)
        return out

    def mode_members(self, n: Network) -> tuple[Container, ...]:
        """The running containers in host or none mode, for the host or none network."""
        kind = {DriverName.HOST: ModeKind.HOST, DriverName.NONE: ModeKind.NONE}.get(n.driver)
        if kind is None:
            return ()
        return tuple(c for c in self.store.containers() if c.running and c.config.network_mode.kind is kind)
