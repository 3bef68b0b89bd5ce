"""Overlay networks in the engine: what a daemon started with --cluster-store does with the cluster.

A global network lives in etcd (cluster/networks.py) and is mirrored into
this host's store as a network of driver `overlay` (same id and name, the
VNI in its options, the MTU this host's underlay allows less 50 unless
`com.docker.network.driver.mtu` says), whose kernel side the overlay
driver makes. The mirror follows the watch: a network made on any host
appears on every host (`network ls` SCOPE global), one removed goes. So
the engine's other use cases (run, connect, inspect, ls) work on it as on
a local network; only these differ:

- `network create -d overlay` makes the global record first (once, by txn),
  then the mirror; `network rm` removes the global record (refused while
  any host holds an address or publishes an endpoint on it), then the mirror;
- an endpoint's address is claimed in etcd (create-if-absent txn) instead
  of next-fit over the local store, and on a dual-stack network (--ipv6)
  its IPv6 address likewise, in the same txn (on an IPv6-only one,
  --ipv4=false, that address alone); the endpoint is published
  (its MAC, address, VTEP and names) before the container starts: for a
  container, with its claims in that one txn; its claim and its record go
  together, in one txn, once its link is down (no frame crosses it), before
  the link's deletion.

Without --cluster-store none of this exists and nothing changes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard import digests
from dockyard.cluster import Cluster, ClusterListener, EndpointRecord, HostRecord, NetworkRecord, StoreConfig
from dockyard.cluster.keys import ROOT
from dockyard.drivers.overlay import VNI_OPTION, VXLAN_OVERHEAD, OverlayDriver, vxlan_name
from dockyard.errors import ClusterUnavailable, Conflict, DockyardError, InvalidArgument
from dockyard.kernel import files
from dockyard.kernel.vxlan import Vxlan
from dockyard.model import DriverName, Endpoint, Network
from dockyard.settings import DaemonSettings
from dockyard.store import RemoteEndpoint, now

if TYPE_CHECKING:
    from dockyard.engine import Engine
    from dockyard.engine.endpoints import EndpointFor
    from dockyard.engine.networks.service import NetworkSpec

log = logging.getLogger("dockyard.cluster")

HOST_ID_FILE = "cluster-host-id"
# Options `network create -d overlay` takes; anything else is refused, never ignored.
MTU_OPTION = "com.docker.network.driver.mtu"
ENCRYPTED_OPTION = "encrypted"
# How often this host's claims are compared with its endpoints (seconds); a claim is freed
# when two comparisons in a row find no endpoint of its, so a start between its claim and
# its record is never taken for a leak.
CLAIM_GC_INTERVAL = float(os.environ.get("DOCKYARD_CLAIM_GC_INTERVAL") or 30.0)


@dataclass(frozen=True)
class ClusterSettings:
    """--cluster-store and friends, checked: what the daemon needs to join the cluster."""

    config: StoreConfig
    root: str
    advertise: str

    @classmethod
    def of(cls, settings: DaemonSettings) -> ClusterSettings | None:
        if not settings.cluster_store:
            return None
        opts = dict(settings.cluster_store_opts)
        config = StoreConfig.parse(
            settings.cluster_store,
            ca=opts.get("kv.cacertfile"),
            cert=opts.get("kv.certfile"),
            key=opts.get("kv.keyfile"),
            username=opts.get("kv.username"),
            password=opts.get("kv.password"),
        )
        root = ROOT
        if opts.get("kv.prefix"):
            root = "/" + opts["kv.prefix"].strip("/") + "/v1/"
        return cls(config, root, settings.cluster_advertise or "")


def advertise_address(text: str, vxlan: Vxlan) -> ipaddress.IPv4Address:
    """--cluster-advertise ADDR|IFACE: this host's VTEP, an address of this host."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        found = vxlan.address_of(text)
        if found is None:
            raise InvalidArgument(
                f"--cluster-advertise {text}: neither an IPv4 address nor an interface with one"
            ) from None
        return found
    if vxlan.mtu_of_address(address) is None:
        raise InvalidArgument(f"--cluster-advertise {text}: no interface of this host has that address")
    return address


def host_id(root: Path) -> str:
    """This host's id in the cluster, kept under $ROOT: the same across restarts."""
    kept = files.read(root, root / HOST_ID_FILE)
    if kept and kept.strip():
        return kept.decode(errors="replace").strip()
    made = f"{socket.gethostname()[:20]}-{digests.token_hex(6)}"
    files.write(root, root / HOST_ID_FILE, made + "\n")
    return made


