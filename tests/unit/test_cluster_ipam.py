"""Global IPAM's round trips, against an in-memory etcd that applies txns as etcd does.

What is checked: a claim chosen from the watch's cache costs one txn; a cache
that lagged costs one failed txn whose failure branch says what etcd holds,
never a duplicate; an endpoint's claims and its record go in one txn and
leave in one; publishing a record its claim published is no round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from dockyard.cluster.config import StoreConfig
from dockyard.cluster.ipam import GlobalIpam
from dockyard.cluster.keys import Keys
from dockyard.cluster.networks import Networks
from dockyard.cluster.records import Claim, EndpointRecord, HostRecord, NetworkRecord
from dockyard.cluster.session import HostSession
from dockyard.cluster.view import ClusterView
from dockyard.cluster.wire import KV, Compare, Delete, Event, EventType, Get, Op, Put, RangeResult, TxnResult
from dockyard.errors import Conflict, InvalidArgument
from dockyard.settings import AddressPool

K = Keys("/t/v1/")
NET = NetworkRecord(
    "n" * 64,
    "ov",
    "overlay",
    IPv4Network("10.1.0.0/29"),  # .2-.6 usable: .1 is the gateway, .7 the broadcast
    IPv4Address("10.1.0.1"),
    revision=2,
    subnet6=IPv6Network("fd00:1::/120"),
    gateway6=IPv6Address("fd00:1::1"),
)


@dataclass
class FakeEtcd:
    """Keys, revisions, leases and txn conditions as etcd keeps them; every request counted.
    events: what a watch would have delivered, in order (fed to views when a test says)."""

    kvs: dict[str, KV] = field(default_factory=dict)
    revision: int = 1
    requests: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    config: StoreConfig = field(default_factory=lambda: StoreConfig.parse("etcd://192.0.2.1"))

    def _holds(self, c: Compare) -> bool:
        kv = self.kvs.get(c.key)
        have: int | bytes
        if c.target == "VALUE":
            have = kv.value if kv else b""
        else:
            attr = {"CREATE": "create_revision", "MOD": "mod_revision", "LEASE": "lease"}[c.target]
            have = getattr(kv, attr) if kv else 0
        assert c.result == "EQUAL" or c.target != "VALUE"
        return {
            "EQUAL": have == c.value,
            "GREATER": have > c.value,  # type: ignore[operator]
            "LESS": have < c.value,  # type: ignore[operator]
        }[c.result]

    def _in(self, op: Get | Delete) -> list[str]:
        if op.range_end is None:
            return [op.key] if op.key in self.kvs else []
        return sorted(k for k in self.kvs if op.key <= k < op.range_end)

    def _apply(self, ops: Sequence[Op]) -> list[list[KV]]:
        ranges = []
        changed = False
        for op in ops:
            if isinstance(op, Get):
                ranges.append([self.kvs[k] for k in self._in(op)])
                continue
            if not changed:
                self.revision += 1
                changed = True
            if isinstance(op, Put):
                old = self.kvs.get(op.key)
                created = old.create_revision if old else self.revision
                kv = KV(op.key, op.value, created, self.revision, 1, op.lease)
                self.kvs[op.key] = kv
                self.events.append(Event(EventType.PUT, kv))
            else:
                for k in self._in(op):
                    del self.kvs[k]
                    self.events.append(Event(EventType.DELETE, KV(k, b"", 0, self.revision)))
        return ranges

    def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        self.requests.append("txn")
        ok = all(self._holds(c) for c in compare)
        ranges = self._apply(success if ok else failure)
        return TxnResult(ok, self.revision, ranges)

    def range(self, key: str, range_end: str | None = None) -> RangeResult:
        self.requests.append("range")
        kvs = [self.kvs[k] for k in self._in(Get(key, range_end))]
        return RangeResult(self.revision, kvs, len(kvs))

    def prefix(self, prefix: str) -> RangeResult:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return self.range(prefix, end)

    def get(self, key: str) -> KV | None:
        kvs = self.range(key).kvs
        return kvs[0] if kvs else None

    def delete(self, key: str, range_end: str | None = None) -> int:
        self.requests.append("delete")
        gone = self._in(Delete(key, range_end))
        self._apply([Delete(key, range_end)])
        return len(gone)


class Host:
    """One host's session (lease 7 + its index), view and IPAM over the shared fake etcd."""

    def __init__(self, etcd: FakeEtcd, name: str, index: int) -> None:
        self.etcd = etcd
        self.record = HostRecord(name, IPv4Address(f"192.0.2.{11 + index}"))
        self.session = HostSession(etcd, K, self.record)  # type: ignore[arg-type]
        self.session.lease = 7 + index
        self.session._confirmed = time.monotonic()
        etcd._apply([Put(K.host(name), self.record.encode(), self.session.lease)])
        self.view = ClusterView(K, name)
        self.ipam = GlobalIpam(etcd, K, self.session, self.view)  # type: ignore[arg-type]
        self.heard = 0  # how many of etcd's events this host's view has applied

    def hear(self) -> None:
        """The watch delivers everything up to now."""
        if not self.view.ready.is_set():
            self.view.reset(list(self.etcd.kvs.values()), self.etcd.revision)
        else:
            self.view.apply(self.etcd.events[self.heard :])
        self.heard = len(self.etcd.events)

    def endpoint(self, eid: str, a4: IPv4Address, a6: IPv6Address | None) -> EndpointRecord:
        mac = "02:42:" + ":".join(f"{b:02x}" for b in a4.packed)
        return EndpointRecord(NET.id, eid, self.record.id, self.record.vtep, mac, a4, "c" * 64, "web", (), a6)


