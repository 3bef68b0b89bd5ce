"""A database of schema 2 is migrated at open to schema 3 (IPv6): its networks and
endpoints read as they were, without IPv6, and take IPv6 leases from then on, each
address once per network."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network
from dockyard.store import SCHEMA_VERSION, Store

# The two tables as schema 2 made them (store/schema.py before IPv6).
SCHEMA_2 = """
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    subnet TEXT,
    gateway TEXT,
    ip_range TEXT,
    bridge TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    icc INTEGER NOT NULL DEFAULT 1,
    masquerade INTEGER NOT NULL DEFAULT 1,
    mtu INTEGER NOT NULL DEFAULT 1500,
    host_binding TEXT,
    options TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]',
    aux TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    ip_cursor INTEGER
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    address INTEGER NOT NULL,
    prefixlen INTEGER NOT NULL,
    gateway TEXT,
    mac TEXT NOT NULL,
    host_ifname TEXT NOT NULL UNIQUE,
    aliases TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT 'active',
    owner_kind TEXT NOT NULL DEFAULT 'container',
    UNIQUE (network_id, address)
);
PRAGMA user_version=2;
"""

NETWORK = "n" * 64


def _schema_2_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2)
    with db:
        db.execute(
            "INSERT INTO networks(id, name, driver, subnet, gateway, bridge, aux, created)"
            " VALUES(?, 'web', 'bridge', '10.89.0.0/24', '10.89.0.1', 'dy-web', '[[\"r\", \"10.89.0.9\"]]', '')",
            (NETWORK,),
        )
        db.execute(
            "INSERT INTO endpoints(id, container_id, network_id, ifname, address, prefixlen, gateway, mac,"
            " host_ifname) VALUES(?,?,?,'eth0',?,24,'10.89.0.1','02:42:0a:59:00:02','veth0000000')",
            ("e" * 64, "c" * 64, NETWORK, int(ipaddress.IPv4Address("10.89.0.2"))),
        )
    db.close()


def _endpoint(i: int, address6: str | None) -> Endpoint:
    return Endpoint(
        id=f"{i}" * 64,
        owner=EndpointOwner.container(f"{i}" * 64),
        network_id=NETWORK,
        ifname="eth0",
        address=ipaddress.IPv4Interface(f"10.89.0.{10 + i}/24"),
        gateway=ipaddress.IPv4Address("10.89.0.1"),
        mac="02:42:0a:59:00:0a",
        host_ifname=f"veth000001{i}",
        address6=ipaddress.IPv6Interface(address6) if address6 else None,
        gateway6=ipaddress.IPv6Address("2001:db8:1::1") if address6 else None,
    )


def test_a_schema_2_database_reads_as_before_and_takes_ipv6_leases(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _schema_2_database(path)
    store = Store(path)
    try:
        network = store.get_network("web")
        assert (network.enable_ipv6, network.subnet6, network.gateway6, network.ip_range6) == (
            False,
            None,
            None,
            None,
        )
        assert network.subnet == ipaddress.IPv4Network("10.89.0.0/24")
        assert network.aux_addresses == (("r", ipaddress.IPv4Address("10.89.0.9")),)
        (old,) = store.endpoints(network_id=NETWORK)
        assert (old.address6, old.gateway6) == (None, None)
        # From now on: an IPv6 lease beside the IPv4 one, read back whole, given once.
        store.add_endpoint(_endpoint(1, "2001:db8:1::2/64"))
        store.add_endpoint(_endpoint(2, None))  # an endpoint without IPv6 takes none
        with pytest.raises(Conflict, match="address 2001:db8:1::2 is already in use"):
            store.add_endpoint(_endpoint(3, "2001:db8:1:0:0::2/64"))  # the same address, spelled otherwise
        by_id = {ep.id: ep for ep in store.endpoints(network_id=NETWORK)}
        assert by_id["1" * 64].address6 == ipaddress.IPv6Interface("2001:db8:1::2/64")
        assert by_id["1" * 64].gateway6 == ipaddress.IPv6Address("2001:db8:1::1")
        assert "3" * 64 not in by_id
        assert store.address6_used(NETWORK, ipaddress.IPv6Address("2001:db8:1::2"))
        store.set_ip6_cursor(NETWORK, ipaddress.IPv6Address("2001:db8:1::2"))
        assert store.ip6_cursor(NETWORK) == ipaddress.IPv6Address("2001:db8:1::2")
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_a_dual_stack_network_is_kept_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    try:
        network = Network(
            id=NETWORK,
            name="dual",
            driver=DriverName.BRIDGE,
            subnet=ipaddress.IPv4Network("10.1.0.0/24"),
            gateway=ipaddress.IPv4Address("10.1.0.1"),
            bridge="dy-dual",
            aux_addresses=(
                ("a", ipaddress.IPv4Address("10.1.0.5")),
                ("b", ipaddress.IPv6Address("2001:db8:1::5")),
            ),
            created="2026-01-01T00:00:00.000000Z",
            enable_ipv6=True,
            subnet6=ipaddress.IPv6Network("2001:db8:1::/64"),
            gateway6=ipaddress.IPv6Address("2001:db8:1::1"),
            ip_range6=ipaddress.IPv6Network("2001:db8:1::/80"),
        )
        store.add_network(network)
        assert store.get_network("dual") == network
        only6 = Network(
            id="m" * 64,
            name="only6",
            driver=DriverName.BRIDGE,
            bridge="dy-only6",
            created="2026-01-01T00:00:00.000000Z",
            enable_ipv6=True,
            subnet6=ipaddress.IPv6Network("fd00:1::/64"),
            gateway6=ipaddress.IPv6Address("fd00:1::1"),
        )
        store.add_network(only6)
        assert store.get_network("only6") == only6
        assert not store.get_network("only6").enable_ipv4
    finally:
        store.close()
