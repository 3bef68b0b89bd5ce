"""CNI attachments: the daemon's side of dockyard-cni (ADD, DEL, CHECK, GC, STATUS).

An attachment is what the CNI spec keys state by: (network name,
CNI_CONTAINERID, CNI_IFNAME). Here it is one endpoint on a dockyard network,
recorded under an owner key (`owner_key`: "cni-" and 60 hex digits of a hash
of that triple) in the columns where containers record theirs, plus one row
of the `attachments` table that keeps the readable triple and the netns.

This module owns:
- mapping a CNI network config onto a dockyard network: the network of the
  config's `name` is used when it exists and agrees with the config, and
  made on the first ADD otherwise (so `dockyard network ls/inspect` see it);
- the attachment lifecycle: ADD records then plugs (undone whole on
  failure), DEL releases (idempotent; the veth goes through the reaper),
  CHECK compares the kernel with the record and prevResult, GC releases
  what the runtime no longer lists, STATUS says whether an ADD can work;
- re-asserting the attachments' published ports after a daemon restart or
  a gc (the reconciler only knows containers).

It leaves address and host-port choice and all kernel changes to
endpoints.py and the bridge driver, network creation to networks.py, and
the CNI wire format (env, JSON, result versions) to cni.py and api/cni.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard import ipam, rules
from dockyard.errors import Conflict, DockyardError, InvalidArgument, KernelError
from dockyard.kernel import netns as nsmod
from dockyard.model import DriverName, Endpoint, Network, PortBinding, PortRequest
from dockyard.networks import NetworkSpec
from dockyard.steps import Undo, step

if TYPE_CHECKING:
    from dockyard.engine import Engine

CNI_LABEL = ("dev.dockyard.cni", "true")

# The spec's well-known codes, and dockyard-cni's own (100 and up, docs/cni.md).
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENV = 4
CODE_INVALID_CONFIG = 7
CODE_TRY_AGAIN = 11
CODE_NOT_AVAILABLE = 50
CODE_LIMITED = 51
CODE_CONFLICT = 100
CODE_KERNEL = 101
CODE_CHECK_FAILED = 102


class CniError(DockyardError):
    """A failure with the CNI error code the plugin must report."""

    http_status = 400
    kind = "CniError"

    def __init__(self, code: int, message: str, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class NetConf:
    """The network part of a CNI config, parsed. None: the config does not say."""

    name: str
    bridge: str | None = None
    subnet: ipaddress.IPv4Network | None = None
    ip_range: ipaddress.IPv4Network | None = None
    gateway: ipaddress.IPv4Address | None = None
    is_gateway: bool = True
    ip_masq: bool | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class AttachRequest:
    net: NetConf
    container_id: str
    ifname: str
    netns: str
    ip: ipaddress.IPv4Address | None = None
    mac: str | None = None
    ports: tuple[PortRequest, ...] = ()


@dataclass(frozen=True)
class Attached:
    """What ADD made, for the result."""

    network: Network
    endpoint: Endpoint
    netns: str
    default_route: bool
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
    def label(self) -> str:
        return f"cni:{self.container_id[:12]}/{self.ifname}"


def owner_key(network: str, container_id: str, ifname: str) -> str:
    """The owner of an attachment's records: stable, fixed length, like a container id."""
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()
    return "cni-" + digest[:60]


def is_attachment_owner(owner: str) -> bool:
    return owner.startswith("cni-")


