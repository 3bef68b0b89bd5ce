"""Use cases on networks: the built-in three, the default bridge's settings,
user networks (create, rm, prune) and the filters of `network ls`.

The default `bridge` network is Docker's: bridge `dockyard0` (--bridge),
with exactly --bip when given, else the first subnet of the daemon's
address pools that overlaps no host route (daemon.json's
default-address-pools, else Docker's, 172.17.0.0/16 first), gateway .1.
`host` and `none` always exist and cannot be removed. Restoring networks
after a reboot or a crash is reconcile.py's.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dockyard import digests
from dockyard.drivers import Driver
from dockyard.engine.networks.ipv6 import NetworkIpv6
from dockyard.engine.steps import report_rollback, step
from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.kernel import Kernel
from dockyard.model import DriverName, Network, OwnerKind, SubnetConfig, check_network_name
from dockyard.policy import ipam, ipam6, rules
from dockyard.policy.container_filters import PruneFilter, dangling_check
from dockyard.settings import DaemonSettings, parse_bridge_name
from dockyard.store import Store, now


class OverlayNetworks(Protocol):
    """engine/cluster.py's part in network create and rm."""

    def create(self, spec: NetworkSpec) -> Network: ...

    def remove(self, network: Network) -> None: ...

    def hold(self) -> None: ...


def new_id() -> str:
    return digests.token_hex(32)


