"""Endpoints: one owner (a container, or a CNI attachment: model.EndpointOwner) on one network.

Three phases, each usable on its own by containers, `network connect` and
the CNI plugin:

- record: choose the address (next-fit IPAM) and the host ports, and store
  them in one transaction, before any kernel work: the intent. UNIQUE
  constraints make a double booking impossible even under races.
- plug: the driver's join (veth, address, route) and publish (map
  elements, host-port holds), each pushing its undo.
- release: what would misroute traffic or keep a port goes at once (map
  elements, holds); deleting the veth of an ended container, which costs an
  RCU grace period (15-40 ms here), is left to a reaper thread, and the
  address lease is dropped only once the link is gone, so an address is
  never given twice. An overlay endpoint's claim (and its record in the
  cluster, in the same txn) goes once its link is down, before the link's
  deletion: no frame crosses a port that is down, and `rm` waits for that
  claim's release. A running container leaving a network (disconnect)
  loses its veth before the command returns: it must be off that network.
  Likewise a port's record goes only once its elements and hold are gone,
  so that a release that failed half-way can be retried from the records
  (`retry_releasing`, which every command runs through the engine's check).
  Who needs an address or a network that an ended container's veth still
  holds waits for the reaper (`settle`) before calling it taken.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from dockyard import digests
from dockyard.drivers import Driver
from dockyard.engine.steps import Undo, step
from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.kernel import Kernel
from dockyard.kernel.holds import HoldRefused
from dockyard.kernel.netlink import mac_for, random_mac
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network, PortBinding, PortRequest
from dockyard.policy import ipam, ports
from dockyard.store import Store

log = logging.getLogger(__name__)

# How long a command waits for the reaper to give an overlay endpoint's claims back (seconds).
# The reaper always finishes an endpoint (a failed leave is left for retry_releasing and ends
# the wait too), so this bounds only a kernel that hangs; generous, so that a loaded machine
# never returns a command before its release.
CLUSTER_RELEASE_BOUND = 120.0

# A Linux bridge holds at most 1024 ports (BR_MAX_PORTS).
BRIDGE_MAX_PORTS = 1024


def new_id() -> str:
    return digests.token_hex(32)


# The endpoint that addresses just claimed make: (IPv4 address, IPv6 address), each None on a
# network without that family.
EndpointFor = Callable[[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None], Endpoint]


class GlobalEndpoints(Protocol):
    """engine/cluster.py's part for an endpoint on an overlay network: its addresses are the
    cluster's (claimed in etcd), it is published before its container starts and withdrawn
    when released."""

    def claim(
        self,
        network: Network,
        endpoint_id: str,
        requested: ipaddress.IPv4Address | None,
        requested6: ipaddress.IPv6Address | None,
        publish: EndpointFor | None,
    ) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
        """The endpoint's addresses (one per family the network has), claimed at once;
        with publish, the endpoint it makes is published in the same step (plug then finds it
        published)."""
        ...

    def unclaim(
        self, network_id: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, endpoint_id: str
    ) -> None:
        """Free the claim, and the endpoint's record with it."""
        ...

    def publish(self, endpoint: Endpoint) -> None: ...

    def withdraw(self, endpoint: Endpoint, unclaiming: bool = False) -> None:
        """Stop publishing; unclaiming: an unclaim of the endpoint follows, which deletes the record
        with the claim (no round trip of its own)."""
        ...