@pytest.fixture
def etcd() -> FakeEtcd:
    e = FakeEtcd()
    e._apply([Put(K.network(NET.id), NET.encode())])
    assert e.kvs[K.network(NET.id)].create_revision == NET.revision
    return e


def test_a_claim_chosen_from_the_cache_is_one_txn_and_follows_the_cursor(etcd: FakeEtcd) -> None:
    h1 = Host(etcd, "h1", 0)
    h1.hear()
    etcd.requests.clear()
    assert h1.ipam.claim(NET, "e1") == IPv4Address("10.1.0.2")
    assert etcd.requests == ["txn"]
    # Not heard yet by the view: this host's own last claim is not tried again.
    assert h1.ipam.claim(NET, "e2") == IPv4Address("10.1.0.3")
    assert etcd.requests == ["txn", "txn"]
    # A release: next-fit goes on after the cursor, the released address only after the rest.
    assert h1.ipam.release(NET.id, IPv4Address("10.1.0.2"), "e1")
    h1.hear()
    assert [h1.ipam.claim(NET, f"e{i}") for i in range(3, 7)] == [
        IPv4Address(a) for a in ("10.1.0.4", "10.1.0.5", "10.1.0.6", "10.1.0.2")
    ]
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        h1.ipam.claim(NET, "e7")


def test_a_cache_behind_costs_one_failed_txn_and_never_a_duplicate(etcd: FakeEtcd) -> None:
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    h1.hear()
    h2.hear()
    # Host 2 claims three addresses that host 1's watch has not delivered yet.
    got2 = [h2.ipam.claim(NET, f"b{i}") for i in range(3)]
    etcd.requests.clear()
    got1 = h1.ipam.claim(NET, "a0")
    # The first txn tried a taken address and brought back what etcd holds; the second won.
    assert etcd.requests == ["txn", "txn"]
    assert got1 not in got2 and got1 == IPv4Address("10.1.0.5")
    # Without a view (before the first listing): one read, then the claim.
    h3 = Host(etcd, "h3", 2)
    etcd.requests.clear()
    assert h3.ipam.claim(NET, "c0") == IPv4Address("10.1.0.6")
    assert etcd.requests == ["txn", "txn"]  # the read is a txn of Gets, then the claim
    held = {a: c.endpoint_id for a, c in h1.ipam.claims(NET.id).items()}
    assert sorted(held.values()) == ["a0", "b0", "b1", "b2", "c0"] and len(set(held)) == 5


def test_an_address_asked_for_and_taken_is_refused_by_the_claims_txn(etcd: FakeEtcd) -> None:
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    h1.hear()
    h2.ipam.claim(NET, "b0", IPv4Address("10.1.0.4"))
    with pytest.raises(Conflict, match=r"10\.1\.0\.4 is already in use"):
        h1.ipam.claim(NET, "a0", IPv4Address("10.1.0.4"))
    assert h1.ipam.holder(NET.id, IPv4Address("10.1.0.4")) == Claim("h2", "b0")


