"""Drivers without an endpoint on the host: `none` (Docker's null driver) and `host`.

`none` gives the sandbox only `lo`, which the engine brings up when it
makes the sandbox; `host` has no sandbox at all. Both are all no-ops here,
and neither can publish ports (the engine warns and ignores -p, as Docker).
"""

from __future__ import annotations

from pathlib import Path

from dockyard.errors import InvalidArgument
from dockyard.model import Endpoint, Network, PortBinding


class NoEndpointDriver:
    def __init__(self, name: str) -> None:
        self.name = name

    def create_network(self, network: Network) -> None:
        raise InvalidArgument(f"only one instance of the {self.name} network is allowed")

    def delete_network(self, network: Network) -> None:
        raise InvalidArgument(f"{network.name} is a pre-defined network and cannot be removed")

    def join(
        self, network: Network, endpoint: Endpoint, sandbox: Path | None, default_route: bool = True
    ) -> None:
        raise InvalidArgument(f"the {self.name} network takes no endpoints")

    def publish(self, network: Network, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None:
        return None

    def unpublish(self, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None:
        return None

    def cut_off(self, endpoint: Endpoint) -> None:
        return None

    def leave(self, network: Network, endpoint: Endpoint) -> None:
        return None
