"""store/ports.py: published ports stored as they were chosen, a range in one statement."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dockyard.errors import Conflict
from dockyard.model import PortBinding, Protocol
from dockyard.store import Store

TCP, UDP = Protocol.TCP, Protocol.UDP
LO = ipaddress.IPv4Address("127.0.0.1")
LO6 = ipaddress.IPv6Address("::1")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db")


def test_bindings_come_back_in_order_whatever_their_runs(store: Store) -> None:
    bindings = (
        *(PortBinding(9000 + i, TCP, 19000 + i) for i in range(5)),  # a run
        PortBinding(9005, TCP, 19005, LO),  # same steps, another address
        PortBinding(9006, UDP, 19006, LO),  # another protocol
        PortBinding(9008, UDP, 19007, LO),  # the container port skips
        PortBinding(53, UDP, 53, LO6),
        *(PortBinding(80, TCP, 8080 + i) for i in range(3)),  # one container port, host ports step
        PortBinding(9100, TCP, 19100),
    )
    store.add_ports("c1", "e1", bindings)
    store.add_ports("c2", "e2", (PortBinding(9000, TCP, 19000, LO6),))
    assert store.ports("c1") == [("e1", b) for b in bindings]
    assert store.ports("c2") == [("e2", PortBinding(9000, TCP, 19000, LO6))]


def test_a_range_is_one_insert(store: Store) -> None:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        store.add_ports("c1", "e1", tuple(PortBinding(10000 + i, TCP, 10000 + i) for i in range(1000)))
    finally:
        store._db.set_trace_callback(None)
    assert len([s for s in statements if "INSERT" in s]) == 1, statements
    assert len(store.ports("c1")) == 1000
    assert store.port_holders(10999) == {(10999, TCP): [None]}


def test_a_range_over_a_published_port_names_it_and_its_transaction_keeps_nothing(store: Store) -> None:
    store.add_ports("c1", "e1", (PortBinding(80, TCP, 10500),))
    with pytest.raises(Conflict) as info, store.transaction():  # as the engine records an endpoint
        store.add_ports("c2", "e2", tuple(PortBinding(10000 + i, TCP, 10000 + i) for i in range(1000)))
    assert str(info.value) == "Bind for 0.0.0.0:10500/tcp failed: port is already allocated"
    assert store.ports("c2") == []
    assert store.ports() == [("e1", PortBinding(80, TCP, 10500))]
