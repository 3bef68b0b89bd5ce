"""The cluster module against a real three-member etcd, one member per host namespace.

Each "host" here is a Cluster object in this test process whose sockets are
made in that host's namespace (etcd_lab.dialer), so it reaches the members
exactly as a daemon on that host would. Every test works under a key root
of its own and brings back any member it killed. Times that depend on etcd
(lease expiry, elections) are waited for with a bound, never asserted as
speeds; what was measured is printed (pytest -s shows it).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dockyard.cluster import Cluster, ClusterListener, EndpointRecord, HostRecord, NetworkRecord, StoreConfig
from dockyard.cluster.etcd import EtcdClient, EtcdError
from dockyard.cluster.wire import prefix_end
from dockyard.errors import ClusterUnavailable, Conflict, NotFound
from dockyard.settings import AddressPool6
from etcd_lab import EtcdLab

TTL = 2  # etcd's shortest lease
GRACE = 3


class Recorder(ClusterListener):
    """Every callback, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []

    def _add(self, what: str, ident: str) -> None:
        with self.lock:
            self.calls.append((what, ident))

    def network_added(self, network: NetworkRecord) -> None:
        self._add("network+", network.id)

    def network_removed(self, network: NetworkRecord) -> None:
        self._add("network-", network.id)

    def host_added(self, host: HostRecord) -> None:
        self._add("host+", host.id)

    def host_removed(self, host: HostRecord) -> None:
        self._add("host-", host.id)

    def endpoint_added(self, ep: EndpointRecord) -> None:
        self._add("ep+", ep.id)

    def endpoint_updated(self, old: EndpointRecord, new: EndpointRecord) -> None:
        self._add("ep~", new.id)

    def endpoint_removed(self, ep: EndpointRecord, successor: EndpointRecord | None) -> None:
        self._add("ep-", ep.id)

    def of(self, kind: str) -> list[str]:
        with self.lock:
            return [ident for what, ident in self.calls if what == kind]


class Hosts:
    """Clusters on the lab's hosts, under one key root; all stopped and the root wiped at the end."""

    def __init__(self, lab: EtcdLab) -> None:
        self.lab = lab
        self.root = f"/dyt-{secrets.token_hex(4)}/v1/"
        self.made: list[Cluster] = []

    def config(self, i: int, **kw: float) -> StoreConfig:
        # Each host lists its own member first, as a daemon's --cluster-store usually would.
        eps = self.lab.endpoints
        return dataclasses.replace(StoreConfig.parse("etcd://" + ",".join(eps[i:] + eps[:i])), **kw)

    def client(self, i: int = 0) -> EtcdClient:
        return EtcdClient(self.config(i), dial=self.lab.dialer(self.lab.members[i]))

    def make(
        self,
        i: int,
        *,
        host_id: str | None = None,
        listener: ClusterListener | None = None,
        start: bool = True,
        ttl: int = TTL,
        grace: int = GRACE,
        on_conflict: Callable[[EndpointRecord, str], None] | None = None,
        deadline: float = 10.0,
    ) -> Cluster:
        member = self.lab.members[i]
        cluster = Cluster(
            self.config(i, deadline=deadline),
            HostRecord(host_id or f"host{i + 1}-{secrets.token_hex(3)}", IPv4Address(member.addr), member.ns),
            listener=listener,
            on_conflict=on_conflict,
            ttl=ttl,
            grace=grace,
            root=self.root,
            dial=self.lab.dialer(member),
            idle=0.5,
            sweep_every=1.0,
        )
        self.made.append(cluster)
        if start:
            cluster.start()
            wait_for(lambda: cluster.session.alive and cluster.view.ready.is_set(), 10, "a host registered")
        return cluster

    def close(self) -> None:
        for cluster in self.made:
            cluster.stop()
        self.lab.ensure_all_running()
        client = self.client()
        client.delete(self.root, prefix_end(self.root))
        client.close()


@pytest.fixture
def hosts(etcd_lab: EtcdLab) -> Iterator[Hosts]:
    etcd_lab.ensure_all_running()
    h = Hosts(etcd_lab)
    try:
        yield h
    finally:
        h.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds it took for predicate to hold; fails after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")


def endpoint(
    cluster: Cluster, net: NetworkRecord, ep_id: str, address: IPv4Address, name: str
) -> EndpointRecord:
    mac = "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
    return EndpointRecord(
        network_id=net.id,
        id=ep_id,
        host_id=cluster.host.id,
        vtep=cluster.host.vtep,
        mac=mac,
        address=address,
        container_id=secrets.token_hex(32),
        name=name,
    )


