"""Limits made explicit: a full bridge and an exhausted subnet are clear errors, not kernel messages."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dockyard.engine.endpoints import BRIDGE_MAX_PORTS, Endpoints
from dockyard.errors import Conflict
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network
from dockyard.store import Store


def _network(store: Store, subnet: str) -> Network:
    net = ipaddress.IPv4Network(subnet)
    network = Network(
        id="n" * 64,
        name="limits",
        driver=DriverName.BRIDGE,
        subnet=net,
        gateway=net.network_address + 1,
        bridge="dy-limits",
    )
    store.add_network(network)
    return network


def test_the_1024th_port_of_a_bridge_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    network = _network(store, "10.0.0.0/16")
    with store.transaction():
        for i in range(BRIDGE_MAX_PORTS - 1):
            addr = network.subnet.network_address + 2 + i  # type: ignore[union-attr]
            store.add_endpoint(
                Endpoint(
                    f"e{i:063d}",
                    EndpointOwner.container(f"c{i}"),
                    network.id,
                    "eth0",
                    ipaddress.IPv4Interface(f"{addr}/16"),
                    network.gateway,
                    "02:42:00:00:00:00",
                    f"veth{i:07d}",
                )
            )
    endpoints = Endpoints(store, None, {})  # type: ignore[arg-type]
    try:
        with pytest.raises(Conflict, match="a Linux bridge holds at most 1024 ports"):
            endpoints.record(EndpointOwner.container("last"), network, "eth0")
    finally:
        endpoints.close()
    assert store.endpoint_count(network.id) == BRIDGE_MAX_PORTS - 1


def test_an_exhausted_subnet_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    network = _network(store, "10.1.0.0/30")
    endpoints = Endpoints(store, None, {})  # type: ignore[arg-type]
    try:
        first, _ = endpoints.record(EndpointOwner.container("one"), network, "eth0")
        assert str(first.address.ip) == "10.1.0.2"
        with pytest.raises(Conflict, match="no available IPv4 addresses"):
            endpoints.record(EndpointOwner.container("two"), network, "eth0")
    finally:
        endpoints.close()
    assert store.endpoint_count(network.id) == 1
