"""CHECK and STATUS of dockyard-cni: comparing the kernel with what should be, changing nothing.

- CHECK: the attachment's record, what prevResult says (`Expected`) and the
  config's routes against the sandbox, the bridge and the nftables sets and
  maps (the port's guard, the published ports);
  each difference is one readable phrase in a code 102 error; an unknown
  attachment is code 3.
- STATUS: whether an ADD of this config can work now (nftables usable, the
  network creatable or compatible, its bridge there, an address left):
  code 50 when not, 51 when existing attachments suffer too.

The kernel is read through kernel/ (reads.py, the netlink and nft handles);
the attachment lifecycle is attachments.py's.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path

from dockyard.engine.cni.attachments import Attachments, AttachRequest, check_netns, owner_key
from dockyard.engine.cni.networks import (
    CniError,
    NetConf,
    Route,
    routes_of,
)
from dockyard.engine.networks.service import Networks
from dockyard.errors import Conflict, DockyardError
from dockyard.kernel import reads
from dockyard.model import Endpoint, EndpointOwner, Network
from dockyard.policy import ipam, ipam6, rules
from dockyard.settings import DaemonSettings
from dockyard.wire.cni import CODE_CHECK_FAILED, CODE_LIMITED, CODE_NOT_AVAILABLE, CODE_UNKNOWN_CONTAINER


@dataclass(frozen=True)
class Expected:
    """What CHECK must find, from prevResult."""

    address: ipaddress.IPv4Interface | None = None
    mac: str | None = None
    routes: tuple[Route, ...] = ()
    address6: ipaddress.IPv6Interface | None = None


def sandbox_problems(
    netns: Path,
    ifname: str,
    ep: Endpoint,
    routes: list[Route],
    guarded_mac: str | None = None,
    label: str = "",
) -> list[str]:
    """What is missing or different in the sandbox, as readable phrases.

    ep carries what the interface must have (its MAC and address, prevResult's
    where that gives them); routes are those the sandbox must hold;
    guarded_mac is the only MAC the interface's bridge port lets through;
    label names the namespace in the phrases (CNI_NETNS as the runtime gave it).
    """
    label = label or str(netns)
    if not os.path.exists(netns) or not reads.is_network_namespace(netns):
        return [f"network namespace {label} is gone"]
    found = reads.sandbox_interface(netns, ifname)
    if found is None:
        return [f"interface {ifname} is missing from {label}"]
    problems = []
    if not found.up:
        problems.append(f"interface {ifname} is down")
    if found.mac != ep.mac.lower():
        problems.append(f"interface {ifname} has MAC {found.mac}, expected {ep.mac.lower()}")
    elif guarded_mac is not None and found.mac != guarded_mac.lower():
        # A later plugin of the chain (tuning's mac) changed it after the ADD.
        problems.append(
            f"interface {ifname} has MAC {found.mac}, but its bridge port lets only {guarded_mac.lower()} "
            "through: give the MAC to dockyard (runtimeConfig.mac, CNI_ARGS MAC=)"
        )
    for address in (ep.address, ep.address6):
        if address is not None and address not in found.addresses:
            problems.append(f"address {address} is missing from {ifname}")
    for dst, gw in routes:
        if not any(d == dst and (gw is None or g == gw) for d, g in found.routes):
            problems.append(f"route to {dst}" + (f" via {gw}" if gw else "") + " is missing")
    return problems


class AttachmentChecks:
    """CHECK and STATUS; they read the kernel and the records, and change nothing."""

    def __init__(
        self, attachments: Attachments, networks: Networks, settings: DaemonSettings, owner_mark: str
    ) -> None:
        self.attachments = attachments
        self.store = attachments.store
        self.k = attachments.k
        self.endpoints = attachments.endpoints
        # The config's network (ConfigNetworks), and the networks' own service for the subnets taken.
        self.networks = attachments.networks
        self.network_service = networks
        self.settings = settings
        # This root's mark on its bridges (a bridge of another root is not this one's to use).
        self.owner_mark = owner_mark

    # -- CHECK -------------------------------------------------------------

    def check(self, req: AttachRequest, expected: Expected) -> None:
        check_netns(req.netns, req.netns_fd)
        owner = owner_key(req.net.name, req.container_id, req.ifname)
        a = self.attachments.find(owner)
        if a is None:
            raise CniError(
                CODE_UNKNOWN_CONTAINER,
                f"container {req.container_id} has no interface {req.ifname} on network {req.net.name}",
            )
        eps = self.store.endpoints(container_id=owner)
        network = self.store.find_network(a.network_id)
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
        if expected.address6 is not None and expected.address6 != ep.address6:
            problems.append(
                f"prevResult gives {expected.address6}, but {ep.address6 or 'no IPv6 address'} is recorded"
            )
        want = replace(
            ep,
            mac=expected.mac or ep.mac,
            address=expected.address or ep.address,
            address6=expected.address6 or ep.address6,
        )
        routes: list[Route] = list(expected.routes)
        routes += [r for r in routes_of(req.net, network, ep) if r not in routes]
        problems += sandbox_problems(req.sandbox, req.ifname, want, routes, ep.mac, req.netns)
        if not self.k.netlink.link_exists(network.bridge):
            problems.append(f"bridge {network.bridge} is missing")
        elif not self.k.netlink.is_port_of(ep.host_ifname, network.bridge):
            problems.append(f"host interface {ep.host_ifname} is missing from bridge {network.bridge}")
        problems += self._port_problems(a.endpoint_owner, ep, network)
        if problems:
            raise CniError(CODE_CHECK_FAILED, f"{a.label} on network {network.name}: " + "; ".join(problems))

    def _port_problems(self, owner: EndpointOwner, ep: Endpoint, network: Network) -> list[str]:
        present = rules.Elements()
        for family, name in rules.TABLES:
            present.update(rules.parse_listed_elements(self.k.nft.list_table(family, name) or []))
        out = []
        if not rules.endpoint_elements(ep, network.icc).minus(present).empty():
            out.append(f"the guard of host interface {ep.host_ifname} is missing from nftables")
        bindings = self.endpoints.bindings(owner, ep.id)
        for b in bindings:
            missing = rules.endpoint_publish_elements(network, ep, (b,)).minus(present)
            if not missing.empty():
                out.append(f"port mapping {b} is missing from nftables")
        return out

    # -- STATUS ------------------------------------------------------------

    def status(self, net: NetConf) -> None:
        """Raise CniError 50 (or 51 when attachments suffer) if an ADD cannot work now."""
        network = self.store.find_network(net.name)
        users = bool(network is not None and self.store.endpoint_count(network.id))
        limited = CODE_LIMITED if users else CODE_NOT_AVAILABLE
        try:
            table = self.k.nft.list_table(rules.FAMILY, rules.TABLE)
        except DockyardError as err:
            raise CniError(limited, f"nftables is not usable: {err}") from None
        if table is None:
            raise CniError(limited, f"the nftables table {rules.FAMILY} {rules.TABLE} is missing")
        if network is None:
            self._creatable(net)
            return
        try:
            self.networks.compatible(network, net)
        except CniError as err:
            raise CniError(CODE_NOT_AVAILABLE, str(err)) from None
        if not self.k.netlink.link_exists(network.bridge):
            raise CniError(limited, f"bridge {network.bridge} of network {network.name} is missing")
        try:
            self.networks.check_capacity(network, None)
        except CniError as err:
            raise CniError(CODE_NOT_AVAILABLE, str(err)) from None

    def _creatable(self, net: NetConf) -> None:
        """What networks.create, and then the bridge driver, would refuse, checked without making anything."""
        try:
            spec = self.networks.spec(net)
            bridge = net.bridge or ""
            for other in self.store.networks():
                if bridge and other.bridge == bridge:
                    raise Conflict(f"bridge {bridge} is already used by network {other.name}")
            if bridge and self.k.netlink.link_exists(bridge):
                if not self.k.netlink.is_bridge(bridge):
                    raise Conflict(f"{bridge} exists on the host and is not a bridge")
                if self.k.netlink.link_alias(bridge) != self.owner_mark:
                    raise Conflict(f"a bridge named {bridge} exists on the host and is not this root's")
            exclude = (bridge,) if bridge else ()
            if spec.subnet6 is not None:
                ipam6.check_overlap6(spec.subnet6, self.network_service.ipv6.taken(exclude_bridges=exclude))
            if spec.enable_ipv4:
                taken = self.network_service.taken_subnets(exclude_bridges=exclude)
                if spec.subnet is not None:
                    ipam.check_overlap(spec.subnet, taken)
                else:
                    ipam.first_free_subnet(self.settings.default_address_pools, taken)
            self.network_service.more_subnets(spec, spec.subnet, spec.subnet6, bridge)
        except DockyardError as err:
            raise CniError(CODE_NOT_AVAILABLE, f"network {net.name} cannot be made: {err}") from None
