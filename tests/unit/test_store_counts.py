"""The store's endpoint counts per network: exact through every change, and made for older databases.

Endpoints.record checks a network's count on every lease; the store keeps it
in a table of its own, maintained by triggers, so that the check reads one
row instead of counting the network's whole index (bench/networks.py).
"""

from __future__ import annotations

import ipaddress
import random
import sqlite3
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network
from dockyard.store import Store


def _network(store: Store, name: str, subnet: str) -> Network:
    net = ipaddress.IPv4Network(subnet)
    network = Network(
        id=name * 32,
        name=name,
        driver=DriverName.BRIDGE,
        subnet=net,
        gateway=net.network_address + 1,
        bridge=f"dy-{name}",
    )
    store.add_network(network)
    return network


def _endpoint(network: Network, i: int) -> Endpoint:
    assert network.subnet is not None
    address = network.subnet.network_address + 2 + i
    return Endpoint(
        f"{network.name}{i:060d}",
        EndpointOwner.container(f"c{i}"),
        network.id,
        "eth0",
        ipaddress.IPv4Interface(f"{address}/{network.subnet.prefixlen}"),
        network.gateway,
        "02:42:00:00:00:00",
        f"v{network.name}{i:07d}",
    )


def _counted(store: Store, network: Network) -> int:
    return int(store._q("SELECT COUNT(*) FROM endpoints WHERE network_id=?", (network.id,))[0][0])


def test_counts_follow_inserts_deletes_and_state_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    nets = [_network(store, "aa", "10.1.0.0/16"), _network(store, "bb", "10.2.0.0/16")]
    assert [store.endpoint_count(n.id) for n in nets] == [0, 0]
    rng = random.Random(4)
    present: dict[str, Endpoint] = {}
    for i in range(400):
        network = rng.choice(nets)
        roll = rng.random()
        if roll < 0.6 or not present:
            ep = _endpoint(network, i)
            store.add_endpoint(ep)
            present[ep.id] = ep
        elif roll < 0.8:
            victim = present.pop(rng.choice(sorted(present)))
            store.delete_endpoint(victim.id)
        else:  # 'releasing' endpoints count too: their address is still held
            store.set_endpoint_state(rng.choice(sorted(present)), "releasing")
        for n in nets:
            assert (
                store.endpoint_count(n.id)
                == _counted(store, n)
                == sum(1 for e in present.values() if e.network_id == n.id)
            )
    for ep_id in list(present):
        store.delete_endpoint(ep_id)
    assert [store.endpoint_count(n.id) for n in nets] == [0, 0]
    assert store._q("SELECT COUNT(*) FROM endpoint_counts")[0][0] == 0  # no row kept for an empty network


def test_a_refused_insert_and_a_rolled_back_transaction_count_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    network = _network(store, "aa", "10.1.0.0/16")
    store.add_endpoint(_endpoint(network, 0))
    with pytest.raises(Conflict):
        store.add_endpoint(_endpoint(network, 0))  # the same address: UNIQUE refuses it
    assert store.endpoint_count(network.id) == 1
    with pytest.raises(RuntimeError), store.transaction():
        store.add_endpoint(_endpoint(network, 1))
        assert store.endpoint_count(network.id) == 2
        raise RuntimeError("undo")
    assert store.endpoint_count(network.id) == 1


def test_a_database_from_before_the_counts_is_counted_at_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    network = _network(store, "aa", "10.1.0.0/16")
    for i in range(5):
        store.add_endpoint(_endpoint(network, i))
    store.close()
    # What an older dockyard left: endpoints, and no counts at all.
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TRIGGER endpoints_counted; DROP TRIGGER endpoints_uncounted; DROP TABLE endpoint_counts;"
    )
    db.close()
    store = Store(path)
    assert store.endpoint_count(network.id) == 5
    store.delete_endpoint(_endpoint(network, 0).id)
    store.add_endpoint(_endpoint(network, 7))
    store.add_endpoint(_endpoint(network, 8))
    assert store.endpoint_count(network.id) == _counted(store, network) == 6
    store.close()
    # Opening again counts nothing twice.
    store = Store(path)
    assert store.endpoint_count(network.id) == 6
    store.close()
