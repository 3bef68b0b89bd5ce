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
  store (store/docker_ipam.py).

Every refusal is a DockyardError whose message the plugin sends back as
{"Err": ...}; options dockyard does not implement are refused by name.
"""

from __future__ import annotations

import ipaddress
import threading
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
from dockyard.policy import ipam
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
PROTOCOLS = {6: Protocol.TCP, 17: Protocol.UDP, 132: Protocol.SCTP}
NUMBERS = {p: n for n, p in PROTOCOLS.items()}


@dataclass(frozen=True)
class Joined:
    src_name: str
    gateway: ipaddress.IPv4Address | None


def _refuse_unknown(options: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    for key in options:
        if key not in known:
            raise InvalidArgument(f"{what} option {key} is not supported by dockyard")


def _interface(text: str, what: str) -> ipaddress.IPv4Interface:
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: an IPv4 address with prefix") from None


def _host_ip(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A binding's HostIP: none (or 0.0.0.0, what older dockerd sends for none) is every
    address of the endpoint's families; `::` and an IPv6 address are IPv6 only, as in Docker.
    Whether the endpoint has that family is the port chooser's to say (ports.check_families)."""
    if text in (None, "", "0.0.0.0"):
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
        self._cursors: dict[str, ipaddress.IPv4Address] = {}  # pool -> the address given last

    # -- networks --------------------------------------------------------------

    def network_of(self, docker_id: str) -> Network:
        for n in self.store.networks():
            if (ID_LABEL, docker_id) in n.labels:
                return n
        raise NotFound(f"network {docker_id[:12]} is not a dockyard network")

    def create_network(
        self, docker_id: str, options: Mapping[str, Any], ipv4: list[Any], ipv6: list[Any]
    ) -> Network:
        _refuse_unknown(options, DOCKER_NETWORK_KEYS, "network")
        if options.get("com.docker.network.enable_ipv6") or ipv6:
            raise InvalidArgument("IPv6 is not supported by dockyard networks: create it without --ipv6")
        generic = options.get(GENERIC) or {}
        _refuse_unknown(generic, NETWORK_OPTIONS, "network")
        if len(ipv4) > 1:
            raise InvalidArgument("a dockyard network has one IPv4 subnet: give one --subnet")
        subnet = gateway = None
        if ipv4:
            pool = _interface(str(ipv4[0].get("Pool", "")), "pool")
            if pool.network.network_address != pool.ip:
                raise InvalidArgument(f"invalid pool {pool}: host bits set")
            subnet = pool.network
            if ipv4[0].get("Gateway"):
                gateway = _interface(str(ipv4[0]["Gateway"]), "gateway").ip
            if ipv4[0].get("AuxAddresses"):
                raise InvalidArgument("--aux-address is not supported by dockyard's Docker plugin")
        spec = NetworkSpec(
            name="docker-" + docker_id[:12],
            subnet=subnet,
            gateway=gateway,
            internal=bool(options.get("com.docker.network.internal", False)),
            labels=((ID_LABEL, docker_id),),
            options=tuple((str(k), str(v)) for k, v in generic.items()),
        )
        return self.network_changes.create(spec)

    def delete_network(self, docker_id: str) -> None:
        try:
            network = self.network_of(docker_id)
        except NotFound:
            return  # already gone: Docker retries a delete
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
        self, docker_net: str, endpoint_id: str, address: str, mac: str, options: Mapping[str, Any]
    ) -> Endpoint:
        """Record the endpoint with Docker's address (and MAC, else one derived from the address)."""
        _refuse_unknown(options, ENDPOINT_KEYS, "endpoint")
        network = self.network_of(docker_net)
        if not address:
            raise InvalidArgument("the endpoint has no IPv4 address: Docker's IPAM must give one")
        ip = _interface(address, "address").ip
        self.endpoints.check_request(network, ip, False)
        owner = self._owner(network, endpoint_id)
        ifname = "dk" + endpoint_id[:11]
        if self.store.address_used(network.id, ip):
            # Held by a veth on its way out, maybe: settled here, before the
            # transaction below, which the reaper would wait for.
            self.endpoints.settle()
        with self.lock, self.store.transaction():
            self.store.add_attachment(
                owner.key, network.id, network.name, endpoint_id, ifname, DOCKER_ENDPOINT
            )
            endpoint, _ = self.endpoints.record(
                owner, network, ifname, ip, mac=mac or str(options.get(MAC_OPTION) or "")
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
            self.drivers[network.driver].join(network, endpoint, None, default_route=False)
        return Joined(endpoint.ifname, None if network.internal else endpoint.gateway)

    def _rejoin(self, network: Network, left: Endpoint) -> None:
        """A Join after a Leave on one endpoint (libnetwork's Sandbox.Refresh does so): once
        the reaper has taken the old veth, the endpoint is recorded again with its address
        and MAC."""
        self.endpoints.settle()
        with self.lock, self.store.transaction():
            ip = left.address.ip if left.address else None
            self.endpoints.record(left.owner, network, left.ifname, ip, mac=left.mac)
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
    ) -> ipaddress.IPv4Network:
        if v6:
            raise InvalidArgument(
                "IPv6 pools are not supported by dockyard's IPAM: create the network without --ipv6"
            )
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
            taken = self.networks.taken_subnets()
            taken += [(f"pool {s} given to Docker", s) for s in self.store.docker_pools().values()]
            if pool:
                subnet = _interface(pool, "subnet").network
                ipam.check_usable(subnet)
                ipam.check_overlap(subnet, taken)
            else:
                subnet = ipam.first_free_subnet(self.settings.default_address_pools, taken)
            self.store.add_docker_pool(str(subnet), subnet)
        return subnet

    def _pool(self, pool_id: str) -> ipaddress.IPv4Network:
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
    ) -> ipaddress.IPv4Interface:
        _refuse_unknown(options, ("RequestAddressType",), "IPAM address")
        kind = options.get("RequestAddressType")
        if kind not in (None, GATEWAY_REQUEST):
            raise InvalidArgument(f"address request type {kind} is not supported by dockyard's IPAM")
        with self.lock:
            subnet = self._pool(pool_id)
            used = self.store.docker_pool_addresses(pool_id)
            if address:
                ip = ipam.parse_address(address, "address")
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
        return ipaddress.IPv4Interface(f"{ip}/{subnet.prefixlen}")

    def release_address(self, pool_id: str, address: str) -> None:
        with self.lock:
            self._pool(pool_id)
            self.store.delete_docker_pool_address(pool_id, ipam.parse_address(address, "address"))
