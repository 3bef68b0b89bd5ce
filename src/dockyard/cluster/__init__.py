"""Everything several hosts must agree on, in etcd; the only code that speaks to it.

Local state stays in SQLite (store/); what lives here is what no one host
can decide alone: global networks, their addresses, which host runs which
endpoint, and which hosts are alive. The parts, one job each:

    config.py    --cluster-store etcd://h:p[,h:p...], TLS files, user/password
    wire.py      etcd's JSON shapes: kv, events, txn conditions and operations
    etcd.py      the v3 JSON gateway client: failover, TLS, auth
    stream.py    one watch stream on one member
    keys.py      the key layout
    records.py   the values (JSON) under the keys
    session.py   this host's lease, its record and its published endpoints
    networks.py  global networks: create once, list, find, remove when unused
    ipam.py      global addresses: claim by create-if-absent txn, release
    reaper.py    a gone host's claims freed after the grace period
    view.py      the cache of networks, hosts, remote endpoints; the listener
    watch.py     list, then watch, resume, resync: what feeds the view

`Cluster` puts them together for the daemon (one per daemon started with
--cluster-store). It imports only dockyard's data leaves and pure policy.
"""

from __future__ import annotations

import logging
import threading

from dockyard.cluster.config import StoreConfig
from dockyard.cluster.etcd import Dial, EtcdClient
from dockyard.cluster.ipam import GlobalIpam
from dockyard.cluster.keys import ROOT, Keys
from dockyard.cluster.networks import Networks
from dockyard.cluster.reaper import Reaper
from dockyard.cluster.records import Claim, EndpointRecord, HostRecord, NetworkRecord
from dockyard.cluster.session import DEFAULT_TTL, ConflictHandler, HostSession
from dockyard.cluster.view import ClusterListener, ClusterView
from dockyard.cluster.watch import WatchLoop
from dockyard.errors import DockyardError

log = logging.getLogger("dockyard.cluster")

# How long a gone host's addresses are kept for it (seconds).
DEFAULT_GRACE = 600

__all__ = [
    "DEFAULT_GRACE",
    "Claim",
    "Cluster",
    "ClusterListener",
    "ClusterView",
    "EndpointRecord",
    "EtcdClient",
    "GlobalIpam",
    "HostRecord",
    "HostSession",
    "NetworkRecord",
    "Networks",
    "Reaper",
    "StoreConfig",
    "WatchLoop",
]


class Cluster:
    """The session, the watch and the reaper of one host, and the operations the engine calls.

    cluster = Cluster(config, HostRecord(host_id, vtep, hostname), listener=overlay_driver)
    cluster.start()                       # never raises: an absent store is retried
    cluster.require()                     # before new overlay work: ClusterUnavailable
    net = cluster.networks.create(...)    # or cluster.view.network(ref) / networks.find
    addr = cluster.ipam.claim(net, endpoint_id[, address])
    cluster.session.publish(EndpointRecord(...))   # before the container starts
    # or both at once, one txn: addr, addr6 = cluster.ipam.claim_endpoint(net, endpoint_id, ...)
    cluster.ipam.release(net.id, addr, endpoint_id)  # the claim and the record, one txn
    cluster.stop()
    """

    def __init__(
        self,
        config: StoreConfig,
        host: HostRecord,
        *,
        listener: ClusterListener | None = None,
        on_conflict: ConflictHandler | None = None,
        ttl: int = DEFAULT_TTL,
        grace: int = DEFAULT_GRACE,
        root: str = ROOT,
        dial: Dial | None = None,
        idle: float = 2.0,
        sweep_every: float = 60.0,
    ) -> None:
        self.client = EtcdClient(config, dial)
        self.keys = Keys(root)
        self.host = host
        self.session = HostSession(self.client, self.keys, host, ttl, on_conflict)
        self.networks = Networks(self.client, self.keys, host.id)
        self.reaper = Reaper(self.client, self.keys, host.id, grace)
        self.view = ClusterView(self.keys, host.id, listener, on_host_gone=self.kick_reaper)
        self.ipam = GlobalIpam(self.client, self.keys, self.session, self.view)
        self.watch = WatchLoop(self.client, self.keys, self.view, idle=idle)
        self.sweep_every = sweep_every
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.session.start()
        self.watch.start()
        self._reaper = threading.Thread(target=self._sweep_loop, name="cluster-reaper", daemon=True)
        self._reaper.start()

    def stop(self, revoke: bool = False) -> None:
        """Stop the threads. revoke: this host leaves now (see HostSession.stop)."""
        self._stop.set()
        self._kick.set()
        self.watch.stop()
        if self._reaper is not None:
            self._reaper.join(timeout=self.client.config.deadline + 1)
            self._reaper = None
        self.session.stop(revoke)
        self.client.close()

    def require(self) -> None:
        """Raise ClusterUnavailable unless the store has confirmed this host within its TTL."""
        self.session.require_lease()

    def kick_reaper(self) -> None:
        self._kick.set()

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.sweep_every)
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                self.reaper.sweep()
            except DockyardError as e:
                log.warning("reaper: %s", e)
            except Exception:
                log.exception("reaper: unexpected error")
