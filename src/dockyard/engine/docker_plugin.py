"""Docker's network and IPAM plugin: the use cases behind libnetwork's remote driver protocol.

dockerd (issue 17) asks through daemon/plugin.py, which owns the wire; this
module answers in dockyard's terms:

- a Docker network (CreateNetwork) is a dockyard bridge network named
  `docker-<12 hex of its NetworkID>`, labelled com.docker.network.id, that
  `dockyard network ls` shows like any other;
- a Docker endpoint is a foreign runtime's attachment, recorded the way CNI
  attachments are (engine/cni/attachments.py: an `attachments` row in state
  ready, its endpoint owned by model.EndpointOwner of kind CNI), so that gc
  keeps its guard and its published ports and undoes what is half made.
  CreateEndpoint records it with the address Docker's IPAM (or ours) gave;
  Join makes the veth pair, the bridge side attached and guarded, the other
  side left in the daemon's host namespace under a temporary name for Docker
  to move into the container; Leave hands the pair to the engine's reaper
  (engine/endpoints.py), as an ended container's, so that no call waits for
  the kernel's RCU grace period; ProgramExternalConnectivity
  publishes Docker's port bindings with dockyard's kernel-only maps (no
  docker-proxy); DeleteEndpoint forgets it (its veth goes to the reaper too
  when no Leave came);
- IPAM: pools (RequestPool) from daemon.json's default-address-pools unless
  Docker names one, and addresses in them (RequestAddress), recorded in the
  store (store/docker_ipam.py);
- IPv6 (`docker network create --ipv6`): the network is dual-stack, its IPv6
  subnet and gateway those Docker's IPAM (or ours: RequestPool with V6, from
  the IPv6 default pools) gave; the endpoint records Docker's IPv6 address
  beside its IPv4 one, Join names the IPv6 gateway (Docker sets the
  container's default IPv6 route through it), and published ports serve both
  families; on dockyard-overlay networks too, where Docker's global IPAM
  gives both addresses and dockyard's cluster records carry them to every
  host. An IPv6-only network (no IPv4 data) is refused: a dockyard
  endpoint made through the plugin has an IPv4 address;
- the overlay driver, when the daemon is in a cluster, is a second driver
  (`docker network create -d dockyard-overlay`, its own socket, scope
  global): dockerd 20.10 keeps such a network, its endpoints and its
  addresses in its own cluster store (--cluster-store, etcd's v2 API) and
  calls CreateNetwork on the one host where it is made, then CreateEndpoint
  and Join on whichever host runs a container. The network becomes a
  dockyard overlay network (the cluster's record, etcd v3), which every
  dockyardd of the cluster mirrors; an endpoint claims in the cluster the
  address Docker's global IPAM gave (unique in Docker's store, so the claim
  agrees) and is published to the other hosts once joined, as a
  container's is.

Every refusal is a DockyardError whose message the plugin sends back as
{"Err": ...}; options dockyard does not implement are refused by name.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.drivers import Driver
from dockyard.engine.cni.attachments import DOCKER_ENDPOINT, owner_key
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.networks.changes import NetworkChanges
from dockyard.engine.networks.service import Networks, NetworkSpec
from dockyard.engine.steps import Undo
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import DriverName, Endpoint, EndpointOwner, Network, PortBinding, PortRequest, Protocol
from dockyard.policy import ipam, ipam6
from dockyard.settings import DaemonSettings
from dockyard.store import Store

ID_LABEL = "com.docker.network.id"
GENERIC = "com.docker.network.generic"
PORTMAP = "com.docker.network.portmap"
EXPOSED = "com.docker.network.endpoint.exposedports"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
GATEWAY_REQUEST = "com.docker.network.gateway"
LOCAL_SPACE, GLOBAL_SPACE = "dockyard-local", "dockyard-global"
# The -o options of `docker network create -d dockyard`: those of Docker's bridge driver dockyard has.
NETWORK_OPTIONS = (
    "com.docker.network.bridge.name",
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.bridge.enable_ip_masquerade",
    "com.docker.network.bridge.host_binding_ipv4",
    "com.docker.network.driver.mtu",
)
# Network options Docker adds itself; any other is refused.
DOCKER_NETWORK_KEYS = (GENERIC, "com.docker.network.enable_ipv6", "com.docker.network.internal")
ENDPOINT_KEYS = (PORTMAP, EXPOSED, MAC_OPTION)
# How long a host waits for its mirror of a global network made on another host (the
# cluster's watch brings it in milliseconds; a store that does not answer, never).
MIRROR_WAIT = 10.0
PROTOCOLS = {6: Protocol.TCP, 17: Protocol.UDP, 132: Protocol.SCTP}
NUMBERS = {p: n for n, p in PROTOCOLS.items()}


@dataclass(frozen=True)
class Joined:
    src_name: str
    gateway: ipaddress.IPv4Address | None
    gateway6: ipaddress.IPv6Address | None = None


def _refuse_unknown(options: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    for key in options:
        if key not in known:
            raise InvalidArgument(f"{what} option {key} is not supported by dockyard")


def _interface(text: str, what: str) -> ipaddress.IPv4Interface:
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: an IPv4 address with prefix") from None


def _interface6(text: str, what: str) -> ipaddress.IPv6Interface:
    try:
        return ipaddress.IPv6Interface(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: an IPv6 address with prefix") from None


def _pool_data(data: list[Any], family: str) -> tuple[ipam.AnyNet | None, ipam.AnyAddr | None]:
    """The subnet and gateway of CreateNetwork's IPv4Data or IPv6Data (None, None when empty)."""
    if len(data) > 1:
        flag = "IPv6 --subnet" if family == "IPv6" else "IPv4 --subnet"
        raise InvalidArgument(
            f"a network of dockyard's Docker plugin has one {family} subnet: give one {flag}"
        )
    if not data:
        return None, None
    parse = _interface6 if family == "IPv6" else _interface
    pool = parse(str(data[0].get("Pool", "")), f"{family} pool")
    if pool.network.network_address != pool.ip:
        raise InvalidArgument(f"invalid {family} pool {pool}: host bits set")
    gateway = parse(str(data[0]["Gateway"]), f"{family} gateway").ip if data[0].get("Gateway") else None
    if data[0].get("AuxAddresses"):
        raise InvalidArgument("--aux-address is not supported by dockyard's Docker plugin")
    return pool.network, gateway


