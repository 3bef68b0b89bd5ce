"""The statements a run, an rm and a CNI ADD or DEL make read the big tables through an index.

A store with 1,000 containers, endpoints, published ports and CNI
attachments; every statement the per-container calls make is caught with
SQLite's trace callback and its plan asked with EXPLAIN QUERY PLAN: none may
SCAN containers, endpoints, ports or attachments (a SCAN reads every row, so
that its cost follows the number of containers). Speed itself is bench/'s.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    DriverName,
    Endpoint,
    EndpointOwner,
    Network,
    PortBinding,
    Protocol,
)
from dockyard.store import Store

N = 1000
BIG = ("containers", "endpoints", "ports", "attachments")
NET = ipaddress.IPv4Network("10.64.0.0/16")


def _cid(i: int) -> str:
    return hashlib.sha256(b"c%d" % i).hexdigest()


def _endpoint(network: Network, owner: str, i: int) -> Endpoint:
    return Endpoint(
        id=hashlib.sha256(b"e%d" % i).hexdigest(),
        owner=EndpointOwner.container(owner),
        network_id=network.id,
        ifname="eth0",
        address=ipaddress.IPv4Interface(f"{NET.network_address + 2 + i}/{NET.prefixlen}"),
        gateway=network.gateway,
        mac="02:42:00:00:00:00",
        host_ifname=f"veth{i:07x}",
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Network]:
    store = Store(tmp_path_factory.mktemp("plans") / "state.db")
    network = Network(
        id="n" * 64,
        name="big",
        driver=DriverName.BRIDGE,
        subnet=NET,
        gateway=NET.network_address + 1,
        bridge="dy-big",
    )
    store.add_network(network)
    config = ContainerConfig(cmd=("sleep", "1000"))
    with store.transaction():
        for i in range(N):
            cid = _cid(i)
            store.add_container(Container(id=cid, name=f"c{i}", config=config, state=ContainerState.RUNNING))
            ep = _endpoint(network, cid, i)
            store.add_endpoint(ep)
            store.add_ports(cid, ep.id, (PortBinding(80, Protocol.TCP, 10000 + i),))
            store.add_attachment(f"o{i}", network.id, network.name, f"cni{i}", "eth0", f"/run/netns/{i}")
    store._db.execute("ANALYZE")
    return store, network


def _plans(store: Store, calls: Callable[[], object]) -> dict[str, list[str]]:
    """Every statement the calls made, with its query plan's lines."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    try:
        with store.transaction():
            calls()
            raise _Undo  # the store is the next test's too: nothing is kept
    except _Undo:
        pass
    finally:
        store._db.set_trace_callback(None)
    out = {}
    for sql in seen:
        if sql.split()[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            rows = store._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            out[sql] = [str(r[-1]) for r in rows]
    return out


class _Undo(Exception):
    pass


def _scans(plans: dict[str, list[str]]) -> list[str]:
    return [
        f"{sql}: {line}"
        for sql, lines in plans.items()
        for line in lines
        if line.startswith("SCAN ") and line.split()[1] in BIG
    ]


def _per_container(store: Store, network: Network) -> None:
    """What run -d, rm, the request check and a CNI ADD and DEL ask of the store for one container."""
    i = N // 2
    cid, ep = _cid(i), _endpoint(network, _cid(i), i)
    new = _cid(N + 1)
    # create, start
    store.find_container("c-new")
    store.add_container(Container(id=new, name="c-new", config=ContainerConfig(cmd=("true",))))
    store.get_container(new)
    store.get_container(new[:12])  # a short id
    store.get_network("big")
    store.find_network(network.id)
    store.endpoint_count(network.id)
    store.ip_cursor(network.id)
    store.address_used(network.id, NET.network_address + 5000)
    store.set_ip_cursor(network.id, NET.network_address + 5000)
    store.port_holders(10500, 10600)
    store.port_holders(40000)
    store.update_container(new, state=ContainerState.RUNNING, pid=1, pid_start=1)
    store.pid_start(new)
    # the request check
    store.running_processes(N // 3, 64)
    store.endpoints(state="releasing")
    # rm
    store.endpoints(container_id=cid)
    store.ports(cid)
    store.set_endpoint_state(ep.id, "releasing")
    store.delete_ports(cid, ep.id)
    store.delete_ports(cid)
    store.delete_endpoint(ep.id)
    store.delete_container(cid)
    intent = store.add_intent("start", cid)
    store.done_intent(intent)
    # CNI
    store.find_attachment(f"o{i}")
    store.set_attachment_state(f"o{i}", "added")
    store.delete_attachment(f"o{i}")


def test_no_statement_of_a_container_reads_a_whole_table(filled: tuple[Store, Network]) -> None:
    store, network = filled
    plans = _plans(store, lambda: _per_container(store, network))
    assert len(plans) > 20, sorted(plans)  # the statements were caught
    assert _scans(plans) == []


def test_the_check_finds_a_scan(filled: tuple[Store, Network]) -> None:
    """The test's own check sees a statement that reads every row."""
    store, _ = filled
    plans = _plans(store, store.containers)
    assert any("SCAN containers" in line for line in _scans(plans)), plans


def test_the_indexes_come_to_a_database_made_without_them(tmp_path: Path) -> None:
    """A database of before these indexes gets them when the store opens it."""
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path)
    for name in ("endpoints_state", "ports_host_port"):
        db.execute(f"DROP INDEX {name}")
    db.commit()
    db.close()
    store = Store(path)
    names = {r[0] for r in store._q("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"endpoints_state", "ports_host_port"} <= names
