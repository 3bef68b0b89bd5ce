"""A database of schema 3 is migrated at open to schema 4 (IPv6-only networks): the
endpoints table is rebuilt so that an endpoint may have no IPv4 address; what it held
reads as before, is still counted and still unique, and the triggers and indexes are back."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.model import Endpoint, EndpointOwner
from dockyard.store import SCHEMA_VERSION, Store

NETWORK = "n" * 64
V6ONLY = "m" * 64


def _schema_3_database(path: Path) -> None:
    """A schema 3 database with one dual-stack endpoint, as dockyard before this change left it."""
    store = Store(path)
    store.close()
    db = sqlite3.connect(path)
    script = [
        "DROP TABLE endpoints",
        "CREATE TABLE endpoints ("
        " id TEXT PRIMARY KEY, container_id TEXT NOT NULL, network_id TEXT NOT NULL,"
        " ifname TEXT NOT NULL, address INTEGER NOT NULL, prefixlen INTEGER NOT NULL, gateway TEXT,"
        " mac TEXT NOT NULL, host_ifname TEXT NOT NULL UNIQUE, aliases TEXT NOT NULL DEFAULT '[]',"
        " state TEXT NOT NULL DEFAULT 'active', owner_kind TEXT NOT NULL DEFAULT 'container',"
        " address6 TEXT, prefixlen6 INTEGER, gateway6 TEXT, UNIQUE (network_id, address))",
        "CREATE UNIQUE INDEX endpoints_address6 ON endpoints(network_id, address6)",
        "CREATE TRIGGER endpoints_counted AFTER INSERT ON endpoints BEGIN"
        " INSERT INTO endpoint_counts(network_id, n) VALUES (NEW.network_id, 1)"
        " ON CONFLICT(network_id) DO UPDATE SET n = n + 1; END",
        "CREATE TRIGGER endpoints_uncounted AFTER DELETE ON endpoints BEGIN"
        " UPDATE endpoint_counts SET n = n - 1 WHERE network_id = OLD.network_id;"
        " DELETE FROM endpoint_counts WHERE network_id = OLD.network_id AND n <= 0; END",
        "DELETE FROM endpoint_counts",
        "PRAGMA user_version=3",
    ]
    for sql in script:
        db.execute(sql)
    with db:
        db.execute(
            "INSERT INTO endpoints(id, container_id, network_id, ifname, address, prefixlen, gateway, mac,"
            " host_ifname, address6, prefixlen6, gateway6)"
            " VALUES(?,?,?,'eth0',?,24,'10.89.0.1','02:42:0a:59:00:02','veth0000000','2001:db8:1::2',64,"
            "'2001:db8:1::1')",
            ("e" * 64, "c" * 64, NETWORK, int(ipaddress.IPv4Address("10.89.0.2"))),
        )
    db.close()


def _v6only(i: int, address6: str) -> Endpoint:
    return Endpoint(
        id=f"{i}" * 64,
        owner=EndpointOwner.container(f"{i}" * 64),
        network_id=V6ONLY,
        ifname="eth0",
        address=None,
        gateway=None,
        mac=f"02:42:00:00:00:0{i}",
        host_ifname=f"veth000001{i}",
        address6=ipaddress.IPv6Interface(address6),
        gateway6=ipaddress.IPv6Address("fd00:1::1"),
    )


def test_a_schema_3_database_takes_endpoints_without_ipv4(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _schema_3_database(path)
    store = Store(path)
    try:
        (old,) = store.endpoints(network_id=NETWORK)
        assert old.address == ipaddress.IPv4Interface("10.89.0.2/24")
        assert old.address6 == ipaddress.IPv6Interface("2001:db8:1::2/64")
        assert store.endpoint_count(NETWORK) == 1  # counted before, still counted
        # Two endpoints without IPv4 on one network: NULLs are distinct, the IPv6 lease is unique.
        store.add_endpoint(_v6only(1, "fd00:1::2/64"))
        store.add_endpoint(_v6only(2, "fd00:1::3/64"))
        with pytest.raises(Conflict, match="address fd00:1::3 is already in use"):
            store.add_endpoint(_v6only(3, "fd00:1::3/64"))
        got = store.endpoints(network_id=V6ONLY)
        assert [(e.address, e.gateway, str(e.address6)) for e in got] == [
            (None, None, "fd00:1::2/64"),
            (None, None, "fd00:1::3/64"),
        ]
        assert store.endpoint_count(V6ONLY) == 2  # the triggers were made again
        # The IPv4 lease is still unique too.
        dup = Endpoint(**{**old.__dict__, "id": "f" * 64, "host_ifname": "veth000009", "address6": None})
        with pytest.raises(Conflict, match=r"address 10\.89\.0\.2 is already in use"):
            store.add_endpoint(dup)
        store.delete_endpoint("1" * 64)
        assert store.endpoint_count(V6ONLY) == 1
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    notnull = {row[1]: row[3] for row in db.execute("PRAGMA table_info(endpoints)")}
    assert notnull["address"] == 0 and notnull["prefixlen"] == 0
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE tbl_name='endpoints'")}
    assert {"endpoints_address6", "endpoints_container", "endpoints_state"} <= indexes
    assert {"endpoints_counted", "endpoints_uncounted"} <= indexes
    db.close()
    # Opened again: nothing left to migrate, the rows as they were.
    again = Store(path)
    try:
        assert len(again.endpoints()) == 2
    finally:
        again.close()
