"""IPv6 of bridge networks: the subnets taken, the default pools (daemon.json's IPv6
entries, else this root's ULA /48), the IPv6 subnet and gateway of a network being
created, and the default bridge's (daemon.json ipv6 and fixed-cidr-v6).

networks/service.py's part for IPv6, beside its IPv4 logic; the pure rules are
policy/ipam6.py's.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from dockyard import digests
from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.model import Network
from dockyard.policy import ipam, ipam6
from dockyard.settings import AddressPool6, DaemonSettings
from dockyard.store import Store

if TYPE_CHECKING:
    from dockyard.engine.networks.service import NetworkSpec


class NetworkIpv6:
    def __init__(self, settings: DaemonSettings, store: Store, kernel: Kernel) -> None:
        self.settings = settings
        self.store = store
        self.k = kernel

    def taken(
        self, exclude_network: str = "", exclude_bridges: tuple[str, ...] = ()
    ) -> list[tuple[str, ipaddress.IPv6Network]]:
        """IPv6 subnets a new network must not overlap: other networks' and the host's routes."""
        out: list[tuple[str, ipaddress.IPv6Network]] = []
        ours = set(exclude_bridges)
        for n in self.store.networks():
            if n.subnet6 is not None and n.id != exclude_network:
                out += [(f"network {n.name}", c.subnet) for c in n.subnet_configs(6)]  # type: ignore[misc]
            if n.bridge:
                ours.add(n.bridge)
        for dev, dst in self.k.netlink.routes6():
            if dev not in ours:
                out.append((f"a route of the host via {dev}", dst))
        return out

    def pools(self) -> tuple[AddressPool6, ...]:
        """daemon.json's IPv6 default-address-pools, else this daemon's own ULA /48 (Docker 27)."""
        if self.settings.default_address_pools6:
            return self.settings.default_address_pools6
        return (ipam6.ula_pool(self.store.meta_value("ula_seed", digests.token_hex(16))),)

    @staticmethod
    def check_ipv6_only(spec: NetworkSpec, host_binding: ipaddress.IPv4Address | None) -> None:
        """--ipv4=false (Docker 28's IPv6-only network): IPv6 must be on, and nothing of IPv4 given."""
        if not spec.enable_ipv6:
            raise InvalidArgument("--ipv4=false needs --ipv6: a network must have IPv4 or IPv6")
        aux4 = [a for _, a in spec.aux_addresses if a.version == 4]
        given = (
            ("subnet", spec.subnet),
            ("gateway", spec.gateway),
            ("ip-range", spec.ip_range),
            *(("aux-address", a) for a in aux4),
            ("option com.docker.network.bridge.host_binding_ipv4", host_binding),
        )
        for what, value in given:
            if value is not None:
                raise InvalidArgument(
                    f"IPv4 {what} {value} given but IPv4 is disabled on this network (--ipv4=false)"
                )

    def of_spec(
        self,
        spec: NetworkSpec,
        taken: list[tuple[str, ipaddress.IPv6Network]],
    ) -> tuple[ipaddress.IPv6Network | None, ipaddress.IPv6Address | None]:
        """The IPv6 subnet and gateway of a network asked for with spec (None, None without --ipv6)."""
        aux6 = [(k, a) for k, a in spec.aux_addresses if a.version == 6]
        if not spec.enable_ipv6:
            given = (
                ("subnet", spec.subnet6),
                ("gateway", spec.gateway6),
                ("ip-range", spec.ip_range6),
                *(("aux-address", a) for _, a in aux6),
            )
            for what, value in given:
                if value is not None:
                    raise InvalidArgument(
                        f"IPv6 {what} {value} given but IPv6 is not enabled on this network: add --ipv6"
                    )
            return None, None
        if spec.subnet6 is not None:
            ipam6.check_overlap6(spec.subnet6, taken)
            subnet6 = spec.subnet6
        else:
            if spec.gateway6 is not None or spec.ip_range6 is not None or aux6:
                raise InvalidArgument("an IPv6 --gateway, --ip-range or --aux-address needs an IPv6 --subnet")
            subnet6 = ipam6.first_free_subnet6(self.pools(), taken)
        gateway6 = spec.gateway6 or ipam6.first_host6(subnet6)
        ipam.check_in_subnet(gateway6, subnet6, "gateway")
        if spec.ip_range6 is not None and not spec.ip_range6.subnet_of(subnet6):
            raise InvalidArgument(f"ip-range {spec.ip_range6} is not within subnet {subnet6}")
        for aux_name, addr in aux6:
            ipam.check_in_subnet(addr, subnet6, f"aux-address {aux_name}")
        return subnet6, gateway6

    def default_bridge(
        self, current: Network | None, bridge: str
    ) -> tuple[ipaddress.IPv6Network | None, ipaddress.IPv6Address | None]:
        """daemon.json's ipv6 and fixed-cidr-v6 on the default bridge: exactly fixed-cidr-v6,
        else what it had, else a /64 of the IPv6 default pools (Docker 27)."""
        if not self.settings.ipv6:
            return None, None
        if self.settings.fixed_cidr_v6 is not None:
            subnet6 = self.settings.fixed_cidr_v6
        elif current is not None and current.subnet6 is not None:
            subnet6 = current.subnet6
        else:
            exclude = (current.bridge,) if current else ()
            taken = self.taken(
                exclude_network=current.id if current else "", exclude_bridges=(*exclude, bridge)
            )
            subnet6 = ipam6.first_free_subnet6(self.pools(), taken)
        return subnet6, ipam6.first_host6(subnet6)

    def default_bridge_changed(self, current: Network) -> bool:
        if current.enable_ipv6 != self.settings.ipv6:
            return True
        wanted = self.settings.fixed_cidr_v6
        return self.settings.ipv6 and wanted is not None and wanted != current.subnet6