class Attachments:
    def __init__(self, engine: Engine) -> None:
        self.e = engine

    # -- lookups ---------------------------------------------------------

    def find(self, owner: str) -> Attachment | None:
        row = self.e.store.find_attachment(owner)
        return Attachment.from_row(row) if row else None

    def all(self, network: str | None = None) -> list[Attachment]:
        return [Attachment.from_row(r) for r in self.e.store.attachments(network)]

    # -- the network a config names ------------------------------------------

    def _compatible(self, network: Network, net: NetConf) -> None:
        """The existing network must be what the config says, where it says anything."""
        if network.driver is not DriverName.BRIDGE:
            raise CniError(
                CODE_INVALID_CONFIG,
                f"network {network.name} uses the {network.driver} driver: it takes no endpoints",
            )
        wanted = (
            ("bridge", net.bridge, network.bridge),
            ("subnet", net.subnet, network.subnet),
            ("ip range", net.ip_range, network.ip_range),
            ("gateway", net.gateway, network.gateway),
            ("ipMasq", net.ip_masq, network.masquerade),
            ("mtu", net.mtu, network.mtu),
        )
        for what, asked, actual in wanted:
            if asked is not None and asked != actual:
                raise CniError(
                    CODE_INVALID_CONFIG,
                    f"network {network.name} exists in {self.e.paths.root} with {what} {actual}, but the "
                    f"CNI config asks for {asked}: make them agree, or give the config another name",
                )

    def _spec(self, net: NetConf) -> NetworkSpec:
        options = [("com.docker.network.bridge.enable_ip_masquerade", str(bool(net.ip_masq)).lower())]
        if net.bridge:
            options.append(("com.docker.network.bridge.name", net.bridge))
        if net.mtu is not None:
            options.append(("com.docker.network.driver.mtu", str(net.mtu)))
        return NetworkSpec(
            name=net.name,
            subnet=net.subnet,
            gateway=net.gateway,
            ip_range=net.ip_range,
            labels=(CNI_LABEL,),
            options=tuple(options),
        )

    def network_for(self, net: NetConf) -> Network:
        """The dockyard network of this config: checked when it exists, made when not."""
        network = self.e.store.find_network(net.name)
        if network is not None:
            self._compatible(network, net)
            return network
        try:
            network = self.e.networks.create(self._spec(net))
        except (InvalidArgument, Conflict) as err:
            raise CniError(CODE_INVALID_CONFIG, f"cannot make network {net.name}: {err}") from None
        self.e.networks_changed()
        return network

    # -- ADD -------------------------------------------------------------

    def _check_netns(self, path: str) -> None:
        if not os.path.exists(path):
            raise CniError(CODE_INVALID_ENV, f"CNI_NETNS {path} does not exist")
        if not nsmod.is_pinned(Path(path)):
            raise CniError(CODE_INVALID_ENV, f"CNI_NETNS {path} is not a network namespace")
        if nsmod.same_netns(path, "/proc/self/ns/net"):
            raise CniError(CODE_INVALID_ENV, f"CNI_NETNS {path} is the host's own network namespace")

    def _releasing(self, network_id: str | None = None) -> bool:
        return any(
            network_id is None or ep.network_id == network_id
            for ep in self.e.store.endpoints(state="releasing")
        )

    def _ifname_taken(self, req: AttachRequest) -> bool:
        from dockyard.kernel.netlink import sandbox_links

        try:
            return req.ifname in sandbox_links(Path(req.netns))
        except (OSError, DockyardError):
            return False

    def _check_capacity(self, network: Network, requested: ipaddress.IPv4Address | None) -> None:
        if requested is not None or network.subnet is None:
            return
        reserved = [a for a in (network.gateway, *(a for _, a in network.aux_addresses)) if a]
        capacity = ipam.AddressAllocator(network.subnet, reserved, network.ip_range).capacity
        if self.e.store.endpoint_count(network.id) >= capacity and self._releasing(network.id):
            self.e.settle()
        if self.e.store.endpoint_count(network.id) >= capacity:
            raise CniError(
                CODE_TRY_AGAIN,
                f"no free address in {network.ip_range or network.subnet} (network {network.name}): "
                f"all {capacity} are in use; try again after a DEL, or give the network a larger subnet",
            )

    def add(self, req: AttachRequest) -> Attached:
        e = self.e
        self._check_netns(req.netns)
        owner = owner_key(req.net.name, req.container_id, req.ifname)
        with e.lock:
            if self.find(owner) is not None:
                raise CniError(
                    CODE_INVALID_ENV,
                    f"container {req.container_id} already has interface {req.ifname} on network "
                    f"{req.net.name}: DEL it before adding it again",
                )
            if e.store.endpoints(container_id=owner, state="releasing"):
                e.settle()
            network = self.network_for(req.net)
            try:
                e.endpoints.check_request(network, req.ip, bool(req.ports))
            except InvalidArgument as err:
                raise CniError(CODE_INVALID_CONFIG, str(err)) from None
            self._check_capacity(network, req.ip)
            try:
                endpoint = self._add(req, owner, network)
            except KernelError:
                # Looked at only on failure: the fast path pays no netlink socket in the netns.
                if not self._ifname_taken(req):
                    raise
                if self._releasing():
                    e.settle()  # the interface of a recent DEL may still be on its way out
                    if not self._ifname_taken(req):
                        endpoint = self._add(req, owner, network)
                        return self._attached(req, network, endpoint)
                raise CniError(
                    CODE_INVALID_ENV,
                    f"CNI_IFNAME {req.ifname} already exists in network namespace {req.netns}",
                ) from None
        return self._attached(req, network, endpoint)

    def _add(self, req: AttachRequest, owner: str, network: Network) -> Endpoint:
        """Record, then plug; on any failure undo all of it."""
        e = self.e
        undo = Undo()
        step("cni.add.begin")
        try:
            with e.store.transaction():
                e.store.add_attachment(
                    owner, network.id, network.name, req.container_id, req.ifname, req.netns
                )
                endpoint, _ = e.endpoints.record(owner, network, req.ifname, req.ip)
                if req.mac:
                    e.store.set_endpoint_mac(endpoint.id, req.mac)
                    endpoint = replace(endpoint, mac=req.mac)
                # The runtime names every host port, and reserves it itself (Podman binds it
                # after the ADD), as with the portmap plugin: no check that the port is free
                # on the host; the ports table still keeps two owners off one port.
                bindings = tuple(
                    PortBinding(r.container_port, r.proto, r.host_port, r.host_ip) for r in req.ports
                )
                e.store.add_ports(owner, endpoint.id, bindings)
            undo.push(lambda: self._forget(owner))
            step("cni.add.recorded")
            e.endpoints.plug(network, endpoint, bindings, Path(req.netns), undo, req.net.is_gateway)
            e.k.holds.release(endpoint.id)  # the DNAT stays; the host port is the runtime's to hold
            step("cni.add.plugged")
            e.store.set_attachment_state(owner, "ready")
        except BaseException:
            undo.run()
            raise
        step("cni.add.done")
        return endpoint

    @staticmethod
    def _attached(req: AttachRequest, network: Network, endpoint: Endpoint) -> Attached:
        return Attached(
            network=network,
            endpoint=endpoint,
            netns=req.netns,
            default_route=req.net.is_gateway and endpoint.gateway is not None and not network.internal,
            bridge_mac=host_link_mac(network.bridge),
            host_mac=host_link_mac(endpoint.host_ifname),
        )

    def _forget(self, owner: str) -> None:
        with self.e.store.transaction():
            self.e.endpoints.drop_records(owner)
            self.e.store.delete_attachment(owner)

    # -- DEL and GC ----------------------------------------------------------

    def _release(self, owner: str) -> None:
        """Unpublish now, the veth through the reaper; then the row goes. Idempotent."""
        self.e.endpoints.release(owner)
        self.e.store.delete_attachment(owner)

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        with self.e.lock:
            step("cni.del.begin")
            self._release(owner_key(network, container_id, ifname))
            step("cni.del.done")

    def gc(self, network: str, valid: set[tuple[str, str]]) -> list[str]:
        """Release every attachment of the network that the runtime does not list."""
        removed = []
        with self.e.lock:
            step("cni.gc.begin")
            keep = {owner_key(network, cid, ifname) for cid, ifname in valid}
            for a in self.all(network):
                if a.owner not in keep:
                    self._release(a.owner)
                    removed.append(a.label)
            known = self.e.store.find_network(network)
            if known is not None:
                for ep in self.e.store.endpoints(network_id=known.id):
                    owner = ep.container_id
                    if is_attachment_owner(owner) and owner not in keep and self.find(owner) is None:
                        self.e.endpoints.release(owner)
                        removed.append(f"endpoint {ep.host_ifname} without attachment")
            step("cni.gc.done")
        return removed

    # -- CHECK -------------------------------------------------------------

    def check(self, req: AttachRequest, expected: Expected) -> None:
        e = self.e
        owner = owner_key(req.net.name, req.container_id, req.ifname)
        a = self.find(owner)
        if a is None:
            raise CniError(
                CODE_UNKNOWN_CONTAINER,
                f"container {req.container_id} has no interface {req.ifname} on network {req.net.name}",
            )
        eps = e.store.endpoints(container_id=owner)
        network = e.store.find_network(a.network_id)
        problems: list[str] = []
        if a.state != "ready":
            problems.append(f"the ADD of {req.ifname} did not finish")
        if not eps or network is None:
            raise CniError(
                CODE_CHECK_FAILED, f"the endpoint of {a.label} is gone from {network or 'its network'}"
            )
        ep = eps[0]
        if expected.address is not None and expected.address != ep.address:
            problems.append(f"prevResult gives {expected.address}, but {ep.address} is recorded")
        problems += sandbox_problems(Path(req.netns), req.ifname, ep, expected)
        if not e.k.netlink.link_exists(network.bridge):
            problems.append(f"bridge {network.bridge} is missing")
        elif ep.host_ifname not in e.k.netlink.bridge_ports(network.bridge):
            problems.append(f"host interface {ep.host_ifname} is missing from bridge {network.bridge}")
        problems += self._port_problems(owner, ep)
        if problems:
            raise CniError(CODE_CHECK_FAILED, f"{a.label} on network {network.name}: " + "; ".join(problems))

    def _port_problems(self, owner: str, ep: Endpoint) -> list[str]:
        bindings = self.e.endpoints.bindings(owner, ep.id)
        if not bindings:
            return []
        present = rules.parse_listed_elements(self.e.k.nft.list_table(rules.FAMILY, rules.TABLE) or [])
        out = []
        for b in bindings:
            missing = rules.publish_elements(ep.address.ip, (b,)).minus(present)
            if not missing.empty():
                out.append(f"port mapping {b} is missing from nftables")
        return out

    # -- STATUS ------------------------------------------------------------

    def status(self, net: NetConf) -> None:
        """Raise CniError 50 (or 51 when attachments suffer) if an ADD cannot work now."""
        e = self.e
        network = e.store.find_network(net.name)
        users = bool(network is not None and e.store.endpoint_count(network.id))
        limited = CODE_LIMITED if users else CODE_NOT_AVAILABLE
        try:
            table = e.k.nft.list_table(rules.FAMILY, rules.TABLE)
        except DockyardError as err:
            raise CniError(limited, f"nftables is not usable: {err}") from None
        if table is None:
            raise CniError(limited, f"the nftables table {rules.FAMILY} {rules.TABLE} is missing")
        if network is None:
            self._creatable(net)
            return
        try:
            self._compatible(network, net)
        except CniError as err:
            raise CniError(CODE_NOT_AVAILABLE, str(err)) from None
        if not e.k.netlink.link_exists(network.bridge):
            raise CniError(limited, f"bridge {network.bridge} of network {network.name} is missing")
        try:
            self._check_capacity(network, None)
        except CniError as err:
            raise CniError(CODE_NOT_AVAILABLE, str(err)) from None

    def _creatable(self, net: NetConf) -> None:
        """What networks.create would refuse, checked without making anything."""
        e = self.e
        try:
            spec = self._spec(net)
            bridge = net.bridge or ""
            for other in e.store.networks():
                if bridge and other.bridge == bridge:
                    raise Conflict(f"bridge {bridge} is already used by network {other.name}")
            if bridge and e.k.netlink.link_exists(bridge) and not e.k.netlink.is_bridge(bridge):
                raise Conflict(f"{bridge} exists on the host and is not a bridge")
            taken = e.networks.taken_subnets(exclude_bridges=(bridge,) if bridge else ())
            if spec.subnet is not None:
                ipam.check_overlap(spec.subnet, taken)
            else:
                ipam.first_free_subnet(e.settings.default_address_pools, taken)
        except DockyardError as err:
            raise CniError(CODE_NOT_AVAILABLE, f"network {net.name} cannot be made: {err}") from None

    # -- after a restart or a gc ---------------------------------------------

    def restore(self) -> list[str]:
        """Undo ADDs a crash cut short; put the others' published ports back."""
        e = self.e
        done: list[str] = []
        with e.lock:
            by_network: dict[str, list[tuple[Endpoint, tuple]]] = {}
            for a in self.all():
                if a.state != "ready":
                    self._release(a.owner)
                    done.append(f"{a.label}: undid an ADD cut short")
                    continue
                for ep in e.store.endpoints(container_id=a.owner):
                    by_network.setdefault(ep.network_id, []).append(
                        (ep, e.endpoints.bindings(a.owner, ep.id))
                    )
            for network_id, members in by_network.items():
                network = e.store.find_network(network_id)
                if network is None:
                    continue
                own = rules.Elements()
                for ep, _ in members:
                    own.update(rules.endpoint_elements(ep.host_ifname, network.icc))
                try:
                    e.drivers[network.driver].restore(network, [m for m in members if m[1]])
                    for ep, _ in members:
                        e.k.holds.release(ep.id)  # restore holds ports; for CNI the runtime does
                    if not own.empty():
                        e.k.nft.apply(
                            rules.element_commands("add", own, getattr(e, "owner", "")), "restore CNI ports"
                        )
                except DockyardError as err:
                    done.append(f"network {network.name}: cannot restore CNI attachments: {err}")
        return done

    def labels(self) -> dict[str, str]:
        """Owner key -> readable label, for listings of a network's users."""
        return {a.owner: a.label for a in self.all()}