class Networks:
    def __init__(
        self,
        settings: DaemonSettings,
        store: Store,
        kernel: Kernel,
        drivers: Mapping[DriverName, Driver],
    ) -> None:
        self.settings = settings
        self.store = store
        self.k = kernel
        self.drivers = drivers
        # Labels of the endpoint owners that are not containers (CNI attachments): see name_owners.
        self._owner_names: dict[OwnerKind, Callable[[], dict[str, str]]] = {}
        # Global (overlay) networks, when the daemon is in a cluster (engine/cluster.py).
        self.overlay: OverlayNetworks | None = None
        self.ipv6 = NetworkIpv6(settings, store, kernel)

    # -- who is attached -------------------------------------------------

    def name_owners(self, kind: OwnerKind, names: Callable[[], dict[str, str]]) -> None:
        """Let the owners of another kind name their own (owner key -> label) in users()."""
        self._owner_names[kind] = names

    def users(self, network: Network) -> list[str]:
        """Who is attached, for messages: container names, and what other owners call theirs."""
        labels: dict[OwnerKind, dict[str, str]] = {}
        out = []
        for ep in self.store.endpoints(network_id=network.id):
            owner = ep.owner
            if owner.kind is OwnerKind.CONTAINER:
                c = self.store.find_container(owner.key)
                out.append(c.name if c else owner.short)
                continue
            if owner.kind not in labels:
                source = self._owner_names.get(owner.kind)
                labels[owner.kind] = source() if source else {}
            out.append(labels[owner.kind].get(owner.key, owner.short))
        return out

    # -- what is taken ---------------------------------------------------

    def taken_subnets(
        self, exclude_network: str = "", exclude_bridges: tuple[str, ...] = ()
    ) -> list[tuple[str, ipaddress.IPv4Network]]:
        """Subnets a new network must not overlap: other networks and host routes."""
        out: list[tuple[str, ipaddress.IPv4Network]] = []
        ours = set(exclude_bridges)
        for n in self.store.networks():
            if n.subnet is not None and n.id != exclude_network:
                out += [(f"network {n.name}", c.subnet) for c in n.subnet_configs(4)]  # type: ignore[misc]
                ours.add(n.bridge)
        for dev, dst in self.k.netlink.routes():
            if dev not in ours:
                out.append((f"a route of the host via {dev}", dst))
        return out

    # -- the built-in networks -------------------------------------------

    def _default_bridge(
        self, current: Network | None, bridge: str, bip: ipaddress.IPv4Interface | None
    ) -> Network:
        if bip is not None:
            subnet, gateway = bip.network, bip.ip
        elif current is not None and current.subnet is not None and current.gateway is not None:
            subnet, gateway = current.subnet, current.gateway
        else:
            exclude = (current.bridge,) if current else ()
            taken = self.taken_subnets(
                exclude_network=current.id if current else "", exclude_bridges=(*exclude, bridge)
            )
            # The same pools as user networks, as Docker: daemon.json's default-address-pools
            # apply to the default bridge too when no --bip is given.
            subnet = ipam.first_free_subnet(self.settings.default_address_pools, taken)
            gateway = ipam.first_host(subnet)
        subnet6, gateway6 = self.ipv6.default_bridge(current, bridge)
        return Network(
            id=current.id if current else new_id(),
            name="bridge",
            driver=DriverName.BRIDGE,
            subnet=subnet,
            gateway=gateway,
            bridge=bridge,
            icc=self.settings.icc,
            masquerade=self.settings.ip_masq,
            mtu=self.settings.mtu,
            options=(
                ("com.docker.network.bridge.default_bridge", "true"),
                ("com.docker.network.bridge.enable_icc", str(self.settings.icc).lower()),
                ("com.docker.network.bridge.enable_ip_masquerade", str(self.settings.ip_masq).lower()),
                ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                ("com.docker.network.bridge.name", bridge),
                ("com.docker.network.driver.mtu", str(self.settings.mtu)),
            ),
            created=current.created if current else now(),
            enable_ipv6=subnet6 is not None,
            subnet6=subnet6,
            gateway6=gateway6,
        )

    def ensure_builtin(self) -> None:
        with self.store.transaction():
            for name, driver in (("host", DriverName.HOST), ("none", DriverName.NONE)):
                if self.store.network_named(name) is None:
                    self.store.add_network(Network(id=new_id(), name=name, driver=driver, created=now()))
        self.configure_default_bridge(self.settings.bridge, self.settings.bip)

    def configure_default_bridge(self, bridge: str, bip: ipaddress.IPv4Interface | None) -> Network:
        """Make the default bridge match --bridge/--bip; refused while containers are attached."""
        current = self.store.network_named("bridge")
        if (
            current is not None
            and bridge == current.bridge
            and (bip is None or (bip.ip == current.gateway and bip.network == current.subnet))
            and not self.ipv6.default_bridge_changed(current)
        ):
            return current
        if current is not None:
            users = self.users(current)
            if users:
                raise Conflict(
                    f"cannot change the default bridge to {bridge}"
                    + (f" with --bip {bip}" if bip else "")
                    + f" while containers are attached to {current.bridge} ({', '.join(users)}); "
                    "stop or remove them first"
                )
        for other in self.store.networks():
            if other.name != "bridge" and other.bridge == bridge:
                raise Conflict(f"bridge {bridge} is already used by network {other.name}")
        wanted = self._default_bridge(current, bridge, bip)
        if wanted.subnet is not None and bip is not None:
            for what, net in self.taken_subnets(
                exclude_network=wanted.id, exclude_bridges=(bridge, *((current.bridge,) if current else ()))
            ):
                if net.overlaps(wanted.subnet):
                    raise Conflict(f"--bip {bip} overlaps {what} ({net})")
        if wanted.subnet6 is not None and self.settings.fixed_cidr_v6 is not None:
            for what, net6 in self.ipv6.taken(
                exclude_network=wanted.id, exclude_bridges=(bridge, *((current.bridge,) if current else ()))
            ):
                if net6.overlaps(wanted.subnet6):
                    raise Conflict(f"fixed-cidr-v6 {wanted.subnet6} overlaps {what} ({net6})")
        driver = self.drivers[DriverName.BRIDGE]
        if (
            current is not None
            and current.bridge
            and (
                current.bridge != wanted.bridge
                or current.subnet != wanted.subnet
                or current.subnet6 != wanted.subnet6
            )
        ):
            driver.delete_network(current)
        driver.create_network(wanted)
        with self.store.transaction():
            if current is None:
                self.store.add_network(wanted)
            else:
                self.store.replace_network(wanted)
        return wanted

    # -- user-defined networks ---------------------------------------------

    def create(self, spec: NetworkSpec) -> Network:
        """`network create`: validate everything, record, then make the bridge."""
        check_network_name(spec.name)
        if spec.driver == "overlay":
            if self.overlay is None:
                raise InvalidArgument(
                    "overlay networks need a cluster: start dockyardd with --cluster-store etcd://HOST:PORT "
                    "and --cluster-advertise ADDRESS|INTERFACE"
                )
            return self.overlay.create(spec)
        # --attachable asks that any container may join: a local network always lets one
        # (Compose sends it for every network it makes).
        if spec.driver != "bridge":
            raise InvalidArgument(
                f"driver {spec.driver!r} is not supported: dockyard networks use the bridge driver"
            )
        if self.store.network_named(spec.name) is not None:
            raise Conflict(f"network with name {spec.name} already exists")
        opts = BridgeOptions.parse(spec.options)
        network_id = new_id()
        bridge = opts.bridge or ("dy-" + network_id[:12])
        for other in self.store.networks():
            if other.bridge and other.bridge == bridge:
                raise Conflict(f"bridge {bridge} is already used by network {other.name}")
        if opts.bridge and self.k.netlink.link_exists(bridge) and not self.k.netlink.is_bridge(bridge):
            raise Conflict(f"{bridge} exists on the host and is not a bridge")
        if not spec.enable_ipv4:
            self.ipv6.check_ipv6_only(spec, opts.host_binding)
        subnet6, gateway6 = self.ipv6.of_spec(spec, self.ipv6.taken(exclude_bridges=(bridge,)))
        subnet: ipaddress.IPv4Network | None
        gateway: ipaddress.IPv4Address | None
        if not spec.enable_ipv4:
            subnet = gateway = None  # an IPv6-only network (Docker 28's --ipv4=false)
        else:
            subnet, gateway = self._subnet4(spec, bridge)
        more = self.more_subnets(spec, subnet, subnet6, bridge)
        network = Network(
            id=network_id,
            name=spec.name,
            driver=DriverName.BRIDGE,
            subnet=subnet,
            gateway=gateway,
            ip_range=spec.ip_range,
            bridge=bridge,
            internal=spec.internal,
            icc=opts.icc,
            masquerade=opts.masquerade,
            mtu=opts.mtu or self.settings.mtu,
            host_binding=opts.host_binding,
            options=spec.options,
            labels=spec.labels,
            aux_addresses=spec.aux_addresses,
            created=now(),
            enable_ipv6=spec.enable_ipv6,
            subnet6=subnet6,
            gateway6=gateway6,
            ip_range6=spec.ip_range6,
            more_subnets=more,
        )
        with self.store.transaction():
            self.store.add_network(network)
            intent = self.store.add_intent("network.create", network.id)
        step("network.create.recorded")
        try:
            self.drivers[DriverName.BRIDGE].create_network(network)
        except BaseException as e:
            try:
                self.drivers[DriverName.BRIDGE].delete_network(network)
            except DockyardError as undo_error:
                report_rollback(e, f"creation of network {network.name}", [undo_error])
            self.store.delete_network(network.id)
            raise
        finally:
            self.store.done_intent(intent)
        step("network.create.done")
        return network

    def _subnet4(self, spec: NetworkSpec, bridge: str) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
        """The IPv4 subnet and gateway of a network asked for with spec (checked, not taken)."""
        taken = self.taken_subnets(exclude_bridges=(bridge,))
        if spec.subnet is not None:
            ipam.check_usable(spec.subnet)
            ipam.check_overlap(spec.subnet, taken)
            subnet = spec.subnet
        else:
            if spec.gateway is not None or spec.ip_range is not None:
                raise InvalidArgument("--gateway and --ip-range need --subnet")
            subnet = ipam.first_free_subnet(self.settings.default_address_pools, taken)
        gateway = spec.gateway or ipam.first_host(subnet)
        ipam.check_in_subnet(gateway, subnet, "gateway")
        if spec.ip_range is not None and not spec.ip_range.subnet_of(subnet):
            raise InvalidArgument(f"ip-range {spec.ip_range} is not within subnet {subnet}")
        for aux_name, addr in spec.aux_addresses:
            if addr.version == 4:
                ipam.check_in_subnet(addr, subnet, f"aux-address {aux_name}")
        return subnet, gateway

    def more_subnets(
        self,
        spec: NetworkSpec,
        subnet: ipaddress.IPv4Network | None,
        subnet6: ipaddress.IPv6Network | None,
        bridge: str,
    ) -> tuple[SubnetConfig, ...]:
        """A CNI range set's later ranges, checked (Docker's API refuses a bridge network a
        second subnet of a family, as Docker does)."""
        if not spec.more_subnets:
            return ()
        taken: list[tuple[str, ipam.AnyNet]] = [*self.taken_subnets(exclude_bridges=(bridge,))]
        taken += self.ipv6.taken(exclude_bridges=(bridge,))
        return ipam6.check_more_subnets(spec.more_subnets, (subnet, subnet6), taken)

    def remove(self, ref: str) -> Network:
        network = self.store.get_network(ref)
        if network.builtin:
            raise InvalidArgument(f"{network.name} is a pre-defined network and cannot be removed")
        users = self.users(network)
        if users:
            raise Conflict(
                f"error while removing network: network {network.name} id {network.id} has active "
                f"endpoints ({', '.join(users)})"
            )
        if network.driver is DriverName.OVERLAY:
            if self.overlay is None:
                raise InvalidArgument(f"network {network.name} is global: this daemon is not in its cluster")
            self.overlay.remove(network)
            return network
        intent = self.store.add_intent("network.rm", network.id)
        try:
            step("network.rm.begin")
            self.drivers[network.driver].delete_network(network)
            step("network.rm.kernel")
            with self.store.transaction():
                self.store.delete_network(network.id)
                self.store.done_intent(intent)
        except BaseException as e:
            # The network stays, as recorded: make its kernel side whole again,
            # and drop the intent so that no later gc finishes what failed.
            try:
                self.drivers[network.driver].create_network(network)
            except DockyardError as undo_error:
                report_rollback(e, f"removal of network {network.name}", [undo_error])
            self.store.done_intent(intent)
            raise
        return network

    def in_use(self, network: Network) -> bool:
        return bool(self.store.endpoint_count(network.id))

    def prune(self, wanted: PruneFilter | None = None) -> list[str]:
        removed = []
        for network in self.store.networks():
            if network.builtin or self.in_use(network):
                continue
            if wanted is not None and not wanted.matches(network.labels, network.created):
                continue
            if network.driver is DriverName.OVERLAY:
                continue  # global: other hosts may use it; `network rm` asks the cluster
            self.remove(network.id)
            removed.append(network.name)
        return removed

    # -- lookups ---------------------------------------------------------

    def get(self, ref: str) -> Network:
        return self.store.get_network(ref)

    def matching(self, wanted: NetworkFilter | None = None) -> list[Network]:
        """Every network, or those `wanted` (network ls --filter) matches."""
        if wanted is None:
            return self.store.networks()
        return [n for n in self.store.networks() if wanted.matches(n, wanted.needs_use and self.in_use(n))]

    def user_networks(self) -> list[Network]:
        """Networks with DNS by name: every bridge network but the default one, and overlay networks."""
        return [n for n in self.store.networks() if n.bridged and n.name != "bridge"]


