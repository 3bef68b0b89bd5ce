"""The dockyard network a CNI config names, and the CNI error of the daemon's side.

A config maps onto a dockyard network by its `name`: the network is used
when it exists and agrees with the config where the config says anything,
and made on the first ADD otherwise (as `dockyard network create` would,
labelled dev.dockyard.cni=true). This module owns that mapping (`NetConf`,
`ConfigNetworks`), the container's routes a config asks for (`routes_of`),
and the "no address left" check; attachments.py and checks.py build the
verbs on it. Network creation itself is networks/service.py's; the codes
are dockyard.wire.cni's, shared with the plugin.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from dockyard.engine.endpoints import Endpoints
from dockyard.engine.networks.changes import NetworkChanges
from dockyard.engine.networks.service import Networks, NetworkSpec
from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.model import Endpoint, Network, SubnetConfig
from dockyard.policy import ipam
from dockyard.settings import Paths
from dockyard.store import Store
from dockyard.wire.cni import CODE_INVALID_CONFIG, CODE_TRY_AGAIN

log = logging.getLogger(__name__)

CNI_LABEL = ("dev.dockyard.cni", "true")
DEFAULT_ROUTE = ipaddress.IPv4Network("0.0.0.0/0")
DEFAULT_ROUTE6 = ipaddress.IPv6Network("::/0")

AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network
AnyAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
# A route of either family: (destination, gw or None); resolved, the gw is always there.
Route = tuple[AnyNet, AnyAddr | None]
ResolvedRoute = tuple[AnyNet, AnyAddr]


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
    """The network part of a CNI config, parsed. None: the config does not say.

    default_route, hairpin and routes are per attachment, not the network's:
    the container's default route via the gateway (isDefaultGateway, else
    isGateway), hairpin mode on its bridge port (hairpinMode), and ipam.routes
    (a route without gw goes via the network's gateway).
    """

    name: str
    bridge: str | None = None
    subnet: ipaddress.IPv4Network | None = None
    ip_range: ipaddress.IPv4Network | None = None
    gateway: ipaddress.IPv4Address | None = None
    ip_masq: bool | None = None
    mtu: int | None = None
    default_route: bool = True
    hairpin: bool = True
    routes: tuple[Route, ...] = ()
    # The IPv6 range set of a dual-stack config (ranges: one set per family).
    subnet6: ipaddress.IPv6Network | None = None
    ip_range6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    # A range set's later ranges, of either family: the network's later subnets.
    more_subnets: tuple[SubnetConfig, ...] = ()

    @property
    def ipv6_only(self) -> bool:
        """An IPv6 subnet and no IPv4 one: the config's network is IPv6-only (Docker 28's --ipv4=false)."""
        return (
            self.subnet6 is not None
            and self.subnet is None
            and self.ip_range is None
            and self.gateway is None
        )


def routes_of(net: NetConf, network: Network, endpoint: Endpoint | None = None) -> list[ResolvedRoute]:
    """The container's routes: ipam.routes, then the default route unless they give one.

    Checked against the network (a gw on the subnet, not the subnet's own
    route) before anything changes. A route without gw, and the default
    route, go via the gateway of the endpoint's own subnet once it is known
    (on a network of several ranges; before, and on one of one, the network's).
    """
    gateway4: AnyAddr | None = network.gateway
    gateway6: AnyAddr | None = network.gateway6
    if endpoint is not None:
        gateway4, gateway6 = endpoint.gateway, endpoint.gateway6
    out: list[ResolvedRoute] = []
    for dst, gw in net.routes:
        # Each family's routes go via that family's gateway and subnet.
        gateway, subnets = (
            (gateway6, network.subnet_configs(6))
            if dst.version == 6
            else (gateway4, network.subnet_configs(4))
        )
        via = gw or gateway
        if via is None:
            raise CniError(
                CODE_INVALID_CONFIG,
                f"route to {dst} has no gw, and network {network.name} no IPv{dst.version} gateway",
            )
        if via.version != dst.version or not any(via in c.subnet for c in subnets):
            listed = ", ".join(str(c.subnet) for c in subnets)
            raise CniError(
                CODE_INVALID_CONFIG,
                f"route to {dst} via {via}: the gw must be on "
                + (f"subnet {listed}" if subnets else f"an IPv{dst.version} subnet")
                + f" of network {network.name}",
            )
        if any(dst == c.subnet for c in subnets):
            raise CniError(CODE_INVALID_CONFIG, f"route to {dst}: the interface's subnet is routed already")
        if all(d != dst for d, _ in out):
            out.append((dst, via))
    for default, gateway in ((DEFAULT_ROUTE, gateway4), (DEFAULT_ROUTE6, gateway6)):
        if (
            net.default_route
            and gateway is not None
            and not network.internal
            and all(d != default for d, _ in out)
        ):
            out.append((default, gateway))
    return out


def _ranges_text(configs: tuple[SubnetConfig, ...], given: tuple[SubnetConfig, ...] = ()) -> str | None:
    """A range set's later ranges as text for compatible (None: there are none). With given (the
    config's), a gateway shows only where the config gives one: one left out takes any."""
    if not configs:
        return None
    shown = [c.gateway is not None for c in given] if given else [True] * len(configs)
    return ", ".join(
        f"{c.subnet}"
        + (f" range {c.ip_range}" if c.ip_range else "")
        + (f" gw {c.gateway}" if c.gateway and i < len(shown) and shown[i] else "")
        for i, c in enumerate(configs)
    )


class ConfigNetworks:
    def __init__(
        self,
        store: Store,
        paths: Paths,
        networks: Networks,
        changes: NetworkChanges,
        endpoints: Endpoints,
    ) -> None:
        self.store = store
        self.paths = paths
        self.networks = networks
        self.changes = changes
        self.endpoints = endpoints

    def compatible(self, network: Network, net: NetConf) -> None:
        """The existing network must be what the config says, where it says anything."""
        if not network.bridged:  # a bridge network, or an overlay network (one across hosts)
            raise CniError(
                CODE_INVALID_CONFIG,
                f"network {network.name} uses the {network.driver} driver: it takes no endpoints",
            )
        if net.ipv6_only and network.enable_ipv4:
            raise CniError(
                CODE_INVALID_CONFIG,
                f"network {network.name} exists in {self.paths.root} with IPv4 subnet {network.subnet}, but "
                "the CNI config gives only IPv6: make them agree, or give the config another name",
            )
        wanted = (
            ("bridge", net.bridge, network.bridge),
            ("subnet", net.subnet, network.subnet),
            ("ip range", net.ip_range, network.ip_range),
            ("gateway", net.gateway, network.gateway),
            ("IPv6 subnet", net.subnet6, network.subnet6),
            ("IPv6 ip range", net.ip_range6, network.ip_range6),
            ("IPv6 gateway", net.gateway6, network.gateway6),
            ("ipMasq", net.ip_masq, network.masquerade),
            ("mtu", net.mtu, network.mtu),
            (
                "later ranges",
                _ranges_text(net.more_subnets),
                _ranges_text(network.more_subnets, net.more_subnets),
            ),
        )
        for what, asked, actual in wanted:
            if asked is not None and asked != actual:
                has = f"{what} {actual}" if actual is not None else f"no {what}"
                raise CniError(
                    CODE_INVALID_CONFIG,
                    f"network {network.name} exists in {self.paths.root} with {has}, but the "
                    f"CNI config asks for {asked}: make them agree, or give the config another name",
                )

    @staticmethod
    def spec(net: NetConf) -> NetworkSpec:
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
            enable_ipv6=net.subnet6 is not None,
            enable_ipv4=not net.ipv6_only,
            subnet6=net.subnet6,
            gateway6=net.gateway6,
            ip_range6=net.ip_range6,
            more_subnets=net.more_subnets,
            labels=(CNI_LABEL,),
            options=tuple(options),
        )

    def network_for(self, net: NetConf) -> Network:
        """The dockyard network of this config: checked when it exists, made when not."""
        network = self.store.find_network(net.name)
        if network is not None:
            self.compatible(network, net)
            return network
        try:
            network = self.networks.create(self.spec(net))
        except (InvalidArgument, Conflict) as err:
            raise CniError(CODE_INVALID_CONFIG, f"cannot make network {net.name}: {err}") from None
        self.changes.networks_changed()
        return network

    def remove_unused(self, network: Network) -> None:
        """Remove a network this ADD made when the ADD failed; kept if anything uses it by now."""
        if self.store.endpoint_count(network.id):
            return
        try:
            self.networks.remove(network.id)
        except DockyardError as err:
            log.warning("cannot remove network %s after a failed ADD: %s", network.name, err)
            return
        self.changes.networks_changed()

    def releasing(self, network_id: str | None = None) -> bool:
        """Whether endpoints (of this network) wait for the reaper."""
        return any(
            network_id is None or ep.network_id == network_id
            for ep in self.store.endpoints(state="releasing")
        )

    def check_capacity(self, network: Network, requested: AnyAddr | None) -> None:
        """CniError 11 when no address is left (after waiting for the reaper's pending work).

        Of the network's IPv4 range, or on an IPv6-only network its IPv6 one; requested:
        the address asked for of that family (then there is nothing to count)."""
        configs = network.subnet_configs(4) or network.subnet_configs(6)  # IPv6's on an IPv6-only one
        if requested is not None or not configs:
            return
        gateways = [c.gateway for c in configs if c.gateway is not None]
        reserved = [*gateways, *(a for _, a in network.aux_addresses)]
        capacity = sum(ipam.AddressAllocator(c.subnet, reserved, c.ip_range).capacity for c in configs)
        if self.store.endpoint_count(network.id) >= capacity and self.releasing(network.id):
            self.endpoints.settle()
        if self.store.endpoint_count(network.id) >= capacity:
            ranges = ", ".join(str(c.ip_range or c.subnet) for c in configs)
            raise CniError(
                CODE_TRY_AGAIN,
                f"no free address in {ranges} (network {network.name}): "
                f"all {capacity} are in use; try again after a DEL, or give the network a larger subnet",
            )
