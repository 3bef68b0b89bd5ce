"""Network drivers, looked up by DriverName in the Drivers registry.

`container:<id>` is not a driver: the engine resolves it to the target's
sandbox (see engine/sandbox.py). The bridges' forwarding firewall (iptables'
FORWARD chain, kept accepting dockyard's bridges where its policy is DROP)
is reached as `Drivers.forward`, typed by the ForwardFirewall protocol: it
spans every bridge network at once, so it is no per-network driver verb.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from dockyard.drivers.base import Driver, ForwardFirewall
from dockyard.drivers.bridge import BridgeDriver
from dockyard.drivers.null import NoEndpointDriver
from dockyard.kernel import Kernel
from dockyard.model import DriverName

__all__ = ["Driver", "Drivers", "ForwardFirewall", "registry"]


class Drivers(Mapping[DriverName, Driver]):
    """Every driver of one root, by name; the bridge's firewall as `forward`."""

    def __init__(self, kernel: Kernel, owner: str) -> None:
        bridge = BridgeDriver(kernel, owner)
        self.forward: ForwardFirewall = bridge
        self._by_name: dict[DriverName, Driver] = {
            DriverName.BRIDGE: bridge,
            DriverName.HOST: NoEndpointDriver("host"),
            DriverName.NONE: NoEndpointDriver("none"),
        }

    def add(self, name: DriverName, driver: Driver) -> None:
        """A driver known only once the daemon is configured for it (overlay: a cluster)."""
        self._by_name[name] = driver

    def __getitem__(self, name: DriverName) -> Driver:
        return self._by_name[name]

    def __iter__(self) -> Iterator[DriverName]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def registry(kernel: Kernel, owner: str) -> Drivers:
    return Drivers(kernel, owner)