def _gateways(network: Network) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every gateway of the network, of both families (never an endpoint's address)."""
    return [c.gateway for v in (4, 6) for c in network.subnet_configs(v) if c.gateway is not None]


def _allocator(
    network: Network, version: int, reserved: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> ipam.SubnetsAllocator | None:
    """Next-fit over the network's subnets of one family; None when it has none of that family."""
    configs = network.subnet_configs(version)
    if not configs:
        return None
    return ipam.SubnetsAllocator([ipam.AddressAllocator(c.subnet, reserved, c.ip_range) for c in configs])


def _prefixlen(network: Network, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The prefix length of the network's subnet that holds address (allocated from it)."""
    config = network.config_of(address)
    if config is None:
        raise Conflict(f"address {address} is in no subnet of network {network.name}")
    return config.subnet.prefixlen


def _gateway4(network: Network, address: ipaddress.IPv4Address) -> ipaddress.IPv4Address | None:
    config = network.config_of(address)
    gateway = config.gateway if config is not None else None
    return gateway if isinstance(gateway, ipaddress.IPv4Address) else None


def _gateway6(network: Network, address: ipaddress.IPv6Address) -> ipaddress.IPv6Address | None:
    config = network.config_of(address)
    gateway = config.gateway if config is not None else None
    return gateway if isinstance(gateway, ipaddress.IPv6Address) else None


class Endpoints:
    def __init__(self, store: Store, kernel: Kernel, drivers: Mapping[DriverName, Driver]) -> None:
        self.store = store
        self.k = kernel
        self.drivers = drivers
        # (network, endpoint, gate): the reaper starts on an endpoint once its gate is open.
        self._reap_queue: queue.Queue[tuple[Network, Endpoint, threading.Event | None] | None] = queue.Queue()
        # Set when the daemon is in a cluster (engine/cluster.py).
        self.cluster: GlobalEndpoints | None = None
        # Endpoints handed to the reaper and not done yet: a retry leaves them to it.
        self._queued: set[str] = set()
        # Of those, the overlay ones, by owner key: their claims are the cluster's (see
        # wait_cluster_released). Both change under _reaped, which tells of each one done.
        self._queued_global: dict[str, set[str]] = {}
        self._reaped = threading.Condition()
        # The gate of the reaping_after block this thread is in, if any.
        self._local = threading.local()
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    # -- record ------------------------------------------------------------

    def check_request(
        self,
        network: Network,
        requested_ip: ipaddress.IPv4Address | None,
        publishing: bool,
        requested_ip6: ipaddress.IPv6Address | None = None,
    ) -> None:
        """Checks that need no lock: the addresses fit, the network takes ports."""
        if not network.bridged:
            raise InvalidArgument(f"network {network.name} takes no endpoints")
        if requested_ip is not None:
            if network.subnet is None:
                raise InvalidArgument(
                    f"--ip {requested_ip}: network {network.name} has no IPv4 (it is IPv6-only); use --ip6"
                )
            ipam.check_in_subnets(requested_ip, network.subnets(), "--ip")
            if requested_ip in _gateways(network):
                raise Conflict(f"address {requested_ip} is the gateway of network {network.name}")
        if requested_ip6 is not None:
            if network.subnet6 is None:
                raise InvalidArgument(
                    f"--ip6 {requested_ip6}: network {network.name} has no IPv6 (create it with --ipv6)"
                )
            ipam.check_in_subnets(requested_ip6, network.subnets(), "--ip6")
            if requested_ip6 in _gateways(network):
                raise Conflict(f"address {requested_ip6} is the gateway of network {network.name}")
        if publishing and network.internal:
            raise InvalidArgument(f"network {network.name} is internal: ports cannot be published")

    def record(
        self,
        owner: EndpointOwner,
        network: Network,
        ifname: str,
        requested_ip: ipaddress.IPv4Address | None = None,
        port_requests: tuple[PortRequest, ...] = (),
        aliases: tuple[str, ...] = (),
        mac: str = "",
        requested_ip6: ipaddress.IPv6Address | None = None,
        plugging: bool = False,
    ) -> tuple[Endpoint, tuple[PortBinding, ...]]:
        """Choose addresses and host ports and store them: the intent. mac: --mac-address, or derived.

        On a network with IPv6 the endpoint leases an IPv6 address beside its
        IPv4 one, in the same transaction, under the same rules. plugging: the
        caller plugs this endpoint next, as recorded: on an overlay network it
        is published with its claims, in one round trip, rather than by plug."""
        reserved = [*_gateways(network), *(a for _, a in network.aux_addresses)]
        allocator = _allocator(network, 4, reserved)
        allocator6 = _allocator(network, 6, reserved)
        if (requested_ip is not None and self.store.address_used(network.id, requested_ip)) or (
            requested_ip6 is not None and self.store.address6_used(network.id, requested_ip6)
        ):
            # Taken, or still held by the veth of a container that just ended
            # (`rm -f web; run --ip <web's address>`): that one is free once reaped.
            self.settle()
        eid = new_id()

        def endpoint_for(a4: ipaddress.IPv4Address | None, a6: ipaddress.IPv6Address | None) -> Endpoint:
            return self._endpoint(owner, network, ifname, eid, a4, a6, aliases, mac)

        claimed = self._claim(network, eid, requested_ip, requested_ip6, endpoint_for if plugging else None)
        try:
            return self._record(
                owner,
                network,
                ifname,
                (allocator, allocator6),
                eid,
                claimed,
                (requested_ip, requested_ip6),
                port_requests,
                aliases,
                mac,
            )
        except BaseException:
            if self.cluster is not None:
                for address in claimed:
                    if address is not None:
                        self.cluster.unclaim(network.id, address, eid)
            raise

    def _claim(
        self,
        network: Network,
        eid: str,
        requested_ip: ipaddress.IPv4Address | None,
        requested_ip6: ipaddress.IPv6Address | None,
        publish: EndpointFor | None,
    ) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
        """An overlay network's addresses (its IPv6 one on a dual-stack network), claimed in the
        cluster; (None, None) for a local network."""
        if network.driver is not DriverName.OVERLAY:
            return None, None
        if self.cluster is None:
            raise InvalidArgument(f"network {network.name} is global: this daemon is not in its cluster")
        return self.cluster.claim(network, eid, requested_ip, requested_ip6, publish)

    def _unclaim(self, network: Network | None, ep: Endpoint) -> None:
        if network is not None and network.driver is DriverName.OVERLAY and self.cluster is not None:
            if ep.address is not None:
                self.cluster.unclaim(network.id, ep.address.ip, ep.id)
            if ep.address6 is not None:
                self.cluster.unclaim(network.id, ep.address6.ip, ep.id)

    def _record(
        self,
        owner: EndpointOwner,
        network: Network,
        ifname: str,
        allocators: tuple[ipam.SubnetsAllocator | None, ipam.SubnetsAllocator | None],
        eid: str,
        claimed: tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None],
        requested: tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None],
        port_requests: tuple[PortRequest, ...],
        aliases: tuple[str, ...],
        mac: str,
    ) -> tuple[Endpoint, tuple[PortBinding, ...]]:
        with self.store.transaction():
            if self.store.endpoint_count(network.id) >= BRIDGE_MAX_PORTS - 1:
                raise Conflict(
                    f"network {network.name} is full: a Linux bridge holds at most {BRIDGE_MAX_PORTS} ports"
                )

            def used(a: ipaddress.IPv4Address) -> bool:
                return self.store.address_used(network.id, a)

            allocator, allocator6 = allocators
            requested_ip, requested_ip6 = requested
            address: ipaddress.IPv4Address | None
            if claimed[0] is not None:
                address = claimed[0]
            elif allocator is None:
                address = None  # an IPv6-only network
            elif requested_ip is not None:
                address = allocator.check_requested(requested_ip, used)
            else:
                address = allocator.allocate(used, self.store.ip_cursor(network.id))
                self.store.set_ip_cursor(network.id, address)
            address6 = self._lease6(network, allocator6, claimed[1] or requested_ip6)
            ip6 = address6.ip if address6 is not None else None
            endpoint = self._endpoint(owner, network, ifname, eid, address, ip6, aliases, mac)
            self.store.add_endpoint(endpoint)
            try:
                bindings = self._choose_ports(network, port_requests, eid)
                self.store.add_ports(owner.key, endpoint.id, bindings)
            except BaseException:
                if port_requests:
                    self.k.holds.unreserve(eid)
                raise
        step("endpoint.recorded")
        return endpoint, bindings

    @staticmethod
    def _endpoint(
        owner: EndpointOwner,
        network: Network,
        ifname: str,
        eid: str,
        address: ipaddress.IPv4Address | None,
        address6: ipaddress.IPv6Address | None,
        aliases: tuple[str, ...],
        mac: str,
    ) -> Endpoint:
        """The endpoint its chosen addresses make (the one record stores, and the one an overlay
        claim publishes beforehand: the same)."""
        return Endpoint(
            id=eid,
            owner=owner,
            network_id=network.id,
            ifname=ifname,
            address=(
                ipaddress.IPv4Interface(f"{address}/{_prefixlen(network, address)}")
                if address is not None
                else None
            ),
            gateway=_gateway4(network, address) if address is not None else None,
            # Docker's MAC carries the IPv4 address; without one (IPv6-only) it is
            # random, as Docker 28's: the endpoint id's first 40 bits, locally administered.
            mac=mac or (mac_for(address) if address is not None else random_mac(eid)),
            host_ifname="veth" + eid[:7],
            aliases=aliases,
            address6=(
                ipaddress.IPv6Interface(f"{address6}/{_prefixlen(network, address6)}")
                if address6 is not None
                else None
            ),
            gateway6=_gateway6(network, address6) if address6 is not None else None,
        )

    def _lease6(
        self,
        network: Network,
        allocator6: ipam.SubnetsAllocator | None,
        requested_ip6: ipaddress.IPv6Address | None,
    ) -> ipaddress.IPv6Interface | None:
        """The endpoint's IPv6 address (in record's transaction), None on a network without IPv6."""
        if allocator6 is None or network.subnet6 is None:
            return None

        def used6(a: ipaddress.IPv6Address) -> bool:
            return self.store.address6_used(network.id, a)

        if requested_ip6 is not None:
            address6 = allocator6.check_requested(requested_ip6, used6)
        else:
            address6 = allocator6.allocate(used6, self.store.ip6_cursor(network.id))
            self.store.set_ip6_cursor(network.id, address6)
        return ipaddress.IPv6Interface(f"{address6}/{_prefixlen(network, address6)}")

    def choose_ports(
        self, network: Network, requests: tuple[PortRequest, ...], endpoint_id: str
    ) -> tuple[PortBinding, ...]:
        """Host ports for an endpoint already recorded (Docker's plugin publishes after join)."""
        return self._choose_ports(network, requests, endpoint_id)

    def _choose_ports(
        self, network: Network, requests: tuple[PortRequest, ...], endpoint_id: str
    ) -> tuple[PortBinding, ...]:
        """Host ports for the requests; those found free stay reserved for the
        endpoint's hold at publish (kernel/holds.py), which binds no port twice."""
        if not requests:
            return ()
        # What is published on the ports asked for by number, in one read; a
        # random port is looked up as it is tried. Never every published port.
        asked = [p for r in requests if r.host_port for p in (r.host_port, r.host_port_end or r.host_port)]
        lo, hi = (min(asked), max(asked)) if asked else (0, -1)
        known = self.store.port_holders(lo, hi) if asked else {}

        def holders(key: ports.Key) -> Sequence[ports.HostIp | None]:
            if lo <= key[0] <= hi:
                return known.get(key, ())
            return self.store.port_holders(key[0]).get(key, ())

        if network.host_binding is not None:
            # com.docker.network.bridge.host_binding_ipv4: the default host address.
            requests = tuple(
                r if r.host_ip is not None else replace(r, host_ip=network.host_binding) for r in requests
            )
        has6 = network.enable_ipv6 and network.subnet6 is not None
        every = ports.families(network.subnet is not None, has6)
        ports.check_families(requests, every, network.name)
        reserve = functools.partial(self.k.holds.reserve, endpoint_id, families=every)
        reserve_many = functools.partial(self.k.holds.reserve_many, endpoint_id, families=every)
        chooser = ports.HostPortChooser(
            holders, reserve, self.k.holds.local_port_range(), probe_many=reserve_many
        )
        return chooser.choose(requests)

    def drop_records(self, owner: EndpointOwner, only_ifname: str | None = None) -> None:
        """Forget endpoints that never reached the kernel (a failed or cut-short start)."""
        gone = []
        with self.store.transaction():
            for ep in self.store.endpoints(container_id=owner.key):
                if only_ifname is None or ep.ifname == only_ifname:
                    self.store.delete_endpoint(ep.id)
                    self.store.delete_ports(owner.key, ep.id)
                    self.k.holds.unreserve(ep.id)
                    gone.append(ep)
        for ep in gone:
            self._unclaim(self.store.find_network(ep.network_id), ep)

    def drop_records_active(self, owner: EndpointOwner) -> None:
        """Forget endpoints not yet handed to the reaper (those never reached the kernel).

        The ports of an endpoint being released stay: they name the elements
        and hold a failed release must still remove."""
        with self.store.transaction():
            gone = self.store.endpoints(container_id=owner.key)
            for ep in gone:
                self.store.delete_endpoint(ep.id)
                self.store.delete_ports(owner.key, ep.id)
        for ep in gone:
            self._unclaim(self.store.find_network(ep.network_id), ep)

    # -- plug --------------------------------------------------------------

    def plug(
        self,
        network: Network,
        endpoint: Endpoint,
        bindings: tuple[PortBinding, ...],
        sandbox: Path,
        undo: Undo,
        default_route: bool = True,
    ) -> None:
        driver = self.drivers[network.driver]
        step("endpoint.join")
        undo.push(lambda: driver.leave(network, endpoint), "endpoint.join")
        driver.join(network, endpoint, sandbox, default_route)
        if network.driver is DriverName.OVERLAY and self.cluster is not None:
            # Before the container starts: its peers program it as soon as they hear.
            cluster = self.cluster
            undo.push(lambda: cluster.withdraw(endpoint))
            cluster.publish(endpoint)
        step("endpoint.publish")
        undo.push(lambda: driver.unpublish(endpoint, bindings), "endpoint.publish")
        try:
            driver.publish(network, endpoint, bindings)
        except HoldRefused as e:
            # A host process took the port after it was chosen.
            b = e.binding
            raise ports.refused(b.host_ip, b.host_port, b.proto, e.status) from None
        finally:
            self.k.holds.unreserve(endpoint.id)
        step("endpoint.plugged")

    # -- release -----------------------------------------------------------

    def release(self, owner: EndpointOwner, only: Endpoint | None = None, now: bool = False) -> None:
        """Unpublish at once, queue the veth for the reaper; idempotent. With
        now, the veth and the records go before returning instead (a running
        container leaving a network); a failure leaves the endpoint 'releasing'
        for retry_releasing."""
        with self.store.transaction():
            eps = [only] if only is not None else self.store.endpoints(container_id=owner.key)
            all_bindings = self.store.ports(owner.key)
            for ep in eps:
                self.store.set_endpoint_state(ep.id, "releasing")
        step("endpoint.release")
        for ep in eps:
            network = self.store.find_network(ep.network_id)
            if network is None:
                self.store.delete_ports(owner.key, ep.id)
                self.store.delete_endpoint(ep.id)
                continue
            bindings = tuple(b for eid, b in all_bindings if eid == ep.id)
            if network.driver is DriverName.OVERLAY and self.cluster is not None:
                # Its record goes with its claim, in one txn, once its link is down (below or
                # by the reaper; retry_releasing after a crash, else with this host's lease).
                self.cluster.withdraw(ep, unclaiming=True)
            self.drivers[network.driver].unpublish(ep, bindings)
            self.store.delete_ports(owner.key, ep.id)
            if now:
                self.drivers[network.driver].leave(network, ep)
                step("endpoint.unplugged")
                self.store.delete_endpoint(ep.id)
                self._unclaim(network, ep)
                continue
            with self._reaped:
                self._queued.add(ep.id)
                if network.driver is DriverName.OVERLAY:
                    self._queued_global.setdefault(owner.key, set()).add(ep.id)
            self._reap_queue.put((network, ep, getattr(self._local, "gate", None)))

    def wait_cluster_released(self, owner: EndpointOwner, timeout: float = CLUSTER_RELEASE_BOUND) -> None:
        """Wait until the reaper is done with the owner's overlay endpoints (at most timeout).

        Their addresses are claimed in the cluster until their links are gone, and another
        host cannot settle this host's reaper: `rm` waits here, so that what it removed is
        free on every host once it returns (a `network rm` on another host right after it
        succeeds, as with Docker). A bridge endpoint is local: who needs it settles."""
        with self._reaped:
            done = self._reaped.wait_for(lambda: owner.key not in self._queued_global, timeout)
        if not done:
            log.warning("the overlay endpoints of %s are still being released", owner.short)

    @contextlib.contextmanager
    def reaping_after(self) -> Iterator[None]:
        """The reaper starts on the veths released in this block once it ends:
        the operation's records are final first (an exit recorded), so a crash
        while a veth goes finds them so. The block must not settle()."""
        gate = self._local.gate = threading.Event()
        try:
            yield
        finally:
            self._local.gate = None
            gate.set()

    def retry_releasing(self) -> list[tuple[Endpoint, DockyardError | None]]:
        """Finish the release of endpoints left 'releasing' that the reaper does
        not hold (a release that failed, or a crash): their published ports,
        then the veth, then the records. (endpoint, None) for each one done,
        (endpoint, error) for each one that must wait for a later try."""
        out: list[tuple[Endpoint, DockyardError | None]] = []
        for ep in self.store.endpoints(state="releasing"):
            if ep.id in self._queued:
                continue
            network = self.store.find_network(ep.network_id)
            if network is not None:
                driver = self.drivers[network.driver]
                try:
                    driver.unpublish(ep, self.bindings(ep.owner, ep.id))
                    driver.leave(network, ep)
                except DockyardError as err:
                    out.append((ep, err))
                    continue
            with self.store.transaction():
                self.store.delete_ports(ep.owner.key, ep.id)
                self.store.delete_endpoint(ep.id)
            self._unclaim(network, ep)
            out.append((ep, None))
        return out

    def bindings(self, owner: EndpointOwner, endpoint_id: str | None = None) -> tuple[PortBinding, ...]:
        return tuple(b for eid, b in self.store.ports(owner.key) if endpoint_id is None or eid == endpoint_id)

    def _reap_loop(self) -> None:
        while True:
            item = self._reap_queue.get()
            try:
                if item is None:
                    return
                network, ep, gate = item
                if gate is not None:
                    gate.wait()
                step("endpoint.reaping")
                driver = self.drivers[network.driver]
                unclaimed = False
                if network.driver is DriverName.OVERLAY and self.cluster is not None:
                    # Another host may take the address once the port can carry nothing (down:
                    # an expedited RCU sync); the deletion after it can wait out the dying
                    # namespace's cleanup (0-17 ms here), which rm need not wait for.
                    try:
                        driver.cut_off(ep)
                    except DockyardError as e:
                        log.warning("cannot cut %s off yet: %s", ep.host_ifname, e)
                    else:
                        self._unclaim(network, ep)
                        unclaimed = True
                        step("endpoint.unclaimed")
                        self._done_globally(ep)
                try:
                    driver.leave(network, ep)
                except DockyardError as e:
                    # Left for a retry from the 'releasing' record (retry_releasing).
                    log.warning("cannot remove %s yet: %s", ep.host_ifname, e)
                    continue
                step("endpoint.reaped")
                self.store.delete_endpoint(ep.id)
                if not unclaimed:
                    self._unclaim(network, ep)
            finally:
                if item is not None:
                    self._done_with(item[1])
                self._reap_queue.task_done()

    def _done_globally(self, ep: Endpoint) -> None:
        """What the cluster waits for is done: the address is free on every host."""
        with self._reaped:
            pending = self._queued_global.get(ep.owner.key)
            if pending is not None:
                pending.discard(ep.id)
                if not pending:
                    del self._queued_global[ep.owner.key]
            self._reaped.notify_all()

    def _done_with(self, ep: Endpoint) -> None:
        self._done_globally(ep)
        with self._reaped:
            self._queued.discard(ep.id)
            self._reaped.notify_all()

    def settle(self) -> None:
        """Wait until every queued veth removal is done."""
        self._reap_queue.join()

    def close(self) -> None:
        self.settle()
        self._reap_queue.put(None)
        self._reaper.join(timeout=5)
