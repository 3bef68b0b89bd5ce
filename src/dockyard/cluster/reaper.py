"""Freeing the addresses of a host that is gone, after a grace period, and never before.

A host is live while `hosts/<id>` exists (it is under the host's lease).
Its claims (`ipam/...`) are not under the lease, so when the lease expires
they stay. Any daemon's sweep that finds claims of a host with no record:

1. marks it gone: one txn, only if the host record and the mark are both
   absent, puts `gone/<id>` (no lease) and `grace/<id>` under a new lease
   whose TTL is the grace period. The timer is etcd's (its leader's clock),
   not a host's: skewed clocks cannot shorten it, and a leader change only
   lengthens a lease, never shortens it;
2. once `grace/<id>` has expired, frees the claims: txns of at most 100
   claims, each succeeding only if the host record is still absent, the
   mark is the same one, the timer is gone and each claim unchanged; the
   last of them removes the mark too.

A host that comes back (session.py) deletes its mark and timer in the
same txn that puts its record, so a sweep racing with it fails its
compare; if its claims were already freed it claims them again or, when
another host took one meanwhile, reports that endpoint as a conflict
instead of publishing a duplicate.

Every daemon sweeps (when a host record or a timer goes, and every minute);
the txns make concurrent sweeps harmless.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from dockyard.cluster.etcd import EtcdClient
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim, Gone, RecordError
from dockyard.cluster.wire import KV, Delete, Get, Put, absent, mod_is, prefix_end
from dockyard.errors import DockyardError

log = logging.getLogger("dockyard.cluster")

BATCH = 100  # etcd's default --max-txn-ops is 128


@dataclass(frozen=True)
class SweepReport:
    marked: tuple[str, ...] = ()  # hosts newly seen gone: their grace period starts
    freed: tuple[tuple[str, int], ...] = ()  # (host, claims freed)


class Reaper:
    def __init__(self, client: EtcdClient, keys: Keys, host_id: str, grace: int) -> None:
        if grace < 1:
            raise ValueError("the grace period is at least a second")
        self.client = client
        self.keys = keys
        self.host_id = host_id
        self.grace = grace

    def sweep(self) -> SweepReport:
        hosts, gone, timers, claims = self._read()
        holders: dict[str, list[KV]] = {}
        for kv in claims:
            try:
                holders.setdefault(Claim.decode(kv.value).host_id, []).append(kv)
            except RecordError:
                continue
        marked: list[str] = []
        freed: list[tuple[str, int]] = []
        for host in sorted((set(holders) | set(gone)) - set(hosts)):
            if host not in gone:
                if self._mark(host):
                    marked.append(host)
            elif host not in timers:
                count = self._free(host, gone[host], holders.get(host, []))
                if count is not None:
                    freed.append((host, count))
        return SweepReport(tuple(marked), tuple(freed))

    def _read(self) -> tuple[dict[str, KV], dict[str, KV], dict[str, KV], list[KV]]:
        """Hosts, marks, timers and every claim, at one revision."""
        prefixes = [self.keys.prefix(k) for k in (Kind.HOST, Kind.GONE, Kind.GRACE, Kind.CLAIM)]
        result = self.client.txn([], [Get(p, prefix_end(p)) for p in prefixes])
        by_id = []
        for kvs in result.ranges[:3]:
            table = {}
            for kv in kvs:
                parsed = self.keys.parse(kv.key)
                if parsed is not None:
                    table[parsed.parts[0]] = kv
            by_id.append(table)
        return by_id[0], by_id[1], by_id[2], result.ranges[3]

    def _mark(self, host: str) -> bool:
        lease, _ = self.client.grant(self.grace)
        result = self.client.txn(
            [absent(self.keys.host(host)), absent(self.keys.gone(host))],
            [
                Put(self.keys.gone(host), Gone(self.host_id, self.grace, lease).encode()),
                Put(self.keys.grace(host), b"", lease),
            ],
        )
        if not result.succeeded:
            with contextlib.suppress(DockyardError):
                self.client.revoke(lease)
            return False
        log.warning("host %s is gone; its addresses are freed in %d s unless it comes back", host, self.grace)
        return True

    def _free(self, host: str, mark: KV, claims: list[KV]) -> int | None:
        """Free a gone host's claims; None when it came back or anything changed meanwhile."""
        host_key, gone_key, grace_key = self.keys.host(host), self.keys.gone(host), self.keys.grace(host)
        batches = [claims[i : i + BATCH] for i in range(0, len(claims), BATCH)] or [[]]
        done = 0
        for n, batch in enumerate(batches):
            # The last batch removes the mark too: a peer that sees the claims gone sees the mark gone.
            last = [Delete(gone_key)] if n == len(batches) - 1 else []
            result = self.client.txn(
                [
                    absent(host_key),
                    mod_is(gone_key, mark.mod_revision),
                    absent(grace_key),
                    *(mod_is(kv.key, kv.mod_revision) for kv in batch),
                ],
                [*(Delete(kv.key) for kv in batch), *last],
            )
            if not result.succeeded:
                return None
            done += len(batch)
        if done:
            log.warning("host %s gone past its grace period: %d addresses freed", host, done)
        return done
