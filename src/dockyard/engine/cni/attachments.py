"""CNI attachments: the daemon's side of dockyard-cni's ADD, DEL and GC.

An attachment is what the CNI spec keys state by: (network name,
CNI_CONTAINERID, CNI_IFNAME). Here it is one endpoint on a dockyard network,
owned by the attachment (model.EndpointOwner of kind CNI, its key
`owner_key`: "cni-" and 60 hex digits of a hash of that triple), plus one
row of the `attachments` table that keeps the readable triple and the netns.

This module owns:
- the attachment lifecycle: ADD records then plugs (undone whole on
  failure), DEL releases (idempotent; the veth goes through the reaper),
  GC releases what the runtime no longer lists;
- what the rest of the daemon asks of attachments: their nftables elements
  (reconcile.py keeps them through a gc), the ADDs a crash cut short
  (`recover`), and their names among a network's users (`members`, `labels`).

The network a config names is cni/networks.py's; CHECK and STATUS
are cni/checks.py's. Address and host-port choice and all kernel
changes are endpoints.py's, the bridge driver's and kernel/'s; the CNI wire
format (env, JSON, result versions) is cni.py's and api/cni.py's.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dockyard import digests
from dockyard.drivers import Driver
from dockyard.engine.cni.networks import (
    CNI_LABEL,
    DEFAULT_ROUTE,
    DEFAULT_ROUTE6,
    CniError,
    ConfigNetworks,
    NetConf,
    ResolvedRoute,
    routes_of,
)
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.steps import Undo, step
from dockyard.errors import Conflict, DockyardError, InvalidArgument, KernelError
from dockyard.kernel import Kernel, netlink, reads
from dockyard.kernel import netns as nsmod
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network, OwnerKind, PortBinding, PortRequest
from dockyard.policy import ports, rules
from dockyard.store import Store
from dockyard.wire.cni import CODE_INVALID_CONFIG, CODE_INVALID_ENV

# The netns of an attachment that is a Docker endpoint (engine/docker_plugin.py):
# Docker keeps the namespace, and its container id is the endpoint's id.
DOCKER_ENDPOINT = "docker"


@dataclass(frozen=True)
class AttachRequest:
    """One ADD or CHECK. `netns` is CNI_NETNS as the runtime gave it, for records and
    messages only; the namespace itself is `netns_fd`, the descriptor dockyard-cni opened
    and passed (the daemon never opens the runtime's path: it may be mounted where the
    daemon cannot see it). The descriptor is the API's, open for the request's time."""

    net: NetConf
    container_id: str
    ifname: str
    netns: str
    ip: ipaddress.IPv4Address | None = None
    mac: str | None = None
    ports: tuple[PortRequest, ...] = ()
    netns_fd: int | None = None
    ip6: ipaddress.IPv6Address | None = None  # the `ips` capability's IPv6 address

    @property
    def sandbox(self) -> Path:
        """The namespace to work in: the passed descriptor (checked by check_netns first)."""
        assert self.netns_fd is not None
        return nsmod.by_descriptor(self.netns_fd)


def check_netns(netns: str, fd: int | None) -> None:
    """The descriptor passed for CNI_NETNS must be a network namespace, and not the daemon's own.

    Judged by identity (the namespace's type and inode), never by the path,
    which the daemon does not open.
    """
    if fd is None:
        raise CniError(
            CODE_INVALID_ENV,
            f"no descriptor of CNI_NETNS {netns} came with the request: dockyard-cni opens the "
            "namespace and passes it (SCM_RIGHTS); a plugin older than the daemon does not",
        )
    kind = nsmod.netns_kind(fd)
    if kind != "netns":
        raise CniError(CODE_INVALID_ENV, f"CNI_NETNS {netns} is not a network namespace: it is {kind}")
    if nsmod.is_own_netns(fd):
        raise CniError(CODE_INVALID_ENV, f"CNI_NETNS {netns} is the host's own network namespace")


@dataclass(frozen=True)
class Attached:
    """What ADD made, for the result."""

    network: Network
    endpoint: Endpoint
    netns: str
    routes: tuple[ResolvedRoute, ...]
    bridge_mac: str
    host_mac: str


@dataclass(frozen=True)
class Attachment:
    owner: str
    network_id: str
    network: str
    container_id: str
    ifname: str
    netns: str
    state: str

    @classmethod
    def from_row(cls, row: tuple[str, ...]) -> Attachment:
        return cls(*row[:7])

    @property
    def endpoint_owner(self) -> EndpointOwner:
        return EndpointOwner.attachment(self.owner)

    @property
    def label(self) -> str:
        if self.netns == DOCKER_ENDPOINT:
            return f"docker:{self.container_id[:12]}"
        return f"cni:{self.container_id[:12]}/{self.ifname}"

    # As a member of a network (network inspect), next to containers: an id and a name.
    @property
    def id(self) -> str:
        return self.owner

    @property
    def name(self) -> str:
        return self.label


def owner_key(network: str, container_id: str, ifname: str) -> str:
    """The owner of an attachment's records: stable, fixed length, like a container id."""
    digest = digests.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()
    return "cni-" + digest[:60]


class Attachments:
    """The CNI attachments of one root: ADD, DEL, GC, and what reconcile.py asks of them."""

    def __init__(
        self,
        *,
        store: Store,
        lock: threading.RLock,
        kernel: Kernel,
        drivers: Mapping[DriverName, Driver],
        endpoints: Endpoints,
        networks: ConfigNetworks,
    ) -> None:
        self.store = store
        self.lock = lock
        self.k = kernel
        self.drivers = drivers
        self.endpoints = endpoints
        self.networks = networks

    # -- lookups ---------------------------------------------------------

    def find(self, owner: str) -> Attachment | None:
        row = self.store.find_attachment(owner)
        return Attachment.from_row(row) if row else None

    def all(self, network: str | None = None) -> list[Attachment]:
        return [Attachment.from_row(r) for r in self.store.attachments(network)]

    def labels(self) -> dict[str, str]:
        """Owner key -> readable label, for listings of a network's users."""
        return {a.owner: a.label for a in self.all()}

    def members(self, network: Network) -> list[tuple[Attachment, Endpoint]]:
        """The attachments on a network with their endpoints (network inspect)."""
        found = {a.owner: a for a in self.all(network.name)}
        return [
            (found[ep.owner.key], ep)
            for ep in self.store.endpoints(network_id=network.id)
            if ep.owner.kind is OwnerKind.CNI and ep.owner.key in found
        ]

    # -- ADD -------------------------------------------------------------

    def _ifname_taken(self, req: AttachRequest) -> bool:
        try:
            return req.ifname in netlink.sandbox_links(req.sandbox)
        except (OSError, DockyardError):
            return False

    def add(self, req: AttachRequest) -> Attached:
        check_netns(req.netns, req.netns_fd)
        owner = owner_key(req.net.name, req.container_id, req.ifname)
        with self.lock:
            if self.find(owner) is not None:
                raise CniError(
                    CODE_INVALID_ENV,
                    f"container {req.container_id} already has interface {req.ifname} on network "
                    f"{req.net.name}: DEL it before adding it again",
                )
            if self.store.endpoints(container_id=owner, state="releasing"):
                self.endpoints.settle()
            created = self.store.find_network(req.net.name) is None
            network = self.networks.network_for(req.net)
            try:
                return self._add_to(network, req, owner)
            except BaseException:
                if created:  # a failed first ADD leaves no network behind either
                    self.networks.remove_unused(network)
                raise

    def _add_to(self, network: Network, req: AttachRequest, owner: str) -> Attached:
        if req.ip is not None and network.subnet is None:
            raise CniError(
                CODE_INVALID_CONFIG,
                f"ips: IPv4 address {req.ip} asked for, but network {network.name} is IPv6-only: "
                "ask for an IPv6 address",
            )
        try:
            self.endpoints.check_request(network, req.ip, bool(req.ports), req.ip6)
            # A mapping on `::` or an IPv6 address needs the network's IPv6, as -p does.
            has6 = network.enable_ipv6 and network.subnet6 is not None
            every = ports.families(network.subnet is not None, has6)
            ports.check_families(req.ports, every, network.name)
        except InvalidArgument as err:
            raise CniError(CODE_INVALID_CONFIG, str(err)) from None
        routes_of(req.net, network)  # checked before anything changes; the endpoint's gateways follow
        self.networks.check_capacity(network, req.ip if network.subnet is not None else req.ip6)
        try:
            endpoint, routes = self._add(req, owner, network)
        except KernelError:
            # Looked at only on failure: the fast path pays no netlink socket in the netns.
            if not self._ifname_taken(req):
                raise
            if not self.networks.releasing():
                raise CniError(
                    CODE_INVALID_ENV,
                    f"CNI_IFNAME {req.ifname} already exists in network namespace {req.netns}",
                ) from None
            self.endpoints.settle()  # the interface of a recent DEL may still be on its way out
            if self._ifname_taken(req):
                raise CniError(
                    CODE_INVALID_ENV,
                    f"CNI_IFNAME {req.ifname} already exists in network namespace {req.netns}",
                ) from None
            endpoint, routes = self._add(req, owner, network)
        return self._attached(req, network, endpoint, routes)

    def _add(
        self,
        req: AttachRequest,
        owner: str,
        network: Network,
    ) -> tuple[Endpoint, list[ResolvedRoute]]:
        """Record, then plug; on any failure undo all of it. The endpoint and its routes (via
        the gateways of its own subnets)."""
        undo = Undo()
        step("cni.add.begin")
        try:
            with self.store.transaction():
                self.store.add_attachment(
                    owner, network.id, network.name, req.container_id, req.ifname, req.netns
                )
                endpoint, _ = self.endpoints.record(
                    EndpointOwner.attachment(owner), network, req.ifname, req.ip, requested_ip6=req.ip6
                )
                if req.mac:
                    self.store.set_endpoint_mac(endpoint.id, req.mac)
                    endpoint = replace(endpoint, mac=req.mac)
                # The runtime names every host port, and reserves it itself (Podman binds it
                # after the ADD), as with the portmap plugin: no check that the port is free
                # on the host; the ports table still keeps two owners off one port.
                bindings = tuple(
                    PortBinding(r.container_port, r.proto, r.host_port, r.host_ip) for r in req.ports
                )
                self._check_free(bindings)
                self.store.add_ports(owner, endpoint.id, bindings)
            undo.push(lambda: self._forget(owner), "cni.add.records")
            step("cni.add.recorded")
            routes = routes_of(req.net, network, endpoint)
            # The driver makes the default routes via the endpoint's gateways of its families
            # (IPv4's, IPv6's, or both), all of them or none; any other route is added here.
            defaults = [
                (dst, gw)
                for dst, gw in ((DEFAULT_ROUTE, endpoint.gateway), (DEFAULT_ROUTE6, endpoint.gateway6))
                if gw
            ]
            default_route = bool(defaults) and all(r in routes for r in defaults)
            extra = [r for r in routes if not (default_route and r in defaults)]
            self.endpoints.plug(network, endpoint, bindings, req.sandbox, undo, default_route)
            self.k.holds.release(endpoint.id)  # the DNAT stays; the host port is the runtime's to hold
            # Both go with the veth pair, which the undo of plug deletes.
            if extra:
                netlink.add_sandbox_routes(req.sandbox, req.ifname, list(extra))
            if not req.net.hairpin:
                self.k.netlink.set_hairpin(endpoint.host_ifname, False)
            step("cni.add.plugged")
            self.store.set_attachment_state(owner, "ready")
        except BaseException as e:
            undo.rollback(e, f"CNI ADD of {req.ifname} of container {req.container_id} on {network.name}")
            raise
        step("cni.add.done")
        return endpoint, routes

    def _check_free(self, bindings: tuple[PortBinding, ...]) -> None:
        """Refuse a mapping that overlaps one already published (or another of its own), by
        family (ports.overlaps): "" and 0.0.0.0, or "" and ::, would be one map element with
        two owners. One read for the ports asked."""
        if not bindings:
            return
        held = self.store.port_holders(min(b.host_port for b in bindings), max(b.host_port for b in bindings))
        for b in bindings:
            taken = held.setdefault((b.host_port, b.proto), [])
            if any(ports.overlaps(h, b.host_ip) for h in taken):
                raise Conflict(f"Bind for {b.host_text}/{b.proto} failed: port is already allocated")
            taken.append(b.host_ip)

    @staticmethod
    def _attached(
        req: AttachRequest,
        network: Network,
        endpoint: Endpoint,
        routes: list[ResolvedRoute],
    ) -> Attached:
        return Attached(
            network=network,
            endpoint=endpoint,
            netns=req.netns,
            routes=tuple(routes),
            bridge_mac=reads.link_mac(network.bridge),
            host_mac=reads.link_mac(endpoint.host_ifname),
        )

    def _forget(self, owner: str) -> None:
        with self.store.transaction():
            self.endpoints.drop_records(EndpointOwner.attachment(owner))
            self.store.delete_attachment(owner)

    # -- DEL and GC ----------------------------------------------------------

    def _release(self, owner: str) -> None:
        """Unpublish now, the veth through the reaper; then the row goes. Idempotent."""
        self.endpoints.release(EndpointOwner.attachment(owner))
        self.store.delete_attachment(owner)

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        """DEL: frees everything by the records alone, whatever became of the namespace (a
        descriptor passed with it is checked by the API, never needed)."""
        owner = owner_key(network, container_id, ifname)
        with self.lock:
            step("cni.del.begin")
            self._release(owner)
            step("cni.del.done")
        # An overlay address is free on every host once DEL returns, as after `rm`.
        self.endpoints.wait_cluster_released(EndpointOwner.attachment(owner))

    def gc(self, network: str, valid: set[tuple[str, str]]) -> list[str]:
        """Release every attachment of the network that the runtime does not list."""
        removed = []
        # The veths go once every release of this GC is recorded: a crash while the reaper
        # works finds the GC whole, never half of it (the reaper once ran between two releases).
        with self.lock, self.endpoints.reaping_after():
            step("cni.gc.begin")
            keep = {owner_key(network, cid, ifname) for cid, ifname in valid}
            for a in self.all(network):
                if a.owner not in keep:
                    self._release(a.owner)
                    removed.append(a.label)
            known = self.store.find_network(network)
            if known is not None:
                for ep in self.store.endpoints(network_id=known.id):
                    owner = ep.owner
                    if owner.kind is OwnerKind.CNI and owner.key not in keep and self.find(owner.key) is None:
                        self.endpoints.release(owner)
                        removed.append(f"endpoint {ep.host_ifname} without attachment")
            step("cni.gc.done")
        return removed

    # -- for the reconciler (reconcile.py) -------------------------------------

    def recover(self) -> list[str]:
        """Undo the ADDs a crash cut short, finish the DELs; make the bridges of CNI networks again.

        Called by every gc (the daemon's start-up one too), under the engine's
        lock. A DEL (or GC) marks the endpoint releasing before the row goes:
        a ready row without an active endpoint is one cut short (the released
        endpoint itself is the reconciler's, retry_releasing). CNI networks:
        those an ADD made, and those with attachments.
        """
        done: list[str] = []
        networks = {n.id for n in self.store.networks() if CNI_LABEL in n.labels}
        for a in self.all():
            if a.state != "ready":
                self._release(a.owner)
                done.append(f"{a.label}: undid an ADD cut short")
            elif not self.store.endpoints(container_id=a.owner):
                self.store.delete_attachment(a.owner)
                done.append(f"{a.label}: finished a DEL cut short")
            else:
                networks.add(a.network_id)
        for network_id in sorted(networks):
            network = self.store.find_network(network_id)
            if network is None or not network.bridged or network.driver not in self.drivers:
                continue
            try:
                self.drivers[network.driver].create_network(network)  # idempotent
            except DockyardError as err:
                done.append(f"network {network.name}: cannot restore for its CNI attachments: {err}")
        return done

    def desired_elements(self) -> rules.Elements:
        """The nftables elements the ready attachments need: their ports, their isolation."""
        el = rules.Elements()
        for a in self.all():
            if a.state != "ready":
                continue
            network = self.store.find_network(a.network_id)
            if network is None:
                continue
            for ep in self.store.endpoints(container_id=a.owner):
                el.update(
                    rules.endpoint_publish_elements(
                        network, ep, self.endpoints.bindings(a.endpoint_owner, ep.id)
                    )
                )
                el.update(rules.endpoint_elements(ep, network.icc))
        return el