def test_claims_of_both_families_and_the_record_go_in_one_txn(etcd: FakeEtcd) -> None:
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    h1.hear()
    h2.hear()
    h2.ipam.claim(NET, "b0")  # h1's view has not heard: its first candidate is taken
    etcd.requests.clear()
    a4, a6 = h1.ipam.claim_endpoint(NET, "e1", None, None, lambda a, b: h1.endpoint("e1", a, b))
    assert (a4, a6) == (IPv4Address("10.1.0.3"), IPv6Address("fd00:1::2"))
    assert etcd.requests == ["txn", "txn"]
    record = etcd.kvs[K.endpoint(NET.id, "e1")]
    assert EndpointRecord.decode(record.value) == h1.endpoint("e1", a4, a6)
    assert record.lease == h1.session.lease
    assert {a: c.endpoint_id for a, c in h1.ipam.claims(NET.id).items()} == {
        IPv4Address("10.1.0.2"): "b0",
        a4: "e1",
        a6: "e1",
    }
    # Publishing the very record again is no round trip; a changed one is.
    etcd.requests.clear()
    h1.session.publish(h1.endpoint("e1", a4, a6))
    assert etcd.requests == [] and h1.session.published() == [h1.endpoint("e1", a4, a6)]
    # An IPv6 address asked for that is taken: nothing of the txn is made.
    with pytest.raises(Conflict, match="fd00:1::2 is already in use"):
        h2.ipam.claim_endpoint(NET, "b1", None, a6, lambda a, b: h2.endpoint("b1", a, b))
    assert K.endpoint(NET.id, "b1") not in etcd.kvs
    assert "b1" not in {c.endpoint_id for c in h1.ipam.claims(NET.id).values()}


def test_a_release_frees_the_claim_and_the_record_in_one_txn_and_never_anothers(etcd: FakeEtcd) -> None:
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    h1.hear()
    a4, _ = h1.ipam.claim_endpoint(NET, "e1", None, None, lambda a, b: h1.endpoint("e1", a, b))
    # withdraw before a release: no round trip; the release deletes the record with the claim.
    etcd.requests.clear()
    h1.session.forget(NET.id, "e1")
    assert h1.session.published() == [] and etcd.requests == []
    assert h1.ipam.release(NET.id, a4, "e1")
    assert etcd.requests == ["txn"]
    assert K.endpoint(NET.id, "e1") not in etcd.kvs and K.claim(NET.id, a4) not in etcd.kvs
    assert h1.session._stale == set(), "nothing left for the keep-alive thread to delete"
    # A claim that is not (or no longer) this endpoint's stays; its record goes all the same.
    b4 = h2.ipam.claim(NET, "b0")
    etcd._apply([Put(K.endpoint(NET.id, "e2"), b"{}", h1.session.lease)])
    assert not h1.ipam.release(NET.id, b4, "e2")
    assert not h1.ipam.release(NET.id, b4, "b0"), "host 1 frees nothing of host 2's"
    assert h1.ipam.holder(NET.id, b4) == Claim("h2", "b0")
    assert K.endpoint(NET.id, "e2") not in etcd.kvs
    # A claim of this endpoint's in another form (a newer daemon's, a field more) is freed too.
    other = K.claim(NET.id, "10.1.0.6")
    etcd._apply([Put(other, b'{"endpoint":"e3","host":"h1","zone":"b"}')])
    assert h1.ipam.release(NET.id, IPv4Address("10.1.0.6"), "e3") and other not in etcd.kvs


def test_the_view_keeps_claims_and_cursors_through_events_and_listings(etcd: FakeEtcd) -> None:
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    assert h1.view.claimed(NET.id, 4) is None  # before the first listing
    h1.hear()
    a4, a6 = h2.ipam.claim_endpoint(NET, "b0", None, None, None)
    h1.hear()
    seen4, seen6 = h1.view.claimed(NET.id, 4), h1.view.claimed(NET.id, 6)
    assert seen4 is not None and seen6 is not None
    assert (seen4.used, seen4.cursor) == ({a4}, a4) and (seen6.used, seen6.cursor) == ({a6}, a6)
    h2.ipam.release(NET.id, a4, "b0")
    h1.hear()
    assert h1.view.claimed(NET.id, 4).used == frozenset()  # type: ignore[union-attr]
    # A full listing replaces what the events made.
    h1.view.reset(list(etcd.kvs.values()), etcd.revision)
    again = h1.view.claimed(NET.id, 6)
    assert again is not None and again.used == {a6} and h1.view.claimed(NET.id, 4).cursor == a4  # type: ignore[union-attr]


NET6 = NetworkRecord(
    "6" * 64,
    "ov6only",
    "overlay",
    None,
    None,
    revision=0,
    subnet6=IPv6Network("fd00:6::/125"),  # ::2-::7 usable: ::1 is the gateway
    gateway6=IPv6Address("fd00:6::1"),
)


