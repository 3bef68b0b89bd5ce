"""A database of schema 4 is migrated at open to schema 5: the copy of other hosts' endpoints
gains their IPv6 address (empty until the cluster's next resync rewrites the copy); one of
schema 5 to schema 6: that copy's IPv4 address may be absent (IPv6-only overlay networks)."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

from dockyard.store import SCHEMA_VERSION, RemoteEndpoint, Store

NETWORK = "n" * 64


def test_a_schema_4_copy_of_remote_endpoints_gains_ipv6_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "ALTER TABLE remote_endpoints DROP COLUMN address6;"
        f"INSERT INTO remote_endpoints(id, network_id, address, names) VALUES ('e1', '{NETWORK}', "
        f"{int(ipaddress.IPv4Address('10.60.0.2'))}, '[\"srv\"]');"
        "PRAGMA user_version=4;"
    )
    db.close()

    store = Store(path)
    try:
        old = store.remote_endpoints(NETWORK)
        assert old == [RemoteEndpoint("e1", NETWORK, ipaddress.IPv4Address("10.60.0.2"), ("srv",))]
        dual = RemoteEndpoint(
            "e2", NETWORK, ipaddress.IPv4Address("10.60.0.3"), ("cli",), ipaddress.IPv6Address("fd00:60::3")
        )
        store.put_remote_endpoint(dual)
        assert store.remote_endpoints(NETWORK)[1] == dual
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


# Schema 5's table, as that version made it.
REMOTE_5 = """
DROP TABLE remote_endpoints;
CREATE TABLE remote_endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    address INTEGER NOT NULL,
    names TEXT NOT NULL DEFAULT '[]',
    address6 TEXT
);
CREATE INDEX remote_endpoints_network ON remote_endpoints(network_id);
"""


def test_a_schema_5_copy_of_remote_endpoints_takes_ipv6_only_ones_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        REMOTE_5 + "INSERT INTO remote_endpoints(id, network_id, address, names, address6) VALUES ('e1', "
        f"'{NETWORK}', {int(ipaddress.IPv4Address('10.60.0.2'))}, '[\"srv\"]', 'fd00:60::2');"
        "PRAGMA user_version=5;"
    )
    db.close()

    store = Store(path)
    try:
        dual = RemoteEndpoint(
            "e1", NETWORK, ipaddress.IPv4Address("10.60.0.2"), ("srv",), ipaddress.IPv6Address("fd00:60::2")
        )
        assert store.remote_endpoints(NETWORK) == [dual]
        only6 = RemoteEndpoint("e2", NETWORK, None, ("srv6",), ipaddress.IPv6Address("fd00:61::2"))
        store.put_remote_endpoint(only6)
        assert store.remote_endpoints(NETWORK) == [only6, dual]
        # The resolver's lookup answers the IPv6-only one with its IPv6 address alone.
        assert store.dns_addresses(NETWORK, "srv6") == [ipaddress.IPv6Address("fd00:61::2")]
        assert store.dns_addresses(NETWORK, "srv") == [dual.address, dual.address6]
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name='remote_endpoints'")}
    assert "remote_endpoints_network" in indexes
    db.close()
