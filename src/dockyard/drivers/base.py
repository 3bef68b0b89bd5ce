"""The driver contract, after libnetwork's driverapi and netavark's trait.

A driver makes the host side of a network and plugs endpoints into
sandboxes. It is handed resolved values (subnet, address, MAC, host ports
already chosen by the engine), never touches the store and never prints.
`leave`, `unpublish` and `delete_network` are idempotent and tolerate
half-made state, because a crash can leave exactly that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from dockyard.model import Endpoint, Network, PortBinding


class Driver(Protocol):
    def create_network(self, network: Network) -> None: ...

    def delete_network(self, network: Network) -> None: ...

    def join(
        self, network: Network, endpoint: Endpoint, sandbox: Path | None, default_route: bool = True
    ) -> None:
        """The endpoint's interface in sandbox; with None, its peer left unconfigured in the
        daemon's namespace for the caller to move (Docker's Join moves it, which drops any
        address, state or sysctl set before)."""
        ...

    def publish(self, network: Network, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None: ...

    def unpublish(self, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None: ...

    def cut_off(self, endpoint: Endpoint) -> None:
        """No frame crosses the endpoint from now on (the link itself goes with leave)."""
        ...

    def leave(self, network: Network, endpoint: Endpoint) -> None: ...


class DriverErrors(Exception):
    """Every failure of an idempotent teardown, reported together."""

    def __init__(self, what: str, errors: list[Exception]) -> None:
        super().__init__(f"{what}: " + "; ".join(str(e) for e in errors))
        self.errors = errors


class ForwardFirewall(Protocol):
    """iptables' FORWARD chain kept accepting dockyard's bridges where its policy is DROP."""

    def sync_forward(self, bridges: set[str]) -> list[str]:
        """Accept these bridges, drop dockyard's rules for others; returns what changed."""
        ...