class EngineCluster(ClusterListener):
    """The engine's side of the cluster: global networks mirrored, global addresses, publication."""

    def __init__(self, engine: Engine, cs: ClusterSettings) -> None:
        self.e = engine
        vxlan = Vxlan(engine.k.netlink)
        self.vtep = advertise_address(cs.advertise, vxlan)
        self.underlay_mtu = vxlan.mtu_of_address(self.vtep) or 1500
        self.host = HostRecord(host_id(engine.settings.root), self.vtep, socket.gethostname())
        self.cluster = Cluster(cs.config, self.host, listener=self, on_conflict=self._conflict, root=cs.root)
        self.driver = OverlayDriver(engine.k, engine.owner, self.vtep, self.cluster.view)
        engine.drivers.add(DriverName.OVERLAY, self.driver)
        engine.networks.overlay = self
        engine.endpoints.cluster = self
        self._synced = threading.Event()
        # Set by `system reset`: no global network is mirrored here again (see hold()).
        self._held = False
        self._orphans: set[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address, str]] = set()
        self._claims_checked = time.monotonic()

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Never raises: an absent store is retried; local work goes on meanwhile."""
        self.cluster.start()
        threading.Thread(target=self._first_sync, name="cluster-sync", daemon=True).start()

    def _first_sync(self) -> None:
        while not self.cluster.view.wait_ready(5):
            if self.cluster._stop.is_set():
                return
        try:
            self.sync()
        except Exception:
            log.exception("first sync with the cluster failed; the reconcile tries again")
        self._synced.set()

    def hold(self) -> None:
        """From `system reset` on, mirror no global network again: reset removes every mirror and
        the daemon then forgets its state and stops, but the network records stay in the cluster,
        so the watch or the periodic reconcile would otherwise make a removed mirror's bridge and
        VXLAN device again in between, and nothing would ever remove them. Under the engine's
        lock: a mirror being made finishes first, and reset removes it."""
        with self.e.lock:
            self._held = True

    def stop(self) -> None:
        running = bool(self._live_owners())
        self.cluster.stop(revoke=not running)

    def _live_owners(self) -> list[str]:
        """Whose endpoints this host keeps published: its running containers, and the overlay
        attachments of foreign runtimes (Docker's plugin, CNI), which live while their runtime
        says so; a daemon stopping leaves their records to the next one, which adopts them."""
        running = [c.id for c in self.e.store.containers() if c.running]
        overlays = {n.id for n in self.e.store.networks() if n.driver is DriverName.OVERLAY}
        attached = {
            ep.owner.key
            for ep in self.e.store.endpoints()
            if ep.owner.container_id is None and ep.network_id in overlays
        }
        return running + sorted(attached)

    def reconcile(self) -> list[str]:
        """The periodic part: the mirror and every network's FDB and neighbour tables."""
        if not self.cluster.view.ready.is_set():
            return []
        self.sync()
        return self.driver.sync_all() + self.free_orphan_claims()

    def free_orphan_claims(self) -> list[str]:
        """Free this host's claims that no endpoint here owns (a release the store missed, a
        claim made just before a crash), once two passes in a row have found them so."""
        if time.monotonic() - self._claims_checked < CLAIM_GC_INTERVAL or not self.cluster.session.alive:
            return []
        self._claims_checked = time.monotonic()
        owned = {ep.id for ep in self.e.store.endpoints(state=None)}
        orphans = {claim for claim in self.cluster.ipam.mine() if claim[2] not in owned}
        due, self._orphans = orphans & self._orphans, orphans - self._orphans
        out = []
        for network_id, address, endpoint_id in sorted(due):
            if self.cluster.ipam.release(network_id, address, endpoint_id):
                out.append(
                    f"address {address} of network {network_id[:12]}: claim freed, no endpoint here owns it"
                )
        return out

    def sync(self) -> None:
        """Mirror every global network; drop mirrors of networks gone; publish what runs here."""
        records = {n.id: n for n in self.cluster.view.networks()}
        for record in records.values():
            self.mirror(record)
        # The resolver's copy of other hosts' names, whole again where it differs.
        wanted = {_remote(ep) for network_id in records for ep in self.cluster.view.endpoints(network_id)}
        if set(self.e.store.remote_endpoints()) != wanted:
            self.e.store.replace_remote_endpoints(wanted)
        for network in self.e.store.networks():
            if network.driver is DriverName.OVERLAY and network.id not in records:
                self.unmirror(network.id)
        self._adopt()

    def _adopt(self) -> None:
        published = {(r.network_id, r.id) for r in self.cluster.session.published()}
        if not self.cluster.session.alive:
            return
        for owner in self._live_owners():
            for ep in self.e.store.endpoints(container_id=owner):
                network = self.e.store.find_network(ep.network_id)
                if network is None or network.driver is not DriverName.OVERLAY:
                    continue
                if (ep.network_id, ep.id) in published:
                    continue
                try:
                    self.cluster.session.adopt(self._record(ep))
                except Conflict as err:
                    self._conflict(self._record(ep), str(err))
                except DockyardError as err:
                    log.warning("endpoint %s not published yet: %s", ep.id[:12], err)

    def _conflict(self, ep: EndpointRecord, why: str) -> None:
        log.error(
            "container %s: its address %s on network %s is another host's now (%s); "
            "it is cut off from the overlay",
            ep.container_id[:12],
            ep.addresses[0],
            ep.network_id[:12],
            why,
        )

    # -- the listener (the watch's thread) ---------------------------------------------------------

    def network_added(self, network: NetworkRecord) -> None:
        self.mirror(network)

    def network_removed(self, network: NetworkRecord) -> None:
        self.unmirror(network.id)

    def host_removed(self, host: HostRecord) -> None:
        self.driver.host_removed(host)

    def endpoint_added(self, ep: EndpointRecord) -> None:
        self.driver.endpoint_added(ep)
        self.e.store.put_remote_endpoint(_remote(ep))

    def endpoint_updated(self, old: EndpointRecord, new: EndpointRecord) -> None:
        self.driver.endpoint_updated(old, new)
        self.e.store.put_remote_endpoint(_remote(new))

    def endpoint_removed(self, ep: EndpointRecord, successor: EndpointRecord | None) -> None:
        self.driver.endpoint_removed(ep, successor)
        self.e.store.delete_remote_endpoint(ep.id)

    # -- networks -----------------------------------------------------------------------------------

    def create(self, spec: NetworkSpec) -> Network:
        """`network create -d overlay`: the global record once, then this host's mirror."""
        mtu: int | None = None
        for key, value in spec.options:
            if key == MTU_OPTION:
                mtu = int(value) if value.isascii() and value.isdigit() and len(value) <= 5 else 0
                if not 68 <= mtu <= 65535:
                    raise InvalidArgument(
                        f"invalid value {value!r} for option {key}: an MTU from 68 to 65535"
                    )
            elif key == ENCRYPTED_OPTION:
                raise InvalidArgument(
                    "option encrypted: this kernel has no IPsec ESP, and an overlay network is never "
                    "sent in clear text when encryption was asked"
                )
            else:
                raise InvalidArgument(f"option {key} is not supported by the overlay driver")
        if not spec.enable_ipv4:
            self.e.networks.ipv6.check_ipv6_only(spec, None)
        if self.e.store.network_named(spec.name) is not None:
            raise Conflict(f"network with name {spec.name} already exists")
        self.cluster.require()
        record = self.cluster.networks.create(
            spec.name,
            subnet=spec.subnet,
            gateway=spec.gateway,
            internal=spec.internal,
            attachable=spec.attachable,
            mtu=mtu,
            labels=spec.labels,
            # This host's networks and routes too (another host's are its own to report).
            avoid=self.e.networks.taken_subnets(),
            ipv6=spec.enable_ipv6,
            subnet6=spec.subnet6,
            gateway6=spec.gateway6,
            pools6=self.e.networks.ipv6.pools() if spec.enable_ipv6 and spec.subnet6 is None else (),
            avoid6=self.e.networks.ipv6.taken() if spec.enable_ipv6 else (),
            ipv4=spec.enable_ipv4,
            more=spec.more_subnets,
            ip_range=spec.ip_range,
            ip_range6=spec.ip_range6,
            aux=spec.aux_addresses,
        )
        network = self.mirror(record)
        if network is None:
            raise Conflict(f"network {spec.name} was made in the cluster but cannot be used on this host")
        return network

    def remove(self, network: Network) -> None:
        self.cluster.require()
        self.cluster.networks.remove(network.id)
        self.unmirror(network.id)

    def mirror(self, record: NetworkRecord) -> Network | None:
        """This host's copy of a global network and its kernel side; None when it cannot be had."""
        with self.e.lock:
            present = self.e.store.find_network(record.id)
            if present is not None or self._held:
                return present
            clash = self.e.store.find_network(record.name)
            if clash is not None:
                log.error(
                    "global network %s is not usable on this host: a local network has its name", record.name
                )
                return None
            network = Network(
                id=record.id,
                name=record.name,
                driver=DriverName.OVERLAY,
                subnet=record.subnet,
                gateway=record.gateway,
                bridge="dy-" + record.id[:12],
                internal=record.internal,
                mtu=record.mtu or self.underlay_mtu - VXLAN_OVERHEAD,
                options=((VNI_OPTION, str(record.vni)),)
                + (((MTU_OPTION, str(record.mtu)),) if record.mtu else ()),
                labels=record.labels,
                created=now(),
                enable_ipv6=record.subnet6 is not None,
                subnet6=record.subnet6,
                gateway6=record.gateway6,
                more_subnets=record.more_subnets,
                ip_range=record.ip_range,
                ip_range6=record.ip_range6,
                aux_addresses=record.aux,
            )
            self.e.store.add_network(network)
            try:
                self.driver.create_network(network)
            except BaseException:
                with contextlib.suppress(DockyardError):
                    self.driver.delete_network(network)
                self.e.store.delete_network(network.id)
                raise
        self.e.networks_changed()
        return network

    def unmirror(self, network_id: str) -> None:
        with self.e.lock:
            network = self.e.store.find_network(network_id)
            if network is None or network.driver is not DriverName.OVERLAY:
                return
            if self.e.store.endpoints(network_id=network_id):
                # The veths of containers that just ended go first (their claims, released once
                # the ports were down, let the network go on the host that removed it).
                self.e.endpoints.settle()
            if self.e.store.endpoints(network_id=network_id):
                return  # containers here still use it (they were there first): kept until they go
            self.driver.delete_network(network)
            self.e.store.delete_network(network.id)
        self.e.networks_changed()

    def record_of(self, network: Network) -> NetworkRecord:
        record = self.cluster.view.network(network.id)
        if record is None:
            raise ClusterUnavailable(f"network {network.name} is not (or no longer) known to the cluster")
        return record

    # -- endpoints (called by engine/endpoints.py for overlay networks) --------------------------------

    def claim(
        self,
        network: Network,
        endpoint_id: str,
        requested: ipaddress.IPv4Address | None,
        requested6: ipaddress.IPv6Address | None,
        publish: EndpointFor | None,
    ) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
        """Each family's claim in one txn, and with publish the endpoint's record too."""
        self.cluster.require()
        return self.cluster.ipam.claim_endpoint(
            self.record_of(network),
            endpoint_id,
            requested,
            requested6,
            (lambda a4, a6: self._record(publish(a4, a6))) if publish is not None else None,
        )

    def unclaim(
        self, network_id: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, endpoint_id: str
    ) -> None:
        try:
            self.cluster.ipam.release(network_id, address, endpoint_id)
        except DockyardError as e:
            log.warning("address %s stays claimed until the store answers: %s", address, e)

    def publish(self, endpoint: Endpoint) -> None:
        self.cluster.session.publish(self._record(endpoint))

    def withdraw(self, endpoint: Endpoint, unclaiming: bool = False) -> None:
        if unclaiming:
            self.cluster.session.forget(endpoint.network_id, endpoint.id)
        else:
            self.cluster.session.withdraw(endpoint.network_id, endpoint.id)

    def _record(self, ep: Endpoint) -> EndpointRecord:
        c = self.e.store.find_container(ep.owner.key) if ep.owner.container_id else None
        return EndpointRecord(
            network_id=ep.network_id,
            id=ep.id,
            host_id=self.host.id,
            vtep=self.vtep,
            mac=ep.mac.lower(),
            address=ep.address.ip if ep.address is not None else None,
            container_id=ep.owner.key,
            name=c.name if c is not None else "",
            aliases=ep.aliases,
            address6=ep.address6.ip if ep.address6 is not None else None,
        )


def _remote(ep: EndpointRecord) -> RemoteEndpoint:
    return RemoteEndpoint(ep.id, ep.network_id, ep.address, ep.dns_names, ep.address6)


def attach(engine: Engine) -> EngineCluster | None:
    """Join the cluster when the daemon was started with --cluster-store; None otherwise."""
    cs = ClusterSettings.of(engine.settings)
    if cs is None:
        return None
    return EngineCluster(engine, cs)


__all__ = ["EngineCluster", "attach", "vxlan_name"]
