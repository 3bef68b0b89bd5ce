"""Network create, rm and prune as use cases, mixed into the Engine.

This module owns running networks.py's create, remove, prune and the
default bridge's configuration under the engine's lock, then keeping the
resolver (started while user networks exist, again if it died) and the
bridges' forwarding firewall in step with the networks.

The networks' own logic (names, subnets, drivers' bridges) is networks.py's;
the resolver process is the daemon's (DnsSync is what the engine needs of it).
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from dockyard.engine.networks.service import NetworkSpec
from dockyard.model import DriverName, Network


class DnsSync(Protocol):
    def sync(self, needed: bool) -> None: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...


class NetworkChanges:
    """Network use cases; uses the Engine's lock, networks, store, drivers and dns."""

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
        bridge_driver = self.drivers[DriverName.BRIDGE]
        return list(bridge_driver.sync_forward(bridges))

    # -- networks ------------------------------------------------------------------

    def network_create(self, spec: NetworkSpec) -> Network:
        with self.lock:
            network = self.networks.create(spec)
        self.networks_changed()
        return network

    def network_remove(self, ref: str) -> Network:
        with self.lock:
            network = self.networks.remove(ref)
        self.networks_changed()
        return network

    def network_prune(self) -> list[str]:
        with self.lock:
            removed = self.networks.prune()
        self.networks_changed()
        return removed

    def configure_default_bridge(self, bridge: str, bip: ipaddress.IPv4Interface | None) -> Network:
        with self.lock:
            return self.networks.configure_default_bridge(bridge, bip)
