"""Network create, rm and prune as use cases: NetworkChanges.

This module owns running networks/service.py's create, remove, prune and
the default bridge's configuration under the engine's lock, then keeping
the resolver (started while user networks exist, again if it died) and the
bridges' forwarding firewall in step with the networks.

The networks' own logic (names, subnets, drivers' bridges) is
networks/service.py's; the resolver process is the daemon's (DnsSync is
what the engine needs of it); the forwarding firewall is the drivers'
(drivers.ForwardFirewall).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Protocol

from dockyard.drivers import ForwardFirewall
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.networks.service import Networks, NetworkSpec
from dockyard.model import Network
from dockyard.policy.container_filters import PruneFilter
from dockyard.store import Store


class DnsSync(Protocol):
    def sync(self, needed: bool) -> None: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...


class NetworkChanges:
    """Network use cases, and what follows a change of the networks."""

    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        networks: Networks,
        endpoints: Endpoints,
        forward: ForwardFirewall,
    ) -> None:
        self.store = store
        self.lock = lock
        self.networks = networks
        self.endpoints = endpoints
        self.forward = forward
        # The resolver process of user networks, when the daemon runs one (set after start-up).
        self.dns: DnsSync | None = None

    def networks_changed(self) -> list[str]:
        """Keep the resolver and the neighbours' firewall in step with the networks."""
        if self.dns is not None:
            self.dns.sync(bool(self.networks.user_networks()))
        return self.sync_forward()

    def ensure_dns(self) -> None:
        """Start the resolver again if user networks need it and it died (cheap otherwise)."""
        if self.dns is not None and not self.dns.running() and self.networks.user_networks():
            self.dns.sync(True)

    def sync_forward(self) -> list[str]:
        bridges = {n.bridge for n in self.store.networks() if n.bridged and n.bridge}
        return self.forward.sync_forward(bridges)

    # -- networks ------------------------------------------------------------------

    def create(self, spec: NetworkSpec) -> Network:
        with self.lock:
            network = self.networks.create(spec)
        self.networks_changed()
        return network

    def remove(self, ref: str) -> Network:
        with self.lock:
            # The veths of containers that just ended go first: `rm -f web;
            # network rm n1` leaves no link nor address of n1 behind.
            self.endpoints.settle()
            network = self.networks.remove(ref)
        self.networks_changed()
        return network

    def prune(self, wanted: PruneFilter | None = None) -> list[str]:
        with self.lock:
            self.endpoints.settle()  # as remove; prune also skips networks with endpoints
            removed = self.networks.prune(wanted)
        self.networks_changed()
        return removed

    def configure_default_bridge(self, bridge: str, bip: ipaddress.IPv4Interface | None) -> Network:
        with self.lock:
            return self.networks.configure_default_bridge(bridge, bip)
