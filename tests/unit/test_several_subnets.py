"""A network of several subnets per family: next-fit over them as over one range, each
address with its own subnet's gateway, and the later subnets kept through the store
(schema 6 to 7) and through the cluster's record."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from dockyard.cluster.records import NetworkRecord
from dockyard.daemon.api.docker import network_spec
from dockyard.errors import InvalidArgument
from dockyard.model import DriverName, Network, SubnetConfig
from dockyard.store import SCHEMA_VERSION, Store

A, B, C = IPv4Network("10.61.0.0/30"), IPv4Network("10.62.0.0/29"), IPv4Network("10.63.0.0/29")


def _network(**more: object) -> Network:
    return Network(
        id="n" * 64,
        name="multi",
        driver=DriverName.OVERLAY,
        subnet=A,
        gateway=IPv4Address("10.61.0.1"),
        enable_ipv6=True,
        subnet6=IPv6Network("fd00:61::/64"),
        gateway6=IPv6Address("fd00:61::1"),
        more_subnets=(
            SubnetConfig(B, IPv4Address("10.62.0.6")),
            SubnetConfig(IPv6Network("fd00:62::/64"), IPv6Address("fd00:62::1")),
            SubnetConfig(C, IPv4Address("10.63.0.1"), IPv4Network("10.63.0.4/30")),
        ),
        **more,  # type: ignore[arg-type]
    )


def test_a_network_names_every_subnet_of_a_family_in_order_and_the_one_an_address_is_in() -> None:
    n = _network()
    assert [c.subnet for c in n.subnet_configs(4)] == [A, B, C]
    assert [str(c.gateway) for c in n.subnet_configs(6)] == ["fd00:61::1", "fd00:62::1"]
    assert n.subnets() == (A, B, C, IPv6Network("fd00:61::/64"), IPv6Network("fd00:62::/64"))
    config = n.config_of(IPv4Address("10.63.0.5"))
    assert config == SubnetConfig(C, IPv4Address("10.63.0.1"), IPv4Network("10.63.0.4/30"))
    assert n.config_of(IPv6Address("fd00:62::9")) == n.more_subnets[1]
    assert n.config_of(IPv4Address("10.64.0.1")) is None


def test_the_store_keeps_every_subnet_and_a_schema_6_database_gains_none(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "INSERT INTO networks(id, name, driver, subnet, gateway, created) VALUES "
        "('o' || hex(zeroblob(31)), 'old', 'bridge', '10.80.0.0/24', '10.80.0.1', '2026-01-01');"
        # The table as schema 6 had it: every column but the new one.
        "CREATE TABLE networks_6 AS SELECT * FROM networks;"
        "ALTER TABLE networks_6 DROP COLUMN more_subnets;"
        "DROP TABLE networks; ALTER TABLE networks_6 RENAME TO networks;"
        "PRAGMA user_version=6;"
    )
    db.close()
    store = Store(path)
    try:
        old = store.get_network("old")
        assert old.more_subnets == () and old.subnet_configs(4) == (
            SubnetConfig(IPv4Network("10.80.0.0/24"), IPv4Address("10.80.0.1")),
        )
        n = _network(created="2026-12-07T00:00:00Z", bridge="dy-multi")
        store.add_network(n)
        assert store.get_network("multi") == n
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_the_cluster_record_carries_subnets_ranges_and_aux_and_one_without_reads_as_before() -> None:
    kept = _network()
    record = NetworkRecord(
        "n" * 64,
        "multi",
        "overlay",
        A,
        IPv4Address("10.61.0.1"),
        subnet6=IPv6Network("fd00:61::/64"),
        gateway6=IPv6Address("fd00:61::1"),
        more_subnets=kept.more_subnets,
        ip_range=IPv4Network("10.61.0.0/31"),
        ip_range6=IPv6Network("fd00:61::/120"),
        aux=(("one", IPv4Address("10.62.0.3")), ("six", IPv6Address("fd00:62::9"))),
    )
    assert NetworkRecord.decode(record.encode()) == record
    assert record.subnets(4) == [A, B, C] and record.subnets(6) == [
        IPv6Network("fd00:61::/64"),
        IPv6Network("fd00:62::/64"),
    ]
    # Without later subnets, not a byte more than an earlier version wrote.
    plain = NetworkRecord("n" * 64, "ov", "overlay", A, IPv4Address("10.61.0.1"))
    assert not {"more_subnets", "ip_range", "ip_range6", "aux"} & set(json.loads(plain.encode()))


@pytest.mark.parametrize(
    "config",
    [
        [{"Subnet": "10.61.0.0/30"}, {"Subnet": "10.62.0.0/24", "Gateway": "10.62.0.254"}],
        [{"Subnet": "10.61.0.0/30"}, {"Subnet": "fd00:1::/64"}, {"Subnet": "fd00:2::/64"}],
    ],
)
def test_the_api_gives_an_overlay_network_every_subnet_and_a_bridge_refuses_the_second(
    config: list[dict[str, str]],
) -> None:
    body = {"Name": "multi", "Driver": "overlay", "EnableIPv6": True, "IPAM": {"Config": config}}
    spec = network_spec(body)
    given = [ipaddress.ip_network(c["Subnet"]) for c in config]
    firsts = [spec.subnet, spec.subnet6]
    assert [s for s in given if s not in firsts] == [c.subnet for c in spec.more_subnets]
    gateways = {str(c.subnet): str(c.gateway) for c in spec.more_subnets if c.gateway is not None}
    assert gateways == {c["Subnet"]: c["Gateway"] for c in config[1:] if "Gateway" in c}
    with pytest.raises(InvalidArgument, match="bridge driver doesn't support multiple subnets"):
        network_spec(body | {"Driver": "bridge"})
