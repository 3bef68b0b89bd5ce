"""This host's place in the cluster: a lease kept alive, the host's record and its
published endpoints under it.

Liveness is the lease (TTL ~10 s, refreshed every third of it). While it
lives, `hosts/<id>` says where this host's tunnels end and `endpoints/...`
what runs here; when the daemon dies or is cut off, etcd deletes them at
the TTL and every peer forgets them. Claims (ipam/) are not under the
lease: they wait out a grace period (reaper.py), so a host that was only
cut off finds its addresses still its own.

A lost lease (the keep-alive says it expired) is made good at once: a new
lease, the host record again, the `gone`/`grace` marks a peer may have
left removed, and every endpoint this host still runs published again,
each only after checking its claim in the same txn: a claim still ours is
kept, a claim freed meanwhile is taken again, and a claim another host took
after the grace period is a conflict, told to on_conflict and never
published (this host never comes back to a duplicate address).

`alive` is what the engine asks before new overlay work: the store has
confirmed the lease within its TTL. Running containers do not depend on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address

from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys
from dockyard.cluster.records import Claim, EndpointRecord, HostRecord, RecordError
from dockyard.cluster.wire import Compare, Delete, Get, Put, absent, exists, lease_is, value_is
from dockyard.errors import ClusterUnavailable, Conflict, DockyardError

log = logging.getLogger("dockyard.cluster")

DEFAULT_TTL = 10

# (endpoint, why): an endpoint this host runs that it may no longer publish.
ConflictHandler = Callable[[EndpointRecord, str], None]


class HostSession:
    def __init__(
        self,
        client: EtcdClient,
        keys: Keys,
        host: HostRecord,
        ttl: int = DEFAULT_TTL,
        on_conflict: ConflictHandler | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.host = host
        self.ttl = ttl
        self.on_conflict = on_conflict
        self.lease = 0
        self._confirmed = 0.0  # monotonic time the store last confirmed the lease
        self._lock = threading.RLock()
        self._published: dict[tuple[str, str], EndpointRecord] = {}
        # Withdrawn while the store did not answer: deleted once it does.
        self._stale: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Times the lease was found expired and made again (tests and logs).
        self.renewals = 0

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Register and keep alive. A store that does not answer yet is no error here: the
        thread registers once it answers, and until then `alive` is False."""
        try:
            self.register()
        except ClusterUnavailable as e:
            log.warning("cluster store: %s; registering when it answers", e)
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep_alive, name="cluster-lease", daemon=True)
        self._thread.start()

    def stop(self, revoke: bool = False) -> None:
        """Stop refreshing. revoke: withdraw this host and its endpoints now (a host leaving for
        good); otherwise they go at the TTL, as after a crash."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.config.deadline + 1)
            self._thread = None
        if revoke and self.lease:
            with contextlib.suppress(DockyardError):
                self.client.revoke(self.lease)
            self.lease = 0

    @property
    def alive(self) -> bool:
        return bool(self.lease) and time.monotonic() - self._confirmed < self.ttl

    def require_lease(self) -> int:
        """The live lease, or ClusterUnavailable for new work."""
        if not self.alive:
            age = time.monotonic() - self._confirmed if self._confirmed else None
            since = f" for {age:.0f} s" if age is not None else ""
            raise ClusterUnavailable(
                f"the cluster store ({self.client.config.describe()}) has not confirmed this host{since}; "
                "overlay networks are unavailable until it answers"
            )
        return self.lease

    def register(self) -> None:
        """A new lease, the host record under it, every published endpoint again."""
        with self._lock:
            confirmed = time.monotonic()  # the TTL runs from the grant: count from before it
            lease, _ = self.client.grant(self.ttl)
            host_key = self.keys.host(self.host.id)
            self.client.txn(
                [],
                [
                    Put(host_key, self.host.encode(), lease),
                    Delete(self.keys.gone(self.host.id)),
                    Delete(self.keys.grace(self.host.id)),
                ],
            )
            # The lease is this host's only once every endpoint is back: a registration cut
            # short leaves lease 0, and the keep-alive thread registers again from the start.
            self.lease = 0
            self._stale.clear()  # withdrawn records went with the lapsed lease
            for ep in list(self._published.values()):
                why = self._republish(ep, lease)
                if why is not None:
                    self._published.pop((ep.network_id, ep.id), None)
                    log.error(
                        "endpoint %s (%s) can no longer be published: %s", ep.id[:12], ep.addresses[0], why
                    )
                    if self.on_conflict is not None:
                        self.on_conflict(ep, why)
            self.lease = lease
            self._confirmed = confirmed

    # -- endpoints ---------------------------------------------------------------------------------

    def publish(self, ep: EndpointRecord) -> None:
        """Publish an endpoint of this host whose address this host has claimed (GlobalIpam.claim).

        Nothing to do when that very record is published already (GlobalIpam.claim_endpoint
        published it with its claims, in one txn)."""
        if ep.host_id != self.host.id:
            raise ValueError(f"endpoint {ep.id} is host {ep.host_id}'s, not {self.host.id}'s")
        with self._lock:
            lease = self.require_lease()
            if self._published.get((ep.network_id, ep.id)) == ep:
                return
            claim_keys = _claim_keys(self.keys, ep)
            result = self.client.txn(
                [
                    lease_is(self.keys.host(self.host.id), lease),
                    *(_claim_is(k, self.host.id, ep.id) for k in claim_keys),
                ],
                [Put(self.keys.endpoint(ep.network_id, ep.id), ep.encode(), lease)],
                [Get(self.keys.host(self.host.id)), *(Get(k) for k in claim_keys)],
            )
            if not result.succeeded:
                host, *claims = result.ranges
                if not host or host[0].lease != lease:
                    self._confirmed = 0.0
                    raise ClusterUnavailable("this host's lease in the cluster store lapsed; try again")
                mine = Claim(self.host.id, ep.id).encode()
                address, claim = next(
                    (a, c) for a, c in zip(_addresses(ep), claims, strict=True) if not c or c[0].value != mine
                )
                raise Conflict(
                    f"address {address} on network {ep.network_id[:12]} is not claimed by this host"
                    + (f" (held by {_holder(claim[0].value)})" if claim else "")
                )
            self._published[(ep.network_id, ep.id)] = ep

    def adopt(self, ep: EndpointRecord) -> None:
        """Publish an endpoint this host already runs (the daemon restarted): its claim is
        checked and taken again if it was freed; Conflict if another host holds it now."""
        with self._lock:
            lease = self.require_lease()
            why = self._republish(ep, lease)
            if why is not None:
                raise Conflict(f"endpoint {ep.id[:12]} cannot be published: {why}")
            self._published[(ep.network_id, ep.id)] = ep

    @contextlib.contextmanager
    def publishing(self) -> Iterator[int]:
        """The live lease, with publication held still: what the caller publishes under it
        (in a txn of its own) it tells with `published` before the block ends, so that a
        registration never misses it."""
        with self._lock:
            yield self.require_lease()

    def keep_published(self, ep: EndpointRecord) -> None:
        """ep was published by the caller's txn, in a `publishing` block: kept published from now on."""
        with self._lock:
            self._published[(ep.network_id, ep.id)] = ep

    def withdraw(self, network_id: str, endpoint_id: str) -> None:
        """Stop publishing an endpoint (its address stays claimed until GlobalIpam.release).

        Never fails for an absent store: the container is going either way. The record is
        deleted when the store answers again, or goes with this lease if that lapses first.
        """
        self.forget(network_id, endpoint_id)
        if self.alive:  # else the keep-alive thread does it, without making the caller wait
            self._flush_stale()

    def forget(self, network_id: str, endpoint_id: str) -> None:
        """withdraw without the round trip: the record is deleted by the caller's next txn
        (GlobalIpam.release deletes it with the claim, then calls `deleted`), or else by the
        keep-alive thread within a third of the TTL, or with the lease."""
        with self._lock:
            self._published.pop((network_id, endpoint_id), None)
            self._stale.add((network_id, endpoint_id))

    def deleted(self, network_id: str, endpoint_id: str) -> None:
        """The record of a forgotten endpoint is gone from the store."""
        with self._lock:
            self._stale.discard((network_id, endpoint_id))

    def _flush_stale(self) -> None:
        with self._lock:
            stale = list(self._stale)
        for network_id, endpoint_id in stale:
            try:
                self.client.delete(self.keys.endpoint(network_id, endpoint_id))
            except ClusterUnavailable as e:
                log.warning("endpoint %s stays published until the store answers: %s", endpoint_id[:12], e)
                return
            with self._lock:
                self._stale.discard((network_id, endpoint_id))

    def published(self) -> list[EndpointRecord]:
        with self._lock:
            return list(self._published.values())

    def _republish(self, ep: EndpointRecord, lease: int) -> str | None:
        """Publish ep again if its claims (one per address family) are still, or again, this
        host's; else why not."""
        claim_keys = _claim_keys(self.keys, ep)
        host_key = self.keys.host(self.host.id)
        net_key = self.keys.network(ep.network_id)
        ep_key = self.keys.endpoint(ep.network_id, ep.id)
        mine = Claim(self.host.id, ep.id).encode()
        result = self.client.txn(
            [lease_is(host_key, lease), *(_claim_is(k, self.host.id, ep.id) for k in claim_keys)],
            [Put(ep_key, ep.encode(), lease)],
            [*(Get(k) for k in claim_keys), Get(net_key)],
        )
        for _ in range(4):
            if result.succeeded:
                return None
            *claims, network = result.ranges
            for address, claim in zip(_addresses(ep), claims, strict=True):
                if claim and claim[0].value != mine:
                    return (
                        f"address {address} was given to {_holder(claim[0].value)} while this host was away"
                    )
            if not network:
                return f"network {ep.network_id[:12]} was removed while this host was away"
            # A claim was freed after the grace period: take it again if nobody else has, the
            # ones still ours kept as they are, all in one txn.
            freed = [k for k, claim in zip(claim_keys, claims, strict=True) if not claim]
            result = self.client.txn(
                [
                    lease_is(host_key, lease),
                    exists(net_key),
                    *(absent(k) if k in freed else _claim_is(k, self.host.id, ep.id) for k in claim_keys),
                ],
                [*(Put(k, mine) for k in freed), Put(ep_key, ep.encode(), lease)],
                [*(Get(k) for k in claim_keys), Get(net_key)],
            )
            if result.succeeded:
                log.warning("claim of %s was freed while away; claimed again", ep.addresses[0])
                return None
            host = self.client.get(host_key)
            if host is None or host.lease != lease:
                break
        raise ClusterUnavailable("this host's lease in the cluster store lapsed; try again")

    # -- the keep-alive thread ------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        """Refresh every third of the TTL; after a failure, try again at once (the client's own
        failover runs until the lease would expire), so an election costs no lease."""
        period = max(self.ttl / 3, 0.3)
        pause = period
        failing = False
        while not self._stop.wait(pause):
            pause = period
            if not self.lease:
                try:
                    self.register()
                except DockyardError as e:
                    log.warning("registering in the cluster store failed: %s", e)
                    pause = min(period, 1.0)
                continue
            sent = time.monotonic()
            try:
                left = self.client.keepalive(self.lease, timeout=max(self._confirmed + self.ttl - sent, 1.0))
            except ClusterUnavailable as e:
                # Once per outage, not once per try.
                (log.debug if failing else log.warning)("lease keep-alive failed: %s", e)
                failing = True
                pause = 0.1
                continue
            if failing:
                log.warning("lease keep-alive works again")
                failing = False
            if left > 0:
                self._confirmed = sent
                if self._stale:
                    self._flush_stale()
                continue
            log.warning("lease %x of host %s expired; registering again", self.lease, self.host.id)
            try:
                self.register()
                self.renewals += 1
            except DockyardError as e:
                log.warning("registering again failed: %s", e)
                pause = min(period, 1.0)


def _addresses(ep: EndpointRecord) -> list[IPv4Address | IPv6Address]:
    """The addresses an endpoint holds a claim for: its IPv4 one and its IPv6 one, each if any."""
    return list(ep.addresses)


def _claim_keys(keys: Keys, ep: EndpointRecord) -> list[str]:
    return [keys.claim(ep.network_id, a) for a in _addresses(ep)]


def _claim_is(claim_key: str, host_id: str, endpoint_id: str) -> Compare:
    return value_is(claim_key, Claim(host_id, endpoint_id).encode())


def _holder(raw: bytes) -> str:
    try:
        claim = Claim.decode(raw)
    except RecordError:
        return "another record"
    return f"host {claim.host_id}"
