"""A database of schema 1 is migrated at open: each endpoint says whether a container or a CNI attachment owns it.

Schema 1 filed a CNI attachment's endpoint under its owner key in the column
where containers file theirs (endpoints.container_id): nothing but the key's
form told the two apart. Schema 2 adds endpoints.owner_kind; opening an older
database fills it in once, from the key's form and the attachments table,
and the endpoints read back carry a typed owner (model.EndpointOwner).
"""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

from dockyard.model import Endpoint, EndpointOwner, OwnerKind
from dockyard.store import SCHEMA_VERSION, Store

# The two tables as schema 1 made them (store/schema.py before owner_kind).
SCHEMA_1 = """
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
    UNIQUE (network_id, address)
);
CREATE INDEX endpoints_container ON endpoints(container_id);
CREATE TABLE attachments (
    owner TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    network TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    netns TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'adding',
    created TEXT NOT NULL,
    UNIQUE (network, container_id, ifname)
);
PRAGMA user_version=1;
"""

NETWORK = "n" * 64
CONTAINER = "c" * 64
CNI_OWNER = "cni-" + "a" * 60
# An attachment's endpoint whose key has not the usual form: the attachments table names it.
LISTED_OWNER = "b" * 64


def _schema_1_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    with db:
        for i, owner in enumerate((CONTAINER, CNI_OWNER, LISTED_OWNER)):
            db.execute(
                "INSERT INTO endpoints(id, container_id, network_id, ifname, address, prefixlen, gateway,"
                " mac, host_ifname, state) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (
                    f"e{i}" * 32,
                    owner,
                    NETWORK,
                    "eth0",
                    int(ipaddress.IPv4Address("10.89.0.2")) + i,
                    24,
                    "10.89.0.1",
                    "02:42:0a:59:00:02",
                    f"veth000000{i}",
                    "releasing" if owner == LISTED_OWNER else "active",
                ),
            )
        for owner, cid in ((CNI_OWNER, "runtime-1"), (LISTED_OWNER, "runtime-2")):
            db.execute(
                "INSERT INTO attachments(owner, network_id, network, container_id, ifname, netns, state,"
                " created) VALUES(?,?,'pods',?,'eth0','/run/netns/x','ready','')",
                (owner, NETWORK, cid),
            )
    db.close()


def _owners(store: Store) -> dict[str, EndpointOwner]:
    return {ep.owner.key: ep.owner for ep in store.endpoints(state=None)}


def test_a_schema_1_database_is_migrated_at_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _schema_1_database(path)
    store = Store(path)
    try:
        assert _owners(store) == {
            CONTAINER: EndpointOwner(OwnerKind.CONTAINER, CONTAINER),
            CNI_OWNER: EndpointOwner(OwnerKind.CNI, CNI_OWNER),
            LISTED_OWNER: EndpointOwner(OwnerKind.CNI, LISTED_OWNER),
        }
        # What schema 1 held is all still there, and counted.
        (container_ep,) = store.endpoints(container_id=CONTAINER)
        assert container_ep.address == ipaddress.IPv4Interface("10.89.0.2/24")
        assert container_ep.owner.container_id == CONTAINER
        assert store.endpoint_count(NETWORK) == 3
        assert [ep.owner.container_id for ep in store.endpoints(container_id=CNI_OWNER)] == [None]
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_a_migrated_database_is_not_migrated_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _schema_1_database(path)
    Store(path).close()
    # Its rows as a later dockyard may change them: a migration run again would undo that.
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE endpoints SET owner_kind='container' WHERE container_id=?", (LISTED_OWNER,))
    db.close()
    store = Store(path)
    try:
        assert _owners(store)[LISTED_OWNER].kind is OwnerKind.CONTAINER
        assert _owners(store)[CNI_OWNER].kind is OwnerKind.CNI
    finally:
        store.close()


def test_a_new_database_keeps_the_owner_it_is_given(tmp_path: Path) -> None:
    """An attachment's key in a container's form is still the attachment's: the kind is recorded, not guessed."""
    store = Store(tmp_path / "state.db")
    try:
        for i, owner in enumerate(
            (EndpointOwner.container(CONTAINER), EndpointOwner.attachment(LISTED_OWNER))
        ):
            store.add_endpoint(
                Endpoint(
                    id=f"e{i}" * 32,
                    owner=owner,
                    network_id=NETWORK,
                    ifname="eth0",
                    address=ipaddress.IPv4Interface(f"10.89.0.{2 + i}/24"),
                    gateway=ipaddress.IPv4Address("10.89.0.1"),
                    mac="02:42:0a:59:00:02",
                    host_ifname=f"veth000000{i}",
                )
            )
        assert _owners(store) == {
            CONTAINER: EndpointOwner(OwnerKind.CONTAINER, CONTAINER),
            LISTED_OWNER: EndpointOwner(OwnerKind.CNI, LISTED_OWNER),
        }
    finally:
        store.close()