def attach(cluster: Cluster, net: NetworkRecord, name: str = "") -> EndpointRecord:
    """What the engine does for a container on a global network: claim, then publish."""
    ep_id = secrets.token_hex(32)
    ep = endpoint(cluster, net, ep_id, cluster.ipam.claim(net, ep_id), name or f"c-{ep_id[:6]}")
    cluster.session.publish(ep)
    return ep


# -- networks ----------------------------------------------------------------------------------


def test_a_network_made_once_is_seen_by_name_and_id_on_every_host(hosts: Hosts) -> None:
    seen = Recorder()
    h1 = hosts.make(0)
    h2 = hosts.make(1)
    h3 = hosts.make(2, listener=seen)
    net = h1.networks.create("ov1", subnet=IPv4Network("10.9.0.0/24"), attachable=True)
    assert net.driver == "overlay" and net.gateway == IPv4Address("10.9.0.1") and net.revision > 0

    assert h2.networks.find("ov1") == net
    assert h2.networks.find(net.id) == net
    assert h2.networks.find(net.id[:12]) == net
    wait_for(lambda: seen.of("network+") == [net.id], 5, "host 3's view got the network")
    assert h3.view.network("ov1") == net and h3.view.network(net.id) == net

    with pytest.raises(Conflict, match="ov1 already exists"):
        h2.networks.create("ov1")
    with pytest.raises(Conflict, match="overlaps network ov1"):
        h3.networks.create("ov2", subnet=IPv4Network("10.9.0.128/25"))
    with pytest.raises(NotFound):
        h2.networks.find("nope")


