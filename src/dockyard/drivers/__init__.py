"""Network drivers, looked up by DriverName.

`container:<id>` is not a driver: the engine resolves it to the target's
sandbox (see sandbox.py).
"""

from __future__ import annotations

from dockyard.drivers.base import Driver
from dockyard.drivers.bridge import BridgeDriver
from dockyard.drivers.null import NoEndpointDriver
from dockyard.kernel import Kernel
from dockyard.model import DriverName

__all__ = ["Driver", "registry"]


def registry(kernel: Kernel, owner: str) -> dict[DriverName, Driver]:
    return {
        DriverName.BRIDGE: BridgeDriver(kernel, owner),
        DriverName.HOST: NoEndpointDriver("host"),
        DriverName.NONE: NoEndpointDriver("none"),
    }