def _bool_option(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"invalid value {value!r} for option {key}: use true or false")


@dataclass(frozen=True)
class BridgeOptions:
    """Docker's bridge driver options (-o/--opt), parsed once."""

    bridge: str = ""
    icc: bool = True
    masquerade: bool = True
    host_binding: ipaddress.IPv4Address | None = None
    mtu: int = 0

    @classmethod
    def parse(cls, options: tuple[tuple[str, str], ...]) -> BridgeOptions:
        values: dict[str, object] = {}
        for key, value in options:
            if key == "com.docker.network.bridge.name":
                values["bridge"] = parse_bridge_name(value)
            elif key == "com.docker.network.bridge.enable_icc":
                values["icc"] = _bool_option(key, value)
            elif key == "com.docker.network.bridge.enable_ip_masquerade":
                values["masquerade"] = _bool_option(key, value)
            elif key == "com.docker.network.bridge.host_binding_ipv4":
                addr = ipam.parse_address(value, f"value for {key}")
                values["host_binding"] = None if addr == ipaddress.IPv4Address("0.0.0.0") else addr
            elif key == rules.GATEWAY_MODE_IPV6:
                rules.check_gateway_mode6(((key, value),))  # read where the network is (rules.routed6)
            elif key == "com.docker.network.driver.mtu":
                # ASCII digits only, as Docker's Atoi: int() also takes " 1500", "1_500", Arabic digits.
                mtu = int(value) if value.isascii() and value.isdigit() and len(value) <= 5 else 0
                if not 68 <= mtu <= 65535:
                    raise InvalidArgument(
                        f"invalid value {value!r} for option {key}: an MTU from 68 to 65535"
                    )
                values["mtu"] = mtu
        return cls(**values)  # type: ignore[arg-type]


