"""A database of schema 4 is migrated at open to schema 5: the copy of other hosts' endpoints
gains their IPv6 address (empty until the cluster's next resync rewrites the copy)."""

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
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    db.close()