@dataclass(frozen=True)
class Expected:
    """What CHECK must find, from prevResult."""

    address: ipaddress.IPv4Interface | None = None
    mac: str | None = None
    routes: tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None], ...] = ()


# -- reads of the kernel that CHECK and results need ---------------------------
# (candidates for kernel/netlink.py: they only read)

SIOCGIFHWADDR = 0x8927


def host_link_mac(name: str) -> str:
    """The MAC of a link in the daemon's (host) namespace, or "" if it is gone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return ""
    return ":".join(f"{b:02x}" for b in raw[18:24])


def sandbox_problems(netns: Path, ifname: str, ep: Endpoint, expected: Expected) -> list[str]:
    """What is missing or different in the sandbox, as readable phrases."""
    from dockyard.kernel.netlink import sandbox_netlink

    if not os.path.exists(netns) or not nsmod.is_pinned(netns):
        return [f"network namespace {netns} is gone"]
    with sandbox_netlink(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return [f"interface {ifname} is missing from {netns}"]
        idx = found[0]
        (link,) = ipr.get_links(idx)
        mac = str(link.get_attr("IFLA_ADDRESS") or "")
        up = bool(link["flags"] & 1)
        addresses = {
            ipaddress.IPv4Interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
            for m in ipr.get_addr(family=socket.AF_INET, index=idx)
        }
        routes = set()
        for m in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = m.get_attr("RTA_DST") or "0.0.0.0"
            gw = m.get_attr("RTA_GATEWAY")
            routes.add(
                (
                    ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False),
                    ipaddress.IPv4Address(gw) if gw else None,
                )
            )
    problems = []
    if not up:
        problems.append(f"interface {ifname} is down")
    want_mac = (expected.mac or ep.mac).lower()
    if mac.lower() != want_mac:
        problems.append(f"interface {ifname} has MAC {mac}, expected {want_mac}")
    want_address = expected.address or ep.address
    if want_address not in addresses:
        problems.append(f"address {want_address} is missing from {ifname}")
    for dst, gw in expected.routes:
        if not any(d == dst and (gw is None or g == gw) for d, g in routes):
            problems.append(f"route to {dst}" + (f" via {gw}" if gw else "") + " is missing")
    return problems