FILTER_KEYS = ("name", "id", "driver", "type", "label", "dangling", "scope")
SCOPES = ("local", "global", "swarm")


@dataclass(frozen=True)
class NetworkFilter:
    """`network ls --filter`, parsed: Docker's keys, each one matched by any of its values.

    name and id match a part (as Docker's docs say: "all or part"), driver
    exactly, type is `builtin` or `custom`, label is KEY or KEY=VALUE; every
    key given must match.
    """

    values: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> NetworkFilter:
        """The API's `filters` query: JSON, {"name": ["a", "b"]} or Docker's older {"name": {"a": true}}."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"invalid filters {text[:80]!r}: expected a JSON object") from None
        if not isinstance(raw, dict):
            raise InvalidArgument(f"invalid filters {text[:80]!r}: expected a JSON object")
        values = []
        for key, given in raw.items():
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"invalid filter {key!r}: use one of {', '.join(FILTER_KEYS)}")
            if isinstance(given, dict) and all(v is True for v in given.values()):
                given = list(given)
            if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
                raise InvalidArgument(f"invalid filter {key!r}: its values must be a list of strings")
            for value in given:
                if key == "type" and value not in ("builtin", "custom"):
                    raise InvalidArgument(f"invalid filter 'type'={value!r}: use builtin or custom")
                if key == "scope" and value not in SCOPES:
                    raise InvalidArgument(f"invalid filter 'scope'={value!r}: use {', '.join(SCOPES)}")
            if key == "dangling":
                dangling_check(given)
            if given:
                values.append((key, tuple(given)))
        return cls(tuple(values))

    @property
    def needs_use(self) -> bool:
        return any(key == "dangling" for key, _ in self.values)

    def matches(self, n: Network, in_use: bool = False) -> bool:
        """in_use: a container is on n (dangling= asks; the caller knows)."""
        for key, given in self.values:
            if key == "dangling":
                wanted = dangling_check(given)
                # Docker's dangling networks: custom ones without a container.
                if wanted is not None and wanted != (not n.builtin and not in_use):
                    return False
            elif not any(self._one(key, v, n) for v in given):
                return False
        return True

    @staticmethod
    def _one(key: str, value: str, n: Network) -> bool:
        if key == "scope":
            return value == "local"  # every dockyard network is local
        if key == "name":
            return value in n.name
        if key == "id":
            return value in n.id
        if key == "driver":
            return value == n.driver.value
        if key == "type":
            return (value == "builtin") == n.builtin
        label, sep, label_value = value.partition("=")
        labels = dict(n.labels)
        return label in labels and (not sep or labels[label] == label_value)


@dataclass(frozen=True)
class NetworkSpec:
    """`network create`'s request, parsed."""

    name: str
    driver: str = "bridge"
    subnet: ipaddress.IPv4Network | None = None
    gateway: ipaddress.IPv4Address | None = None
    ip_range: ipaddress.IPv4Network | None = None
    aux_addresses: tuple[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address], ...] = ()
    # --ipv6, and IPv6's IPAM (subnet6 None: one from the IPv6 default pools).
    enable_ipv6: bool = False
    subnet6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    ip_range6: ipaddress.IPv6Network | None = None
    # A family's second and later IPAM.Config entries (an overlay network takes them).
    more_subnets: tuple[SubnetConfig, ...] = ()
    # --ipv4=false: an IPv6-only network.
    enable_ipv4: bool = True
    internal: bool = False
    attachable: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, str], ...] = ()