def test_an_ipv6_only_networks_endpoint_claims_its_ipv6_address_alone_in_one_txn(etcd: FakeEtcd) -> None:
    etcd._apply([Put(K.network(NET6.id), NET6.encode())])
    net = NetworkRecord.decode(
        etcd.kvs[K.network(NET6.id)].value, etcd.kvs[K.network(NET6.id)].create_revision
    )
    h1, h2 = Host(etcd, "h1", 0), Host(etcd, "h2", 1)
    h1.hear()
    h2.hear()

    def record(h: Host, eid: str, a4: IPv4Address | None, a6: IPv6Address | None) -> EndpointRecord:
        assert a4 is None and a6 is not None
        return EndpointRecord(
            net.id, eid, h.record.id, h.record.vtep, "02:42:00:00:00:0" + eid[-1], None, address6=a6
        )

    # Host 2 claims first; host 1's view has not heard: its first candidate is taken.
    b = h2.ipam.claim_endpoint(net, "b1", None, None, lambda a, c: record(h2, "b1", a, c))
    assert b == (None, IPv6Address("fd00:6::2"))
    etcd.requests.clear()
    a = h1.ipam.claim_endpoint(net, "e1", None, None, lambda x, c: record(h1, "e1", x, c))
    assert a == (None, IPv6Address("fd00:6::3")) and etcd.requests == ["txn", "txn"]
    published = EndpointRecord.decode(etcd.kvs[K.endpoint(net.id, "e1")].value)
    assert published == record(h1, "e1", None, a[1]) and published.address is None
    assert {x: c.endpoint_id for x, c in h1.ipam.claims(net.id).items()} == {b[1]: "b1", a[1]: "e1"}
    assert K.cursor(net.id) not in etcd.kvs  # no IPv4 cursor: no IPv4 claim was made
    # Publishing it again checks its one claim; IPv4 asked for is refused by name, nothing claimed.
    etcd.requests.clear()
    h1.session.forget(net.id, "e1")
    h1.session.publish(record(h1, "e1", None, a[1]))
    assert etcd.requests == ["txn"]
    for call in (
        lambda: h1.ipam.claim_endpoint(net, "e2", IPv4Address("10.1.0.2"), None, None),
        lambda: h1.ipam.claim(net, "e2"),
    ):
        with pytest.raises(Conflict, match="IPv6-only"):
            call()
    # Concurrent claims never share an address, until the subnet is full.
    got = [
        h.ipam.claim_endpoint(net, f"{h.record.id}-{i}", None, None, None)[1]
        for i in range(2)
        for h in (h1, h2)
    ]
    assert len({b[1], a[1], *got}) == 6
    with pytest.raises(Conflict, match="no available"):
        h2.ipam.claim_endpoint(net, "full", None, None, None)
    # Released with its record in one txn, as a dual-stack one.
    assert h1.ipam.release(net.id, a[1], "e1") and K.endpoint(net.id, "e1") not in etcd.kvs


def test_an_ipv6_only_network_is_made_without_ipv4_and_beside_others(etcd: FakeEtcd) -> None:
    nets = Networks(etcd, K, "h1")  # type: ignore[arg-type]
    v6 = nets.create("v6", ipv4=False, ipv6=True, subnet6=IPv6Network("fd00:7::/64"))
    assert (v6.subnet, v6.gateway, v6.gateway6) == (None, None, IPv6Address("fd00:7::1"))
    stored = json.loads(etcd.kvs[K.network(v6.id)].value)
    assert "subnet" not in stored and "gateway" not in stored and stored["subnet6"] == "fd00:7::/64"
    assert nets.find("v6") == v6
    # An IPv4 network made after it chooses its subnet past the others' (it has none), gets a
    # VXLAN id of its own, and the IPv6-only one's subnet is taken for IPv6.
    v4 = nets.create("v4", pools=(AddressPool(IPv4Network("10.1.0.0/16"), 24),))
    assert v4.subnet == IPv4Network("10.1.1.0/24") and v4.vni != v6.vni
    with pytest.raises(Conflict, match="fd00:7::/64"):
        nets.create("v6b", ipv4=False, ipv6=True, subnet6=IPv6Network("fd00:7::/80"))
    for kw, words in (
        ({}, "--ipv4=false needs --ipv6"),
        ({"ipv6": True, "subnet": IPv4Network("10.9.0.0/24")}, "IPv4 subnet 10.9.0.0/24 given"),
        ({"ipv6": True, "gateway": IPv4Address("10.9.0.1")}, "IPv4 gateway 10.9.0.1 given"),
    ):
        with pytest.raises(InvalidArgument, match=words):
            nets.create("bad", ipv4=False, pools6=(), **kw)  # type: ignore[arg-type]
    assert {n.name for n in nets.list()} == {"ov", "v6", "v4"}