def test_creates_at_the_same_moment_make_one_network_per_name_and_disjoint_subnets(hosts: Hosts) -> None:
    clusters = [hosts.make(i) for i in range(3)]
    results: dict[tuple[int, int], object] = {}
    go = threading.Barrier(6)

    def create(i: int, k: int) -> None:
        go.wait()
        try:
            # Threads k=0 all race for one name; k=1 each make their own, subnet chosen.
            name = "same" if k == 0 else f"own{i}"
            results[(i, k)] = clusters[i].networks.create(name)
        except Conflict as e:
            results[(i, k)] = e

    threads = [threading.Thread(target=create, args=(i, k)) for i in range(3) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = [r for (i, k), r in results.items() if k == 0]
    assert sum(isinstance(r, NetworkRecord) for r in same) == 1, same
    assert all(isinstance(r, NetworkRecord) or "already exists" in str(r) for r in same)
    nets = clusters[0].networks.list()
    assert sorted(n.name for n in nets) == ["own0", "own1", "own2", "same"]
    for a in nets:
        for b in nets:
            assert a is b or not a.subnet.overlaps(b.subnet), (a, b)


def test_rm_is_refused_while_any_host_has_an_endpoint(hosts: Hosts) -> None:
    h1, h2 = hosts.make(0), hosts.make(1)
    net = h1.networks.create("busy", subnet=IPv4Network("10.10.0.0/24"))
    ep = attach(h2, net)
    with pytest.raises(Conflict, match=f"network busy has active endpoints.*{h2.host.id}"):
        h1.networks.remove(net.id)
    # Withdrawn but still claimed (the container is going away): still refused.
    h2.session.withdraw(net.id, ep.id)
    with pytest.raises(Conflict, match="active endpoints"):
        h1.networks.remove(net.id)
    assert h2.ipam.release(net.id, ep.address, ep.id)
    h1.networks.remove(net.id)
    assert h2.networks.get(net.id) is None
    with pytest.raises(NotFound):
        h1.networks.remove(net.id)
    # A claim into the removed network fails; nothing is left under it.
    with pytest.raises(NotFound):
        h2.ipam.claim(net, "x" * 64)
    assert h1.ipam.claims(net.id) == {}


# -- addresses ---------------------------------------------------------------------------------


def test_hosts_claiming_at_once_never_get_the_same_address(hosts: Hosts) -> None:
    clusters = [hosts.make(i) for i in range(3)]
    net = clusters[0].networks.create("race", subnet=IPv4Network("10.11.0.0/24"))
    per_thread, threads_per_host = 20, 2
    got: list[tuple[str, IPv4Address]] = []
    lock = threading.Lock()
    go = threading.Barrier(3 * threads_per_host)

    def claim(c: Cluster) -> None:
        go.wait()
        for _ in range(per_thread):
            ep_id = secrets.token_hex(32)
            addr = c.ipam.claim(net, ep_id)
            with lock:
                got.append((ep_id, addr))

    threads = [threading.Thread(target=claim, args=(c,)) for c in clusters for _ in range(threads_per_host)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    addresses = [a for _, a in got]
    assert len(addresses) == 3 * threads_per_host * per_thread
    assert len(set(addresses)) == len(addresses), "an address was given twice"
    assert IPv4Address("10.11.0.1") not in addresses  # the gateway
    # etcd agrees: every claim is there, each with its own endpoint.
    claims = clusters[1].ipam.claims(net.id)
    assert {a: c.endpoint_id for a, c in claims.items()} == {a: e for e, a in got}
    print(f"\n{len(got)} claims from 6 threads on 3 hosts in {took:.2f} s")

    # Next-fit: a released address is not the next one given.
    ep_id, addr = got[0]
    assert (
        clusters[0].ipam.release(net.id, addr, ep_id)
        or clusters[1].ipam.release(net.id, addr, ep_id)
        or (clusters[2].ipam.release(net.id, addr, ep_id))
    )
    assert clusters[0].ipam.claim(net, secrets.token_hex(32)) != addr


def test_a_full_network_gives_each_address_once_then_refuses(hosts: Hosts) -> None:
    clusters = [hosts.make(i) for i in range(3)]
    net = clusters[0].networks.create("small", subnet=IPv4Network("10.12.0.0/27"))  # 29 usable + gateway
    got: list[IPv4Address] = []
    refused: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(3)

    def fill(c: Cluster) -> None:
        go.wait()
        while True:
            try:
                addr = c.ipam.claim(net, secrets.token_hex(32))
            except Conflict as e:
                with lock:
                    refused.append(str(e))
                return
            with lock:
                got.append(addr)

    threads = [threading.Thread(target=fill, args=(c,)) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [a for a in net.subnet.hosts() if a != net.gateway]
    assert len(refused) == 3 and all("no available IPv4 addresses" in r for r in refused)
    with pytest.raises(Conflict, match=r"10\.12\.0\.5 is already in use"):
        clusters[1].ipam.claim(net, secrets.token_hex(32), IPv4Address("10.12.0.5"))


# -- leases and the watch ------------------------------------------------------------------------


def test_a_dead_hosts_endpoints_leave_every_peer_within_the_ttl_and_come_back(hosts: Hosts) -> None:
    h1 = hosts.make(0)
    h3 = hosts.make(2)
    h2 = hosts.make(1)
    net = h1.networks.create("lease", subnet=IPv4Network("10.13.0.0/24"))
    eps = [attach(h2, net, f"web{n}") for n in range(3)]
    for peer in (h1, h3):
        wait_for(lambda p=peer: len(p.view.endpoints(net.id)) == 3, 5, "peers see host 2's endpoints")
    assert h1.view.resolve(net.id, "web1") == [eps[1].address]
    assert h3.view.fdb(net.id) == {e.mac: h2.host.vtep for e in eps}
    assert h3.view.neighbours(net.id) == {e.address: e.mac for e in eps}
    assert h2.host.vtep in h1.view.vteps()

    # The daemon dies: nothing keeps its lease alive any more.
    h2.watch.stop()
    h2.session._stop.set()
    died = time.monotonic()
    for peer in (h1, h3):
        wait_for(lambda p=peer: p.view.endpoints(net.id) == [], TTL + 5, "a dead host's endpoints leave")
    gone_after = time.monotonic() - died
    assert h2.host.vtep not in h1.view.vteps() and h1.view.resolve(net.id, "web1") == []
    # Its addresses stay claimed (the grace period), so nobody is given one meanwhile.
    assert {a for a, c in h1.ipam.claims(net.id).items() if c.host_id == h2.host.id} == {
        e.address for e in eps
    }

    # It comes back (same host id) and publishes what it still runs.
    back = hosts.make(1, host_id=h2.host.id)
    for ep in eps:
        back.session.adopt(ep)
    wait_for(lambda: len(h3.view.endpoints(net.id)) == 3, 5, "the host's endpoints are back")
    print(f"\nendpoints left the peers {gone_after:.2f} s after the host died (TTL {TTL} s)")


def test_the_watch_resumes_on_another_member_without_missing_or_repeating(
    hosts: Hosts, etcd_lab: EtcdLab
) -> None:
    seen = Recorder()
    # The member killed may be the leader: an election on a loaded machine can outlast a 2 s
    # lease, and the subject here is the watch, not the lease (tested apart above).
    watcher = hosts.make(0, listener=seen, ttl=10)
    writer = hosts.make(1, ttl=10)
    net = writer.networks.create("resume", subnet=IPv4Network("10.14.0.0/24"))
    wait_for(lambda: watcher.watch.member is not None, 5, "the watch is on a member")
    member = next(m for m in etcd_lab.members if m.endpoint == watcher.watch.member)
    streams_before = watcher.watch.streams

    published: list[EndpointRecord] = []
    withdrawn: list[str] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(60):
                ep = attach(writer, net, f"r{n}")
                published.append(ep)
                if n % 3 == 0:
                    writer.session.withdraw(net.id, ep.id)
                    withdrawn.append(ep.id)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    wait_for(lambda: len(published) >= 20, 10, "writes under way")
    etcd_lab.kill(member)
    t.join()
    assert not errors, errors

    expected = {e.id for e in published} - set(withdrawn)
    wait_for(lambda: {e.id for e in watcher.view.endpoints(net.id)} == expected, 10, "the view caught up")
    assert watcher.watch.member != member.endpoint and watcher.watch.streams > streams_before
    assert watcher.watch.lists == 1, "resumed from its revision, no full listing"
    # Each endpoint added exactly once, each withdrawn one removed exactly once, nothing else.
    assert sorted(seen.of("ep+")) == sorted(e.id for e in published)
    assert sorted(seen.of("ep-")) == sorted(withdrawn)
    assert seen.of("ep~") == []


def test_a_silent_member_is_left_for_another(hosts: Hosts, etcd_lab: EtcdLab) -> None:
    """A stream whose member is cut off stays open and silent: the probe notices."""
    seen = Recorder()
    # The watcher's watch, on its own member m3 first; the watcher is not cut off from m1/m2.
    # m3 is a follower: a silent leader would test an election instead (test_the_leader_killed_...).
    silent = etcd_lab.members[2]
    etcd_lab.step_down(silent)
    watcher = hosts.make(2, listener=seen, ttl=10)
    writer = hosts.make(0, ttl=10)
    net = writer.networks.create("silent", subnet=IPv4Network("10.15.0.0/24"))
    wait_for(lambda: watcher.watch.member == silent.endpoint, 5, "watch on m3")
    # m3 stays up but goes quiet: the switch port down would cut the watcher too, so stop the
    # member's process instead (SIGSTOP: the TCP connection stays open, silent).
    assert silent.proc is not None
    os.kill(silent.proc.pid, signal.SIGSTOP)
    try:
        ep = attach(writer, net, "after")
        took = wait_for(
            lambda: ep.id in {e.id for e in watcher.view.endpoints(net.id)}, 15, "the event arrived elsewhere"
        )
    finally:
        os.kill(silent.proc.pid, signal.SIGCONT)
    assert watcher.watch.member != silent.endpoint
    assert seen.of("ep+") == [ep.id]
    print(f"\nan event reached the watch {took:.2f} s after its member went silent")


def test_compaction_forces_a_full_resync_that_tells_only_the_differences(hosts: Hosts) -> None:
    seen = Recorder()
    watcher = hosts.make(0, listener=seen)
    writer = hosts.make(1)
    net = writer.networks.create("compact", subnet=IPv4Network("10.16.0.0/24"))
    keep = attach(writer, net, "keep")
    drop = attach(writer, net, "drop")
    wait_for(lambda: len(watcher.view.endpoints(net.id)) == 2, 5, "view has both")
    watcher.watch.stop()  # the daemon is away for a while ...
    writer.session.withdraw(net.id, drop.id)
    new = attach(writer, net, "new")
    client = hosts.client(1)
    client.compact(client.range("/").revision)  # ... and etcd compacts meanwhile
    watcher.watch.start()
    wait_for(lambda: {e.id for e in watcher.view.endpoints(net.id)} == {keep.id, new.id}, 10, "resynced")
    assert watcher.watch.lists == 2
    assert sorted(seen.of("ep+")) == sorted([keep.id, drop.id, new.id])
    assert seen.of("ep-") == [drop.id]


# -- members going down --------------------------------------------------------------------------


def test_a_member_killed_during_writes_fails_no_write(hosts: Hosts, etcd_lab: EtcdLab) -> None:
    # The TTL: with 2 s, an election after the leader's death can outlast the lease.
    h1 = hosts.make(0, ttl=10)
    net = h1.networks.create("kill", subnet=IPv4Network("10.17.0.0/23"))
    done: list[IPv4Address] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(150):
                done.append(h1.ipam.claim(net, secrets.token_hex(32)))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    wait_for(lambda: len(done) >= 30, 10, "writes under way")
    # The member this host talks to first (its own).
    etcd_lab.kill(etcd_lab.members[0])
    t.join()
    assert not errors, errors
    assert len(set(done)) == 150


def test_the_leader_killed_stalls_writes_only_briefly(hosts: Hosts, etcd_lab: EtcdLab) -> None:
    h1 = hosts.make(0, ttl=10)
    client = h1.client
    stalls: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                client.put(f"{hosts.root}probe/{n % 10}", str(n).encode())
            except BaseException as e:
                errors.append(e)
                return
            stalls.append(time.monotonic() - started)
            n += 1

    t = threading.Thread(target=write)
    t.start()
    wait_for(lambda: len(stalls) >= 50, 10, "writes under way")
    before = len(stalls)
    leader = etcd_lab.kill_leader()
    wait_for(lambda: len(stalls) >= before + 200, 30, "writes go on after the leader died")
    stop.set()
    t.join()
    assert not errors, errors
    worst = max(stalls[before:])
    print(
        f"\nleader {leader.name} killed: longest write {worst * 1000:.0f} ms; median {sorted(stalls)[len(stalls) // 2] * 1000:.1f} ms"
    )


# -- gone hosts and the grace period ---------------------------------------------------------------


def test_a_gone_hosts_claims_are_freed_after_the_grace_period_and_not_before(hosts: Hosts) -> None:
    h1 = hosts.make(0)
    h2 = hosts.make(1)
    h3 = hosts.make(2)
    net = h1.networks.create("grace", subnet=IPv4Network("10.18.0.0/24"))
    dead = [attach(h2, net) for _ in range(3)]
    brief = [attach(h3, net) for _ in range(2)]

    for c in (h2, h3):  # both die
        c.watch.stop()
        c.session._stop.set()
    wait_for(lambda: h1.view.endpoints(net.id) == [], TTL + 5, "their endpoints left")
    gone = hosts.client(0)
    marked = wait_for(
        lambda: gone.get(h1.keys.gone(h2.host.id)) and gone.get(h1.keys.gone(h3.host.id)), 5, "marked gone"
    )
    # Within the grace period: every claim is still there.
    held = h1.ipam.claims(net.id)
    assert {e.address for e in dead + brief} <= set(held)

    # Host 3 comes back within the grace period: its mark goes, its claims stay its own.
    back = hosts.make(2, host_id=h3.host.id)
    for ep in brief:
        back.session.adopt(ep)
    assert gone.get(h1.keys.gone(h3.host.id)) is None

    took = wait_for(lambda: not set(h1.ipam.claims(net.id)) & {e.address for e in dead}, GRACE + 10, "freed")
    held = h1.ipam.claims(net.id)
    assert {a: c.host_id for a, c in held.items()} == {e.address: h3.host.id for e in brief}
    assert gone.get(h1.keys.gone(h2.host.id)) is None
    print(f"\nclaims of a gone host freed {marked + took:.2f} s after it was marked (grace {GRACE} s)")


def test_a_host_cut_off_never_comes_back_to_a_duplicate(hosts: Hosts, etcd_lab: EtcdLab) -> None:
    conflicts: list[tuple[EndpointRecord, str]] = []
    h1 = hosts.make(0)
    h2 = hosts.make(1, on_conflict=lambda ep, why: conflicts.append((ep, why)), deadline=2.0)
    net = h1.networks.create("cut", subnet=IPv4Network("10.19.0.0/24"))
    kept = attach(h2, net, "kept")
    lost = attach(h2, net, "lost")

    etcd_lab.step_down(etcd_lab.members[1])  # a cut member, not an election on top
    etcd_lab.set_link(etcd_lab.members[1], up=False)  # host 2 (and its member) off the underlay
    try:
        wait_for(lambda: not h2.session.alive, TTL + 5, "host 2 notices it is cut off")
        with pytest.raises(ClusterUnavailable, match="has not confirmed this host"):
            h2.ipam.claim(net, secrets.token_hex(32))
        wait_for(lambda: h1.view.endpoints(net.id) == [], TTL + 10, "peers forgot host 2")
        # After the grace period host 2's addresses are free, and one is given to host 1.
        wait_for(lambda: lost.address not in h1.ipam.claims(net.id), GRACE + 15, "host 2's claims freed")
        taken = h1.ipam.claim(net, secrets.token_hex(32), lost.address)
        assert taken == lost.address
    finally:
        etcd_lab.set_link(etcd_lab.members[1], up=True)
    # Host 2 is back: it registers again and publishes what it still runs, except the address
    # that is now host 1's: that one is a conflict, never published.
    wait_for(lambda: h2.session.alive and h2.session.renewals >= 1, 20, "host 2 registered again")
    assert [(ep.id, "given to" in why) for ep, why in conflicts] == [(lost.id, True)]
    wait_for(lambda: [e.id for e in h1.view.endpoints(net.id)] == [kept.id], 5, "only the kept one is back")
    assert h1.ipam.holder(net.id, kept.address).host_id == h2.host.id  # type: ignore[union-attr]
    assert h1.ipam.holder(net.id, lost.address).host_id == h1.host.id  # type: ignore[union-attr]


def test_an_endpoint_withdrawn_while_the_store_is_away_goes_when_it_answers(
    hosts: Hosts, etcd_lab: EtcdLab
) -> None:
    h1 = hosts.make(0)
    h2 = hosts.make(1, ttl=10, deadline=1.0)  # a cut shorter than the TTL: the lease survives
    net = h1.networks.create("away", subnet=IPv4Network("10.22.0.0/24"))
    ep = attach(h2, net)
    wait_for(lambda: len(h1.view.endpoints(net.id)) == 1, 5, "published")
    etcd_lab.step_down(etcd_lab.members[1])  # a cut member, not an election on top
    etcd_lab.set_link(etcd_lab.members[1], up=False)
    try:
        h2.session.withdraw(net.id, ep.id)  # the container goes; no error for an absent store
        with pytest.raises(ClusterUnavailable):
            h2.ipam.release(net.id, ep.address, ep.id)
        assert len(h1.view.endpoints(net.id)) == 1
    finally:
        etcd_lab.set_link(etcd_lab.members[1], up=True)
    wait_for(lambda: h1.view.endpoints(net.id) == [], 8, "the withdrawal reached the store")
    assert h2.session.renewals == 0 and h2.session.alive
    gc_frees_what_the_store_missed(h2, net, ep.address, ep.id)


def gc_frees_what_the_store_missed(h: Cluster, net: NetworkRecord, address: IPv4Address, ep_id: str) -> None:
    """A release that failed for a store away (one txn) may still be applied once it answers:
    etcd commits a proposal that the cut-off member had forwarded to the leader. Otherwise
    the store missed it, and the engine's gc finds this host's claim and frees it. Either
    way nothing is left, and nothing else of this host's was touched."""
    left = h.ipam.mine()
    assert left in ([], [(net.id, address, ep_id)])
    for network_id, held, endpoint_id in left:
        h.ipam.release(network_id, held, endpoint_id)  # False if the late one came meanwhile
    assert h.ipam.mine() == [] and h.ipam.holder(net.id, address) is None


def test_claims_and_record_come_in_one_txn_and_go_in_one_even_after_the_store_was_away(
    hosts: Hosts, etcd_lab: EtcdLab
) -> None:
    """What the engine does for a container: claim and publish at once; when it goes, the
    record is dropped locally and deleted with the claim (or, the store away, once it answers)."""
    h1 = hosts.make(0)
    h2 = hosts.make(1, ttl=10, deadline=1.0)  # a cut shorter than the TTL: the lease survives
    net = h1.networks.create("onetxn", subnet=IPv4Network("10.23.0.0/24"))
    wait_for(lambda: h2.view.network("onetxn") is not None, 5, "onetxn seen by host 2")

    def attached(ep_id: str) -> EndpointRecord:
        def record(a4: IPv4Address, a6: ipaddress.IPv6Address | None) -> EndpointRecord:
            made = endpoint(h2, net, ep_id, a4, "web")  # its MAC and container id are random: fixed here
            return dataclasses.replace(made, mac="02:42:0a:17:00:02", container_id=ep_id)

        address, _ = h2.ipam.claim_endpoint(net, ep_id, None, None, record)
        wait_for(lambda: [e.id for e in h1.view.endpoints(net.id)] == [ep_id], 5, "published")
        assert h1.ipam.holder(net.id, address).endpoint_id == ep_id  # type: ignore[union-attr]
        assert h2.session.published() == [record(address, None)]
        return record(address, None)

    ep = attached(secrets.token_hex(32))
    h2.session.forget(net.id, ep.id)
    assert h2.ipam.release(net.id, ep.address, ep.id)
    wait_for(lambda: h1.view.endpoints(net.id) == [], 5, "the record gone with the claim")
    assert h1.ipam.holder(net.id, ep.address) is None

    ep = attached(secrets.token_hex(32))
    etcd_lab.step_down(etcd_lab.members[1])  # a cut member, not an election on top
    etcd_lab.set_link(etcd_lab.members[1], up=False)
    try:
        h2.session.forget(net.id, ep.id)  # the container goes; nothing asked of the store
        with pytest.raises(ClusterUnavailable):
            h2.ipam.release(net.id, ep.address, ep.id)
        assert [e.id for e in h1.view.endpoints(net.id)] == [ep.id]
    finally:
        etcd_lab.set_link(etcd_lab.members[1], up=True)
    wait_for(lambda: h1.view.endpoints(net.id) == [], 8, "the record deleted once the store answers")
    gc_frees_what_the_store_missed(h2, net, ep.address, ep.id)
    assert h2.session.published() == []


def test_an_unreachable_store_is_one_clear_error_and_no_registration(hosts: Hosts, etcd_lab: EtcdLab) -> None:
    members = etcd_lab.members
    config = dataclasses.replace(
        StoreConfig.parse(f"etcd://{members[0].addr}:2399,{members[1].addr}:2399"), deadline=1.0
    )
    client = EtcdClient(config, dial=etcd_lab.dialer(members[0]))
    with pytest.raises(ClusterUnavailable) as e:
        client.put("/x", b"")
    message = str(e.value)
    assert "\n" not in message
    assert message == (
        f"cluster store unreachable: {members[0].addr}:2399 (connection refused), "
        f"{members[1].addr}:2399 (connection refused)"
    )
    cluster = Cluster(
        config,
        HostRecord("lonely", ipaddress.IPv4Address(members[0].addr)),
        root=hosts.root,
        dial=etcd_lab.dialer(members[0]),
    )
    cluster.start()  # never raises: the daemon starts, overlay work waits for the store
    try:
        with pytest.raises(ClusterUnavailable, match="has not confirmed this host"):
            cluster.require()
        assert not cluster.watch.connected
    finally:
        cluster.stop()


# -- TLS and auth -------------------------------------------------------------------------------------


def _pki(where: Path, server_ip: str) -> dict[str, Path]:
    """A CA, a server certificate for server_ip and a client certificate (EC keys: quick)."""
    where.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=dyt-ca")
    for name, subject, ext in (
        # The server's certificate is also what etcd's gateway presents to its own gRPC server.
        (
            "server",
            "/CN=dyt-server",
            f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        # No CommonName: with auth on, etcd's gateway refuses a client certificate that has one
        # (a CN cannot stand for the user through the gateway).
        ("client", "/O=dyt-client", "extendedKeyUsage=clientAuth\n"),
    ):
        (where / f"{name}.ext").write_text(ext)
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return {n: where / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


def test_tls_client_certificates_and_user_auth(hosts: Hosts, etcd_lab: EtcdLab, tmp_path: Path) -> None:
    host = etcd_lab.members[0]
    pki = _pki(tmp_path / "pki", host.addr)
    tls_flags = (
        "--cert-file", str(pki["server.crt"]), "--key-file", str(pki["server.key"]),
        "--trusted-ca-file", str(pki["ca.crt"]), "--client-cert-auth",
        "--auth-token-ttl", "1",
    )  # fmt: skip
    member = etcd_lab.standalone(0, "tls", 2479, tls_flags, scheme="https")
    url = f"etcd://{member.endpoint}"
    dial = etcd_lab.dialer(host)

    def client(**kw: str) -> EtcdClient:
        config = StoreConfig.parse(url, ca=str(pki["ca.crt"]), **kw)
        return EtcdClient(dataclasses.replace(config, deadline=5.0), dial=dial)

    try:
        tls = client(cert=str(pki["client.crt"]), key=str(pki["client.key"]))
        tls.put("/t", b"1")  # retried until the member listens
        assert tls.get("/t").value == b"1"  # type: ignore[union-attr]
        no_cert = EtcdClient(
            dataclasses.replace(StoreConfig.parse(url, ca=str(pki["ca.crt"])), deadline=1.0), dial=dial
        )
        with pytest.raises(ClusterUnavailable, match=f"cluster store unreachable: {member.endpoint} "):
            no_cert.put("/t", b"2")  # no client certificate: the handshake fails

        # etcd's user/password auth on top.
        tls.call("/v3/auth/user/add", {"name": "root", "password": "pw"})
        tls.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        tls.call("/v3/auth/enable", {})
        certs = {"cert": str(pki["client.crt"]), "key": str(pki["client.key"])}
        with pytest.raises(ClusterUnavailable, match=r"refused user 'root': .*authentication failed"):
            client(username="root", password="wrong", **certs).put("/t", b"3")
        with pytest.raises(EtcdError):
            client(**certs).put("/t", b"4")  # no user: auth is on, the request is refused
        authed = client(username="root", password="pw", **certs)
        authed.put("/t", b"5")
        first = dict(authed._tokens)
        # The token lives 1 s without use (--auth-token-ttl): a request after a pause finds it
        # expired, and the client authenticates again; no request fails.
        for _ in range(8):
            time.sleep(1.5)  # the TTL etcd was given: nothing here to wait on but the clock
            authed.put("/t", b"6")
            if authed._tokens != first:
                break
        assert authed._tokens != first, "the token was never renewed"

        # The whole module over TLS and auth: the watch's stream carries the token too.
        config = StoreConfig.parse(url, ca=str(pki["ca.crt"]), username="root", password="pw", **certs)
        cluster = Cluster(
            config,
            HostRecord("tls-host", IPv4Address(host.addr)),
            root=hosts.root,
            dial=dial,
            ttl=TTL,
            idle=0.5,
        )
        cluster.start()
        try:
            wait_for(lambda: cluster.session.alive and cluster.view.ready.is_set(), 10, "registered")
            net = cluster.networks.create("secure", subnet=IPv4Network("10.20.0.0/24"))
            wait_for(lambda: cluster.view.network("secure") == net, 5, "the watch saw it")
            assert cluster.ipam.claim(net, "e" * 64) == IPv4Address("10.20.0.2")
            # The member restarts: every token it gave is gone. The keep-alive, the watch's new
            # stream and the next requests authenticate again.
            streams = cluster.watch.streams
            etcd_lab.kill(member)
            etcd_lab.start(member)
            wait_for(lambda: cluster.watch.streams > streams and cluster.watch.connected, 15, "watch back")
            again = cluster.networks.create("secure2", subnet=IPv4Network("10.21.0.0/24"))
            wait_for(lambda: cluster.view.network("secure2") == again, 5, "the new stream saw it")
            wait_for(lambda: cluster.session.alive, 10, "the keep-alive authenticated again")
        finally:
            cluster.stop()
    finally:
        etcd_lab.kill(member)


# -- dual stack ------------------------------------------------------------------------------------


def test_ipv6_addresses_are_claimed_published_and_taken_again_as_ipv4_ones_are(hosts: Hosts) -> None:
    h1, h2 = hosts.make(0), hosts.make(1)
    net = h1.networks.create(
        "ds", subnet=IPv4Network("10.21.0.0/24"), ipv6=True, subnet6=ipaddress.IPv6Network("fd00:21::/64")
    )
    assert (net.subnet6, net.gateway6) == (
        ipaddress.IPv6Network("fd00:21::/64"),
        ipaddress.IPv6Address("fd00:21::1"),
    )
    wait_for(lambda: h2.view.network("ds") is not None, 5, "ds seen by host 2")
    assert h2.view.network("ds").subnet6 == net.subnet6  # type: ignore[union-attr]
    # IPv6 subnets are unique in the cluster too; --ipv6 alone takes the next free /64 of the pools.
    with pytest.raises(Conflict, match="overlaps network ds"):
        h2.networks.create("clash", ipv6=True, subnet6=ipaddress.IPv6Network("fd00:21::/48"))
    pools6 = (AddressPool6(ipaddress.IPv6Network("fd00:21::/48"), 64),)
    auto = h2.networks.create("auto6", ipv6=True, pools6=pools6)
    assert auto.subnet6 == ipaddress.IPv6Network("fd00:21:0:1::/64")

    # Two hosts claiming IPv6 addresses at once: none given twice, never the gateway.
    got: dict[str, list[ipaddress.IPv6Address]] = {"h1": [], "h2": []}

    def claims(name: str, cluster: Cluster) -> None:
        for _ in range(12):
            got[name].append(cluster.ipam.claim_endpoint(net, secrets.token_hex(32), None, None, None)[1])

    threads = [threading.Thread(target=claims, args=(n, c)) for n, c in (("h1", h1), ("h2", h2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = got["h1"] + got["h2"]
    assert len(set(every)) == len(every) == 24 and net.gateway6 not in every
    held = h1.ipam.claims(net.id)
    assert {held[a].host_id for a in got["h2"]} == {h2.host.id}

    # An endpoint holds a claim per family; it is published only while both are its own.
    ep_id = secrets.token_hex(32)
    address, address6 = h2.ipam.claim_endpoint(net, ep_id, None, None, None)
    ep = dataclasses.replace(endpoint(h2, net, ep_id, address, "web"), address6=address6)
    h2.session.publish(ep)
    wait_for(lambda: ep.address6 in h1.view.neighbours(net.id), 5, "the IPv6 neighbour on host 1")
    assert h1.view.neighbours(net.id)[ep.address6] == ep.mac  # type: ignore[index]
    # One whose IPv4 claim is its own but whose IPv6 address is web's is refused, naming it.
    stray_id = secrets.token_hex(32)
    stray = dataclasses.replace(ep, id=stray_id, address=h2.ipam.claim(net, stray_id))
    with pytest.raises(Conflict, match=f"address {ep.address6} on network .* not claimed by this host"):
        h2.session.publish(stray)
    # The IPv6 claim freed behind its back (as the reaper would): adopting takes it again.
    client = hosts.client(0)
    try:
        client.delete(h1.keys.claim(net.id, ep.address6))
        h2.session.adopt(ep)
        assert h1.ipam.holder(net.id, ep.address6).endpoint_id == ep_id  # type: ignore[arg-type,union-attr]
        # Given to another meanwhile: a conflict naming the IPv6 address, never published.
        client.delete(h1.keys.claim(net.id, ep.address6))
        assert h1.ipam.claim_endpoint(net, secrets.token_hex(32), None, ep.address6, None)[1] == ep.address6
        h2.session.withdraw(net.id, ep_id)
        with pytest.raises(Conflict, match=f"address {ep.address6} was given to host {h1.host.id}"):
            h2.session.adopt(ep)
    finally:
        client.close()
    # The network stays while any claim of either family lives; release frees them.
    for address, holder in h1.ipam.claims(net.id).items():
        owner = h1 if holder.host_id == h1.host.id else h2
        assert owner.ipam.release(net.id, address, holder.endpoint_id)
    assert h1.ipam.claims(net.id) == {}
    h1.networks.remove(net.id)
    h2.networks.remove(auto.id)