def _host_ip(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A binding's HostIP: none is every address of the endpoint's families (dockerd 20.10
    sends "" for `-p 8080:80`); `0.0.0.0` (`-p 0.0.0.0:8080:80`, as sent) is IPv4 only, `::`
    and an IPv6 address IPv6 only, as in Docker. Whether the endpoint has that family is the
    port chooser's to say (ports.check_families)."""
    if text in (None, ""):
        return None
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid HostIP {text!r}: expected an IPv4 or IPv6 address") from None


def _port_requests(raw: object) -> tuple[PortRequest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidArgument(f"{PORTMAP} must be a list of port bindings")
    out = []
    for b in raw:
        if not isinstance(b, dict):
            raise InvalidArgument(f"{PORTMAP} must be a list of port bindings")
        proto = PROTOCOLS.get(b.get("Proto", 6))
        if proto is None:
            raise InvalidArgument(f"protocol number {b.get('Proto')} is not supported: tcp, udp or sctp")
        host_ip = _host_ip(b.get("HostIP"))
        out.append(
            PortRequest(
                container_port=int(b.get("Port", 0)),
                proto=proto,
                host_port=int(b.get("HostPort", 0)),
                host_ip=host_ip,
                host_port_end=int(b.get("HostPortEnd", 0)),
            )
        )
    return tuple(out)


class DockerPlugin:
    """What dockerd asks of its network and IPAM plugin, for one root."""

    def __init__(
        self,
        *,
        settings: DaemonSettings,
        store: Store,
        lock: threading.RLock,
        drivers: Mapping[DriverName, Driver],
        endpoints: Endpoints,
        networks: Networks,
        network_changes: NetworkChanges,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lock = lock
        self.drivers = drivers
        self.endpoints = endpoints
        self.networks = networks
        self.network_changes = network_changes
        # Endpoints between Leave and DeleteEndpoint (owner key -> record as it was), whose
        # records the reaper may have dropped already: what a Join after a Leave records again.
        self._left: dict[str, Endpoint] = {}
        self._cursors: dict[str, ipam.AnyAddr] = {}  # pool -> the address given last

    # -- networks --------------------------------------------------------------

    def _find(self, docker_id: str) -> Network | None:
        for n in self.store.networks():
            if (ID_LABEL, docker_id) in n.labels:
                return n
        return None

    def network_of(self, docker_id: str, wait: bool = True) -> Network:
        found = self._find(docker_id)
        if found is None and wait and self.networks.overlay is not None:
            # A global network Docker made on another host: this host's mirror comes with the
            # cluster's watch, which may be a moment behind Docker's own store.
            deadline = time.monotonic() + MIRROR_WAIT
            while found is None and time.monotonic() < deadline:
                time.sleep(0.05)
                found = self._find(docker_id)
        if found is None:
            raise NotFound(f"network {docker_id[:12]} is not a dockyard network")
        return found

    def create_network(
        self,
        docker_id: str,
        options: Mapping[str, Any],
        ipv4: list[Any],
        ipv6: list[Any],
        driver: DriverName = DriverName.BRIDGE,
    ) -> Network:
        """A bridge network, or with driver OVERLAY a global one (whose -o options are the
        overlay driver's to take or refuse by name)."""
        _refuse_unknown(options, DOCKER_NETWORK_KEYS, "network")
        generic = options.get(GENERIC) or {}
        if driver is DriverName.BRIDGE:
            _refuse_unknown(generic, NETWORK_OPTIONS, "network")
        subnet, gateway = _pool_data(ipv4, "IPv4")
        subnet6, gateway6 = _pool_data(ipv6, "IPv6")
        enable_ipv6 = bool(options.get("com.docker.network.enable_ipv6", False))
        if subnet6 is not None and not enable_ipv6:
            raise InvalidArgument(
                f"IPv6 subnet {subnet6} given but IPv6 is not enabled on this network: add --ipv6"
            )
        if enable_ipv6 and subnet6 is None:
            raise InvalidArgument("--ipv6 without an IPv6 pool: Docker's IPAM gave the network none")
        if subnet is None and subnet6 is not None:
            raise InvalidArgument("an IPv6-only network is not supported by dockyard's Docker plugin")
        assert subnet is None or isinstance(subnet, ipaddress.IPv4Network)
        assert gateway is None or isinstance(gateway, ipaddress.IPv4Address)
        assert subnet6 is None or isinstance(subnet6, ipaddress.IPv6Network)
        assert gateway6 is None or isinstance(gateway6, ipaddress.IPv6Address)
        spec = NetworkSpec(
            name="docker-" + docker_id[:12],
            driver=driver.value,
            subnet=subnet,
            gateway=gateway,
            enable_ipv6=enable_ipv6,
            subnet6=subnet6,
            gateway6=gateway6,
            internal=bool(options.get("com.docker.network.internal", False)),
            labels=((ID_LABEL, docker_id),),
            options=tuple((str(k), str(v)) for k, v in generic.items()),
        )
        return self.network_changes.create(spec)

    def delete_network(self, docker_id: str, driver: DriverName = DriverName.BRIDGE) -> None:
        """Remove it; one not found is gone already (Docker retries a delete). A global one made
        on another host a moment ago is waited for, as for its endpoints."""
        try:
            network = self.network_of(docker_id, wait=driver is DriverName.OVERLAY)
        except NotFound:
            return
        self.network_changes.remove(network.id)

    # -- endpoints -------------------------------------------------------------

    @staticmethod
    def _owner(network: Network, endpoint_id: str) -> EndpointOwner:
        return EndpointOwner.attachment(owner_key(network.name, endpoint_id, "docker"))

    def _endpoint(self, network: Network, endpoint_id: str, left: bool = False) -> Endpoint:
        """The endpoint's record; with left, also one whose veth Leave handed to the reaper."""
        key = self._owner(network, endpoint_id).key
        found = self.store.endpoints(container_id=key)
        if not found and left:
            found = [self._left[key]] if key in self._left else []
        if not found:
            raise NotFound(f"endpoint {endpoint_id[:12]} not found on network {network.name}")
        return found[0]

    def create_endpoint(
        self,
        docker_net: str,
        endpoint_id: str,
        address: str,
        mac: str,
        options: Mapping[str, Any],
        address6: str = "",
    ) -> Endpoint:
        """Record the endpoint with Docker's addresses (and MAC, else one derived from the address).

        On an IPv6 network without an IPv6 address from Docker, one is leased
        here: the caller tells Docker which."""
        _refuse_unknown(options, ENDPOINT_KEYS, "endpoint")
        network = self.network_of(docker_net)
        if not address:
            raise InvalidArgument("the endpoint has no IPv4 address: Docker's IPAM must give one")
        ip = _interface(address, "address").ip
        ip6 = _interface6(address6, "IPv6 address").ip if address6 else None
        if ip6 is not None and network.subnet6 is None:
            raise InvalidArgument(
                f"IPv6 address {ip6} given but network {network.name} has no IPv6: create it with --ipv6"
            )
        self.endpoints.check_request(network, ip, False, ip6)
        owner = self._owner(network, endpoint_id)
        ifname = "dk" + endpoint_id[:11]
        if self.store.address_used(network.id, ip) or (
            ip6 is not None and self.store.address6_used(network.id, ip6)
        ):
            # Held by a veth on its way out, maybe: settled here, before the
            # transaction below, which the reaper would wait for.
            self.endpoints.settle()
        with self.lock, self.store.transaction():
            self.store.add_attachment(
                owner.key, network.id, network.name, endpoint_id, ifname, DOCKER_ENDPOINT
            )
            endpoint, _ = self.endpoints.record(
                owner, network, ifname, ip, mac=mac or str(options.get(MAC_OPTION) or ""), requested_ip6=ip6
            )
            self.store.set_attachment_state(owner.key, "ready")
        return endpoint

    def delete_endpoint(self, docker_net: str, endpoint_id: str) -> None:
        """Forget the endpoint; its veth, if Leave did not hand it over, goes to the reaper too."""
        network = self.network_of(docker_net)
        owner = self._owner(network, endpoint_id)
        with self.lock:
            self._left.pop(owner.key, None)
            self.endpoints.release(owner)
            self.store.delete_attachment(owner.key)

    def oper_info(self, docker_net: str, endpoint_id: str) -> tuple[Endpoint, tuple[PortBinding, ...]]:
        network = self.network_of(docker_net)
        endpoint = self._endpoint(network, endpoint_id, left=True)
        return endpoint, self.endpoints.bindings(endpoint.owner, endpoint.id)

    def join(self, docker_net: str, endpoint_id: str) -> Joined:
        """The veth pair, bridge side attached and guarded; Docker moves the other side."""
        network = self.network_of(docker_net)
        key = self._owner(network, endpoint_id).key
        if not self.store.endpoints(container_id=key):
            self._rejoin(network, self._endpoint(network, endpoint_id, left=True))
        endpoint = self._endpoint(network, endpoint_id)
        with self.lock:
            # The container's side stays in this daemon's host namespace, where Docker finds it
            # and moves it, which drops any address or state: Docker configures it in the container.
            driver = self.drivers[network.driver]
            driver.join(network, endpoint, None, default_route=False)
            cluster = self.endpoints.cluster
            if network.driver is DriverName.OVERLAY and cluster is not None:
                # The other hosts program it (FDB, neighbour) as soon as they hear, as a
                # container's; Leave withdraws it (Endpoints.release).
                try:
                    cluster.publish(endpoint)
                except BaseException:
                    driver.leave(network, endpoint)
                    raise
        if network.internal:
            return Joined(endpoint.ifname, None)
        return Joined(endpoint.ifname, endpoint.gateway, endpoint.gateway6)

    def _rejoin(self, network: Network, left: Endpoint) -> None:
        """A Join after a Leave on one endpoint (libnetwork's Sandbox.Refresh does so): once
        the reaper has taken the old veth, the endpoint is recorded again with its address
        and MAC."""
        self.endpoints.settle()
        with self.lock, self.store.transaction():
            ip = left.address.ip if left.address else None
            self.endpoints.record(
                left.owner,
                network,
                left.ifname,
                ip,
                mac=left.mac,
                requested_ip6=left.address6.ip if left.address6 is not None else None,
            )
            self._left.pop(left.owner.key, None)

    def leave(self, docker_net: str, endpoint_id: str) -> None:
        """Hand the veth to the reaper, as `rm` does for a container that ended.

        Deleting a veth waits for an RCU grace period (15-40 ms here), which
        Docker would wait for on every container stop. Its ports went already
        (RevokeExternalConnectivity; released again here if not); its address
        stays recorded, 'releasing', until the link is gone, and a daemon that
        dies before finishes the release at its restart (retry_releasing).
        The endpoint is still Docker's until DeleteEndpoint: a Join may follow."""
        network = self.network_of(docker_net)
        owner = self._owner(network, endpoint_id)
        with self.lock:
            for endpoint in self.store.endpoints(container_id=owner.key):
                self._left[owner.key] = endpoint
            self.endpoints.release(owner)

    def program_external(self, docker_net: str, endpoint_id: str, options: Mapping[str, Any]) -> None:
        """Publish Docker's port bindings with dockyard's maps (exposed ports need nothing)."""
        _refuse_unknown(options, ENDPOINT_KEYS, "endpoint")
        requests = _port_requests(options.get(PORTMAP))
        if not requests:
            return
        network = self.network_of(docker_net)
        endpoint = self._endpoint(network, endpoint_id)
        self.endpoints.check_request(network, None, True)
        with self.lock:
            if self.endpoints.bindings(endpoint.owner, endpoint.id):
                return  # published already: Docker retries a call whose answer it did not get
            try:
                bindings = self.endpoints.choose_ports(network, requests, endpoint.id)
                self.store.add_ports(endpoint.owner.key, endpoint.id, bindings)
            except BaseException:
                self.endpoints.k.holds.unreserve(endpoint.id)
                raise
            undo = Undo()
            undo.push(lambda: self.store.delete_ports(endpoint.owner.key, endpoint.id), "docker.ports")
            try:
                driver = self.drivers[network.driver]
                try:
                    driver.publish(network, endpoint, bindings)
                finally:
                    self.endpoints.k.holds.unreserve(endpoint.id)
            except BaseException as e:
                undo.rollback(e, f"publishing the ports of Docker endpoint {endpoint_id[:12]}")
                raise

    def revoke_external(self, docker_net: str, endpoint_id: str) -> None:
        network = self.network_of(docker_net)
        endpoint = self._endpoint(network, endpoint_id, left=True)
        with self.lock:
            bindings = self.endpoints.bindings(endpoint.owner, endpoint.id)
            self.drivers[network.driver].unpublish(endpoint, bindings)
            self.store.delete_ports(endpoint.owner.key, endpoint.id)

    # -- IPAM ------------------------------------------------------------------

    def request_pool(
        self, space: str, pool: str, sub_pool: str, options: Mapping[str, Any], v6: bool
    ) -> ipam.AnyNet:
        if space == GLOBAL_SPACE:
            # Docker asks in the global space for a multi-host network (a global driver's, swarm's):
            # its addresses must be unique on every host, and these records are this host's alone.
            raise InvalidArgument(
                "dockyard's IPAM keeps its pools on this host only: give a multi-host (global) "
                "network Docker's default IPAM (no --ipam-driver)"
            )
        if space not in (LOCAL_SPACE, ""):
            raise InvalidArgument(f"address space {space} is not dockyard's ({LOCAL_SPACE})")
        if sub_pool:
            raise InvalidArgument("--ip-range is not supported by dockyard's IPAM")
        _refuse_unknown(options, (), "IPAM")
        with self.lock:
            subnet = self._free_pool6(pool) if v6 else self._free_pool(pool)
            self.store.add_docker_pool(str(subnet), subnet)
        return subnet

    def _free_pool(self, pool: str) -> ipaddress.IPv4Network:
        """Docker's IPv4 --subnet if free, else the first free one of the default pools."""
        taken = self.networks.taken_subnets()
        taken += [
            (f"pool {s} given to Docker", s)
            for s in self.store.docker_pools().values()
            if isinstance(s, ipaddress.IPv4Network)
        ]
        if not pool:
            return ipam.first_free_subnet(self.settings.default_address_pools, taken)
        if ipam6.is_ipv6(pool):
            raise InvalidArgument(f"subnet {pool} is IPv6 but Docker asked for an IPv4 pool")
        subnet = _interface(pool, "subnet").network
        ipam.check_usable(subnet)
        ipam.check_overlap(subnet, taken)
        return subnet

    def _free_pool6(self, pool: str) -> ipaddress.IPv6Network:
        """Docker's IPv6 --subnet if free, else a /64 of the IPv6 default pools (as `--ipv6`)."""
        taken = self.networks.ipv6.taken()
        taken += [
            (f"pool {s} given to Docker", s)
            for s in self.store.docker_pools().values()
            if isinstance(s, ipaddress.IPv6Network)
        ]
        if not pool:
            return ipam6.first_free_subnet6(self.networks.ipv6.pools(), taken)
        if not ipam6.is_ipv6(pool):
            raise InvalidArgument(f"subnet {pool} is IPv4 but Docker asked for an IPv6 pool")
        subnet = ipam6.parse_subnet6(pool)
        ipam6.check_overlap6(subnet, taken)
        return subnet

    def _pool(self, pool_id: str) -> ipam.AnyNet:
        found = self.store.docker_pools().get(pool_id)
        if found is None:
            raise NotFound(f"pool {pool_id} is not one of dockyard's")
        return found

    def release_pool(self, pool_id: str) -> None:
        with self.lock:
            self.store.delete_docker_pool(pool_id)
            self._cursors.pop(pool_id, None)

    def request_address(
        self, pool_id: str, address: str, options: Mapping[str, Any]
    ) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        _refuse_unknown(options, ("RequestAddressType",), "IPAM address")
        kind = options.get("RequestAddressType")
        if kind not in (None, GATEWAY_REQUEST):
            raise InvalidArgument(f"address request type {kind} is not supported by dockyard's IPAM")
        with self.lock:
            subnet = self._pool(pool_id)
            used = self.store.docker_pool_addresses(pool_id)
            ip: ipam.AnyAddr
            if address:
                ip = ipam6.parse_address6(address) if subnet.version == 6 else ipam.parse_address(address)
                ipam.check_in_subnet(ip, subnet, "address")
            else:
                # Next-fit, as dockyard's own networks: the address a container just gave back
                # is still held by its veth on the reaper's queue, which a CreateEndpoint with
                # it would have to wait for.
                allocator = ipam.AddressAllocator(subnet, ())
                try:
                    ip = allocator.allocate(lambda a: a in used, self._cursors.get(pool_id))
                except Conflict:
                    raise Conflict(f"no address left in pool {subnet}") from None
                self._cursors[pool_id] = ip
            self.store.add_docker_pool_address(pool_id, ip)
        return ipaddress.ip_interface(f"{ip}/{subnet.prefixlen}")  # type: ignore[return-value]

    def release_address(self, pool_id: str, address: str) -> None:
        with self.lock:
            subnet = self._pool(pool_id)
            parse = ipam6.parse_address6 if subnet.version == 6 else ipam.parse_address
            self.store.delete_docker_pool_address(pool_id, parse(address, "address"))
