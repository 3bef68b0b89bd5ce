"""The bridge driver's restore: host ports held for containers, never for CNI attachments."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from dockyard.drivers import bridge
from dockyard.errors import KernelError
from dockyard.kernel import Kernel
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network, PortBinding, Protocol

NETWORK = Network(
    id="n" * 64,
    name="pods",
    driver=DriverName.BRIDGE,
    subnet=ipaddress.IPv4Network("10.46.0.0/24"),
    gateway=ipaddress.IPv4Address("10.46.0.1"),
    bridge="cni-pods",
)
ENDPOINT = Endpoint(
    "e" * 64,
    EndpointOwner.attachment("cni-" + "0" * 60),
    NETWORK.id,
    "eth0",
    ipaddress.IPv4Interface("10.46.0.2/24"),
    NETWORK.gateway,
    "02:42:0a:2e:00:02",
    "veth" + "e" * 7,
)
BINDINGS = (PortBinding(80, Protocol.TCP, 8081),)


class FakeNetlink:
    def ensure_bridge(self, *args: object) -> bool:
        return False


class FakeNft:
    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, commands: object, what: str) -> None:
        self.applied.append(what)


class TakenHolds:
    """Every host port is taken already (by the runtime, say)."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    def release(self, owner: str) -> int:
        return 0

    def hold_each(self, owner: str, bindings: list[PortBinding]) -> list[KernelError]:
        self.tried.append(owner)
        return [KernelError(f"cannot hold host port 0.0.0.0:{b.host_port}/tcp: in use") for b in bindings]


@pytest.mark.parametrize("hold", [True, False])
def test_restore_holds_host_ports_only_when_asked(
    hold: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bridge.sysctl, "write", lambda key, value: None)
    nft, holds = FakeNft(), TakenHolds()
    driver = bridge.BridgeDriver(Kernel(FakeNetlink(), nft, holds), "owner")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        driver.restore(NETWORK, [(ENDPOINT, BINDINGS)], hold=hold)
    assert holds.tried == ([ENDPOINT.id] if hold else [])
    warned = [r.getMessage() for r in caplog.records if "cannot hold host port" in r.getMessage()]
    assert len(warned) == (1 if hold else 0), warned
    # The DNAT elements are put back either way.
    assert "restore ports of network pods" in nft.applied
