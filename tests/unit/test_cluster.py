"""The cluster module's pure parts, without etcd: the store's URL, the key layout, the
records, the watch stream's HTTP reading, and the view's callbacks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from dockyard.cluster.config import StoreConfig
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, EndpointRecord, HostRecord, NetworkRecord, RecordError
from dockyard.cluster.stream import StreamEnded, WatchStream
from dockyard.cluster.view import ClusterListener, ClusterView
from dockyard.cluster.wire import KV, Event, EventType, b64, prefix_end
from dockyard.errors import InvalidArgument

# -- the store's URL ---------------------------------------------------------------------------


def test_a_store_url_names_every_endpoint() -> None:
    c = StoreConfig.parse("etcd://192.0.2.11:2379,etcd.example:2380,192.0.2.13")
    assert c.endpoints == (("192.0.2.11", 2379), ("etcd.example", 2380), ("192.0.2.13", 2379))
    assert c.tls is None and c.username is None
    assert c.describe() == "192.0.2.11:2379,etcd.example:2380,192.0.2.13:2379"
    tls = StoreConfig.parse("etcd://h:1", ca="/ca", cert="/c", key="/k", username="u", password="p")
    assert tls.tls is not None and str(tls.tls.cert) == "/c" and tls.username == "u"


@pytest.mark.parametrize(
    ("url", "kw", "message"),
    [
        ("http://h:2379", {}, "expected etcd://"),
        ("etcd://", {}, "bad endpoint ''"),
        ("etcd://h:0", {}, "bad endpoint 'h:0'"),
        ("etcd://h:99999", {}, "bad endpoint"),
        ("etcd://h:x", {}, "bad endpoint"),
        ("etcd://u@h:1", {}, "bad endpoint"),
        ("etcd://h:1,,h:2", {}, "bad endpoint ''"),
        ("etcd://h:1", {"cert": "/c"}, "both its certificate and its key"),
        ("etcd://h:1", {"password": "p"}, "needs a user name"),
    ],
)
def test_a_bad_store_url_is_refused_in_one_line(url: str, kw: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as e:
        StoreConfig.parse(url, **kw)
    assert "\n" not in str(e.value)


# -- keys and records ----------------------------------------------------------------------------


def test_the_key_layout() -> None:
    k = Keys("/dockyard/v1/")
    assert k.network("n1") == "/dockyard/v1/networks/n1"
    assert k.claim("n1", IPv4Address("10.0.0.2")) == "/dockyard/v1/ipam/n1/10.0.0.2"
    assert k.endpoint("n1", "e1") == "/dockyard/v1/endpoints/n1/e1"
    assert k.host("h1") == "/dockyard/v1/hosts/h1"
    assert k.prefix(Kind.CLAIM, "n1") == "/dockyard/v1/ipam/n1/"
    assert k.all == ("/dockyard/v1/", "/dockyard/v10")
    for key in (k.network("n"), k.claim("n", "10.0.0.2"), k.endpoint("n", "e"), k.grace("h")):
        parsed = k.parse(key)
        assert parsed is not None and key.endswith("/".join(parsed.parts))
    assert k.parse("/dockyard/v2/hosts/h") is None
    assert k.parse("/dockyard/v1/nothing/x") is None
    assert k.parse("/dockyard/v1/ipam/n") is None  # a claim names its address
    with pytest.raises(ValueError):
        k.endpoint("n", "a/b")


def test_prefix_end_covers_exactly_the_prefix() -> None:
    end = prefix_end("/a/b/")
    assert "/a/b/" <= "/a/b/zzz" < end and not ("/a/b/" <= "/a/c" < end)


def _net() -> NetworkRecord:
    return NetworkRecord("n" * 64, "ov", "overlay", IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.1"))


def _net6_only() -> NetworkRecord:
    """_net() as an IPv6-only network (--ipv4=false)."""
    return replace(
        _net(),
        subnet=None,
        gateway=None,
        subnet6=IPv6Network("fd00:21::/64"),
        gateway6=IPv6Address("fd00:21::1"),
    )


# The VTEPs of the hosts the tests name ("me" and "h2", as their host records say).
VTEPS = {"me": IPv4Address("192.0.2.11"), "h2": IPv4Address("192.0.2.12")}


def _ep(ep_id: str, host: str, mac: str, addr: str, name: str = "") -> EndpointRecord:
    vtep = VTEPS.get(host, IPv4Address("192.0.2.9"))
    return EndpointRecord("n" * 64, ep_id, host, vtep, mac, IPv4Address(addr), "c" * 64, name, ("alias",))


def test_records_go_through_json_and_refuse_what_they_are_not() -> None:
    net = _net()
    assert NetworkRecord.decode(net.encode()) == net
    ep = _ep("e1", "h1", "02:42:0a:01:00:02", "10.1.0.2", "Web")
    assert EndpointRecord.decode(ep.encode()) == ep
    assert ep.dns_names == ("web", "alias", "c" * 12)
    host = HostRecord("h1", IPv4Address("192.0.2.11"), "node1")
    assert HostRecord.decode(host.encode()) == host
    assert Claim.decode(Claim("h1", "e1").encode()) == Claim("h1", "e1")
    # A newer daemon's extra field is ignored; a missing one is an error, never a crash.
    extra = json.loads(host.encode()) | {"zone": "b"}
    assert HostRecord.decode(json.dumps(extra).encode()) == host
    for bad in (b"", b"[]", b'{"id": "h"}', b'{"id": "h", "vtep": "not an address"}'):
        with pytest.raises(RecordError):
            HostRecord.decode(bad)


# What the previous version (IPv4 only) wrote for _net() and _ep("e1", ...): its reader knows only these.
PREVIOUS_NET = (
    b'{"attachable":false,"created_by":"","driver":"overlay","gateway":"10.1.0.1","id":"'
    + b"n" * 64
    + b'","internal":false,"labels":{},"mtu":null,"name":"ov","subnet":"10.1.0.0/24","vni":0}'
)
PREVIOUS_EP = (
    b'{"address":"10.1.0.2","aliases":["alias"],"container_id":"'
    + b"c" * 64
    + b'","host_id":"h1","id":"e1","mac":"02:42:0a:01:00:02","name":"Web","network_id":"'
    + b"n" * 64
    + b'","vtep":"192.0.2.9"}'
)


def test_dual_stack_records_are_the_previous_format_plus_optional_fields() -> None:
    net, ep = _net(), _ep("e1", "h1", "02:42:0a:01:00:02", "10.1.0.2", "Web")
    # IPv4 only: byte for byte what the previous version wrote, and read back the same.
    assert net.encode() == PREVIOUS_NET and ep.encode() == PREVIOUS_EP
    assert NetworkRecord.decode(PREVIOUS_NET) == net and NetworkRecord.decode(PREVIOUS_NET).subnet6 is None
    assert EndpointRecord.decode(PREVIOUS_EP) == ep and EndpointRecord.decode(PREVIOUS_EP).address6 is None
    # Dual stack: the same fields plus the IPv6 ones (a previous reader ignores fields it does
    # not know: it sees the IPv4 network and endpoint), and a round trip keeps them.
    net6 = replace(net, subnet6=IPv6Network("fd00:20::/64"), gateway6=IPv6Address("fd00:20::1"))
    ep6 = replace(ep, address6=IPv6Address("fd00:20::2"))
    assert NetworkRecord.decode(net6.encode()) == net6 and EndpointRecord.decode(ep6.encode()) == ep6
    wire_net, wire_ep = json.loads(net6.encode()), json.loads(ep6.encode())
    assert (wire_net.pop("subnet6"), wire_net.pop("gateway6")) == ("fd00:20::/64", "fd00:20::1")
    assert wire_ep.pop("address6") == "fd00:20::2"
    assert wire_net == json.loads(PREVIOUS_NET) and wire_ep == json.loads(PREVIOUS_EP)
    with pytest.raises(RecordError):
        NetworkRecord.decode(json.dumps(json.loads(net6.encode()) | {"subnet6": "10.0.0.0/8"}).encode())


def test_ipv6_only_records_carry_no_ipv4_field_and_an_old_reader_skips_them() -> None:
    net = _net6_only()
    ep = replace(
        _ep("e1", "h1", "02:42:0a:01:00:02", "10.1.0.2", "Web"),
        address=None,
        address6=IPv6Address("fd00:21::2"),
    )
    assert NetworkRecord.decode(net.encode(), 7) == replace(net, revision=7)
    assert EndpointRecord.decode(ep.encode()) == ep and ep.addresses == (IPv6Address("fd00:21::2"),)
    wire_net, wire_ep = json.loads(net.encode()), json.loads(ep.encode())
    # Absent, not null: the previous version's reader finds a field it needs missing and skips
    # the record (RecordError), so it never takes an IPv6-only network for an IPv4 one.
    assert "subnet" not in wire_net and "gateway" not in wire_net and "address" not in wire_ep
    assert (wire_net["subnet6"], wire_net["gateway6"], wire_ep["address6"]) == (
        "fd00:21::/64",
        "fd00:21::1",
        "fd00:21::2",
    )
    # A dual-stack endpoint lists both addresses, IPv4's first (its claims, in that order).
    dual = replace(ep, address=IPv4Address("10.1.0.2"))
    assert dual.addresses == (IPv4Address("10.1.0.2"), IPv6Address("fd00:21::2"))
    # A record with neither family is no record.
    for raw in (
        json.dumps({k: v for k, v in wire_net.items() if k not in ("subnet6", "gateway6")}).encode(),
        json.dumps(wire_net | {"subnet6": None}).encode(),
    ):
        with pytest.raises(RecordError, match="neither"):
            NetworkRecord.decode(raw)
    with pytest.raises(RecordError, match="neither"):
        EndpointRecord.decode(json.dumps({k: v for k, v in wire_ep.items() if k != "address6"}).encode())
    with pytest.raises(RecordError):
        EndpointRecord.decode(json.dumps(wire_ep | {"address": None}).encode())


def test_the_view_of_an_ipv6_only_network_has_ipv6_neighbours_alone() -> None:
    view = ClusterView(K, "me", ClusterListener())
    net = _net6_only()
    b, a = (
        replace(_ep(i, "h2", mac, "10.1.0.9", "db"), address=None, address6=IPv6Address(addr))
        for i, mac, addr in (
            ("e2", "02:00:00:00:00:02", "fd00:21::b"),
            ("e3", "02:00:00:00:00:03", "fd00:21::a"),
        )
    )
    view.reset(
        [
            _kv(K.network(net.id), net.encode(), 2),
            _kv(K.endpoint(net.id, b.id), b.encode(), 3),
            _kv(K.endpoint(net.id, a.id), a.encode(), 4),
            _kv(K.claim(net.id, "fd00:21::b"), Claim("h2", b.id).encode(), 3),
        ],
        4,
    )
    assert view.network(net.id) == replace(net, revision=2)
    assert view.neighbours(net.id) == {IPv6Address("fd00:21::b"): b.mac, IPv6Address("fd00:21::a"): a.mac}
    assert view.entries(net.id, [a.mac], [IPv6Address("fd00:21::a")]) == (
        {a.mac: a.vtep},
        {IPv6Address("fd00:21::a"): a.mac},
    )
    assert view.endpoints(net.id) == [a, b]  # by IPv6 address where there is no IPv4 one
    assert view.resolve(net.id, "db") == []  # IPv4 answers only: none here
    claimed = view.claimed(net.id, 6)
    assert claimed is not None and claimed.used == {IPv6Address("fd00:21::b")}
    assert view.claimed(net.id, 4) == replace(claimed, used=frozenset())


def test_the_view_programs_ipv6_neighbours_beside_ipv4_ones() -> None:
    view = ClusterView(K, "me", ClusterListener())
    net = _net()
    theirs = replace(_ep("e2", "h2", "02:00:00:00:00:02", "10.1.0.3"), address6=IPv6Address("fd00:20::3"))
    v4only = _ep("e3", "h2", "02:00:00:00:00:03", "10.1.0.4")
    view.reset(
        [
            _kv(K.network(net.id), net.encode(), 2),
            _kv(K.endpoint(net.id, theirs.id), theirs.encode(), 3),
            _kv(K.endpoint(net.id, v4only.id), v4only.encode(), 4),
        ],
        4,
    )
    assert view.neighbours(net.id) == {
        IPv4Address("10.1.0.3"): theirs.mac,
        IPv6Address("fd00:20::3"): theirs.mac,
        IPv4Address("10.1.0.4"): v4only.mac,
    }
    # Claims of both families live under the network's claim prefix; the IPv6 cursor is its own.
    assert K.claim(net.id, IPv6Address("fd00:20::3")).startswith(K.prefix(Kind.CLAIM, net.id))
    assert K.cursor(net.id, 6) != K.cursor(net.id) and K.parse(K.cursor(net.id, 6)) is not None


# -- the watch stream's bytes -------------------------------------------------------------------------


def _stream_over(payload: bytes, pieces: int) -> tuple[WatchStream, socket.socket]:
    """A WatchStream reading `payload` written in `pieces` odd-sized writes by a thread."""
    ours, theirs = socket.socketpair()
    stream = WatchStream(ours, "test")

    def send() -> None:
        step = max(1, len(payload) // pieces)
        try:
            for i in range(0, len(payload), step):
                theirs.sendall(payload[i : i + step])
        except OSError:
            return  # the test closed its end once it had read what it needed (an error, say)

    # A daemon thread: it may still be writing while the test reads (the buffer is small).
    threading.Thread(target=send, daemon=True).start()
    stream._read_head(deadline=time.monotonic() + 5)
    return stream, theirs


def _chunked(messages: list[dict], chunk: int) -> bytes:
    body = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    out = b""
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("chunk", "pieces"), [(1, 500), (7, 13), (1000, 1), (33, 250)])
def test_watch_messages_are_read_across_any_chunking(chunk: int, pieces: int) -> None:
    messages = [{"result": {"created": True}}] + [
        {"result": {"events": [{"kv": {"key": b64(f"/k{i}"), "mod_revision": str(i + 2)}}]}} for i in range(5)
    ]
    stream, theirs = _stream_over(HEAD + _chunked(messages, chunk), pieces)
    got = [stream.next(2.0) for _ in messages]
    assert got == [m["result"] for m in messages]
    # Nothing more: a wait that times out changes nothing ...
    assert stream.next(0.05) is None
    # ... and the stream goes on from where it was, mid-chunk included.
    more = _chunked([{"result": {"header": {"revision": "9"}}}], 5)
    theirs.sendall(more[:4])
    assert stream.next(0.05) is None
    theirs.sendall(more[4:] + b"0\r\n\r\n")
    assert stream.next(2.0) == {"header": {"revision": "9"}}
    with pytest.raises(StreamEnded, match="closed the watch"):
        stream.next(1.0)
    stream.close()
    theirs.close()


def test_a_watch_error_or_a_refusal_ends_the_stream() -> None:
    err = {"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}
    stream, theirs = _stream_over(HEAD + _chunked([err], 10), 3)
    with pytest.raises(StreamEnded, match="no leader"):
        stream.next(1.0)
    stream.close()
    theirs.close()
    with pytest.raises(StreamEnded, match="503"):
        _stream_over(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}", 1)


def test_a_peer_that_closes_mid_message_ends_the_stream() -> None:
    stream, theirs = _stream_over(HEAD + _chunked([{"result": {"created": True}}], 100)[:-7], 1)
    theirs.close()
    with pytest.raises(StreamEnded):
        stream.next(1.0)
    stream.close()


# -- the view -------------------------------------------------------------------------------------------


class Calls(ClusterListener):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def network_added(self, network: NetworkRecord) -> None:
        self.calls.append(("net+", network.name))

    def network_removed(self, network: NetworkRecord) -> None:
        self.calls.append(("net-", network.name))

    def host_added(self, host: HostRecord) -> None:
        self.calls.append(("host+", host.id))

    def host_removed(self, host: HostRecord) -> None:
        self.calls.append(("host-", host.id))

    def endpoint_added(self, ep: EndpointRecord) -> None:
        self.calls.append(("ep+", ep.id))

    def endpoint_updated(self, old: EndpointRecord, new: EndpointRecord) -> None:
        self.calls.append(("ep~", new.id, str(old.address), str(new.address)))

    def endpoint_removed(self, ep: EndpointRecord, successor: EndpointRecord | None) -> None:
        self.calls.append(("ep-", ep.id, successor.id if successor else None))


K = Keys("/t/v1/")


def _kv(key: str, value: bytes, rev: int, created: int | None = None) -> KV:
    return KV(key, value, created or rev, rev)


def _put(key: str, value: bytes, rev: int, created: int | None = None) -> Event:
    return Event(EventType.PUT, _kv(key, value, rev, created))


def _del(key: str, rev: int) -> Event:
    return Event(EventType.DELETE, KV(key, b"", 0, rev))


def test_the_view_tells_the_driver_about_other_hosts_only() -> None:
    calls = Calls()
    kicks: list[int] = []
    view = ClusterView(K, "me", calls, on_host_gone=lambda: kicks.append(1))
    net = _net()
    mine = _ep("e-mine", "me", "02:00:00:00:00:01", "10.1.0.2")
    theirs = _ep("e-theirs", "h2", "02:00:00:00:00:02", "10.1.0.3", "db")
    view.reset(
        [
            _kv(K.network(net.id), net.encode(), 2),
            _kv(K.host("me"), HostRecord("me", IPv4Address("192.0.2.11")).encode(), 3),
            _kv(K.host("h2"), HostRecord("h2", IPv4Address("192.0.2.12")).encode(), 4),
            _kv(K.endpoint(net.id, mine.id), mine.encode(), 5),
            _kv(K.endpoint(net.id, theirs.id), theirs.encode(), 6),
            _kv(K.claim(net.id, "10.1.0.3"), Claim("h2", theirs.id).encode(), 6),
        ],
        6,
    )
    assert view.ready.is_set() and view.revision == 6
    assert sorted(calls.calls) == sorted([("net+", "ov"), ("host+", "h2"), ("ep+", "e-theirs")])
    assert view.endpoints(net.id) == [theirs]
    assert len(view.endpoints(net.id, remote_only=False)) == 2
    assert view.resolve(net.id, "DB.") == [IPv4Address("10.1.0.3")] and view.resolve(net.id, "alias") == [
        IPv4Address("10.1.0.3")
    ]
    assert view.vteps() == {IPv4Address("192.0.2.12")}
    assert view.network("ov") == view.network(net.id) and view.network("ov") is not None

    # The same listing again tells nothing; an event already applied is the watch's to skip.
    calls.calls.clear()
    view.reset(
        [
            _kv(K.network(net.id), net.encode(), 2),
            _kv(K.host("h2"), HostRecord("h2", IPv4Address("192.0.2.12")).encode(), 4),
            _kv(K.host("me"), HostRecord("me", IPv4Address("192.0.2.11")).encode(), 3),
            _kv(K.endpoint(net.id, mine.id), mine.encode(), 5),
            _kv(K.endpoint(net.id, theirs.id), theirs.encode(), 6),
        ],
        7,
    )
    assert calls.calls == [] and kicks == []

    # A MAC moves host: the new endpoint is published before the old host's lease expires.
    moved = _ep("e-moved", "h3", theirs.mac, "10.1.0.4")
    view.apply([_put(K.endpoint(net.id, moved.id), moved.encode(), 8)])
    assert view.fdb(net.id) == {theirs.mac: moved.vtep}
    assert view.neighbours(net.id) == {
        IPv4Address("10.1.0.3"): theirs.mac,
        IPv4Address("10.1.0.4"): theirs.mac,
    }
    view.apply([_del(K.endpoint(net.id, theirs.id), 9), _del(K.host("h2"), 9)])
    assert calls.calls == [("ep+", "e-moved"), ("ep-", "e-theirs", "e-moved"), ("host-", "h2")]
    assert kicks == [1] and view.revision == 9

    # An update of the same endpoint; a record that is not one is skipped, never fatal.
    calls.calls.clear()
    readdressed = _ep("e-moved", "h3", theirs.mac, "10.1.0.9")
    view.apply(
        [
            _put(K.endpoint(net.id, moved.id), readdressed.encode(), 10, created=8),
            _put(K.endpoint(net.id, "junk"), b"{not json", 11),
            _del(K.grace("h2"), 12),
        ]
    )
    assert calls.calls == [("ep~", "e-moved", "10.1.0.4", "10.1.0.9")]
    assert kicks == [1, 1]

    # A resync that finds the endpoint and the network gone tells both.
    calls.calls.clear()
    view.reset([_kv(K.host("me"), HostRecord("me", IPv4Address("192.0.2.11")).encode(), 3)], 20)
    assert sorted(calls.calls, key=str) == sorted([("ep-", "e-moved", None), ("net-", "ov")], key=str)


def test_an_event_is_programmed_from_the_entries_of_its_endpoints_keys_alone() -> None:
    """What the driver asks for one endpoint's news: its MAC's and addresses' entries as the whole
    tables have them (the newest holder after a move; none once no remote endpoint holds one)."""
    view = ClusterView(K, "me", ClusterListener())
    net = _net()
    old = replace(_ep("e-old", "h2", "02:00:00:00:00:02", "10.1.0.3"), address6=IPv6Address("fd00:20::3"))
    other = _ep("e-other", "h2", "02:00:00:00:00:05", "10.1.0.5")
    mine = _ep("e-mine", "me", "02:00:00:00:00:06", "10.1.0.6")
    view.reset(
        [
            _kv(K.network(net.id), net.encode(), 2),
            _kv(K.endpoint(net.id, old.id), old.encode(), 3),
            _kv(K.endpoint(net.id, other.id), other.encode(), 4),
            _kv(K.endpoint(net.id, mine.id), mine.encode(), 5),
        ],
        5,
    )
    keys = (
        {old.mac, mine.mac},
        {old.address, IPv6Address("fd00:20::3"), IPv4Address("10.1.0.4"), mine.address},
    )

    def restricted() -> tuple[dict, dict]:
        fdb, neighbours = view.fdb(net.id), view.neighbours(net.id)
        return {m: fdb[m] for m in keys[0] if m in fdb}, {
            a: neighbours[a] for a in keys[1] if a in neighbours
        }

    assert (
        view.entries(net.id, *keys)
        == restricted()
        == (
            {old.mac: old.vtep},
            {old.address: old.mac, IPv6Address("fd00:20::3"): old.mac},
        )
    )
    # The MAC moves to host 3 with a new address; the old endpoint goes after.
    moved = replace(_ep("e-moved", "h3", old.mac, "10.1.0.4"), vtep=IPv4Address("192.0.2.13"))
    view.apply([_put(K.endpoint(net.id, moved.id), moved.encode(), 6)])
    assert view.entries(net.id, *keys) == restricted()
    assert view.entries(net.id, *keys)[0] == {old.mac: IPv4Address("192.0.2.13")}
    view.apply([_del(K.endpoint(net.id, old.id), 7)])
    assert (
        view.entries(net.id, *keys)
        == restricted()
        == (
            {old.mac: IPv4Address("192.0.2.13")},
            {IPv4Address("10.1.0.4"): old.mac},
        )
    )
    view.apply([_del(K.endpoint(net.id, moved.id), 8)])
    assert view.entries(net.id, *keys) == restricted() == ({}, {})
    assert view.entries("another-network", {other.mac}, {other.address}) == ({}, {})


def test_a_listener_that_raises_does_not_stop_the_view() -> None:
    class Broken(ClusterListener):
        def endpoint_added(self, ep: EndpointRecord) -> None:
            raise RuntimeError("driver bug")

    view = ClusterView(K, "me", Broken())
    ep = _ep("e1", "h2", "02:00:00:00:00:02", "10.1.0.3")
    view.apply([_put(K.endpoint(ep.network_id, ep.id), ep.encode(), 3)])
    assert view.endpoints(ep.network_id) == [ep] and view.revision == 3


def test_an_endpoint_heard_before_its_host_lets_its_vtep_in() -> None:
    """A host just started may publish its first endpoint before its own record reaches us:
    its VXLAN is let in from the endpoint on (traffic to it is already sent there)."""
    view = ClusterView(K, "me", Calls(), on_host_gone=lambda: None)
    net = _net()
    early = _ep("e-early", "h3", "02:00:00:00:00:03", "10.1.0.4")
    view.reset(
        [_kv(K.network(net.id), net.encode(), 2), _kv(K.endpoint(net.id, early.id), early.encode(), 3)], 3
    )
    assert view.hosts() == [] and view.vteps() == {IPv4Address("192.0.2.9")}
    mine = _ep("e-mine", "me", "02:00:00:00:00:01", "10.1.0.2")
    view.reset([_kv(K.endpoint(net.id, mine.id), mine.encode(), 4)], 4)
    assert view.vteps() == set(), "this host's own endpoints are not a way in"
