"""The bridge driver: a Linux bridge per network, a veth pair per endpoint.

Host side of a network: the bridge with the gateway address, route_localnet
on it (so 127.0.0.1-published ports can be DNATed into it), no IPv6 on it
unless the network has IPv6 (then its IPv6 gateway address; never a router
advertisement taken), and the network's elements in the
`inet dockyard` sets. Per endpoint: its port's guard in `bridge dockyard`
(the port, its MAC, its address: what the port may send), then a veth pair
whose host end sits on the bridge and whose other end is created directly
inside the sandbox under its final name, with address, MAC and default
route; published ports are one map element each plus a host-port hold.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path

from dockyard.drivers.base import DriverErrors
from dockyard.errors import DockyardError, InvalidArgument, KernelError
from dockyard.kernel import Kernel, nftnl, sysctl
from dockyard.model import Endpoint, Network, PortBinding
from dockyard.policy import ports, rules
from dockyard.policy.rules.forward import legacy_accept_specs, legacy_policy_drop, legacy_rules_of

log = logging.getLogger(__name__)

# The publish maps' and routed6's types, as rules.TABLE_TEXT declares them (a
# test compares): their elements go over netlink without libnftables (nftnl.py).
PUBLISH_ANY_KEY = ("inet_proto", "inet_service")
PUBLISH_ADDR_KEY = ("ipv4_addr", "inet_proto", "inet_service")
PUBLISH_TARGET = ("ipv4_addr", "inet_service")
PUBLISH_ADDR6_KEY = ("ipv6_addr", "inet_proto", "inet_service")
PUBLISH_TARGET6 = ("ipv6_addr", "inet_service")
PUBLISHED: tuple[tuple[str, tuple[str, ...], tuple[str, ...] | None], ...] = (
    ("publish_any", PUBLISH_ANY_KEY, PUBLISH_TARGET),
    ("publish_addr", PUBLISH_ADDR_KEY, PUBLISH_TARGET),
    ("publish_any6", PUBLISH_ANY_KEY, PUBLISH_TARGET6),
    ("publish_addr6", PUBLISH_ADDR6_KEY, PUBLISH_TARGET6),
    ("routed6", PUBLISH_ADDR6_KEY, None),
)


def publish_changes(el: rules.Elements, add: bool) -> list[nftnl.SetChange]:
    """Published ports' elements (rules.publish_elements'), encoded: data only to add."""
    out: list[nftnl.SetChange] = []
    for name, key_types, data_types in PUBLISHED:
        part = getattr(el, name)
        if not part:
            continue
        keys = list(part)
        encoded = nftnl.encode_rows(key_types, keys)
        if add and data_types is not None:
            targets = nftnl.encode_rows(data_types, [part[k] for k in keys])
            out.append((rules.FAMILY, rules.TABLE, name, list(zip(encoded, targets, strict=True))))
        else:
            out.append((rules.FAMILY, rules.TABLE, name, [(k, None) for k in encoded]))
    return out


LOOPBACK6 = ipaddress.IPv6Address("::1")


def _bridged_ip6_netfilter() -> bool:
    """Whether br_netfilter passes bridged IPv6 through the inet hooks in this namespace."""
    try:
        return sysctl.read("net.bridge.bridge-nf-call-ip6tables") == "1"
    except DockyardError:
        return False  # no br_netfilter here


def endpoint_families(endpoint: Endpoint) -> ports.Families:
    """The address families an endpoint has: those a port on every address is published on."""
    return ports.families(endpoint.address is not None, endpoint.address6 is not None)


def _gateway_iface(network: Network) -> ipaddress.IPv4Interface | None:
    if network.subnet is None or network.gateway is None:
        return None
    return ipaddress.IPv4Interface(f"{network.gateway}/{network.subnet.prefixlen}")


def _gateway6_iface(network: Network) -> ipaddress.IPv6Interface | None:
    if not network.enable_ipv6 or network.subnet6 is None or network.gateway6 is None:
        return None
    return ipaddress.IPv6Interface(f"{network.gateway6}/{network.subnet6.prefixlen}")


class BridgeDriver:
    def __init__(self, kernel: Kernel, owner: str) -> None:
        self.k = kernel
        # This root's mark, on its bridges (ifalias) and nftables elements (comment).
        self.owner = owner
        # The daemon's monitor syncs FORWARD without the engine's lock: two syncs
        # at once would both find a rule missing and both add it.
        self._forward_lock = threading.Lock()
        # Networks in Docker's routed IPv6 mode (every network passes create_network at start):
        # unpublish, handed no network, renders their endpoints' ports as create did.
        self._routed6: set[str] = set()

    def _network_elements(self, network: Network) -> rules.Elements:
        return rules.elements_of_network(network)

    def create_network(self, network: Network) -> None:
        if rules.routed6(network):
            self._routed6.add(network.id)
        gateway6 = _gateway6_iface(network)
        more = [
            ipaddress.ip_interface(f"{c.gateway}/{c.subnet.prefixlen}")
            for c in network.more_subnets
            if c.gateway is not None
        ]
        created = self.k.netlink.ensure_bridge(
            network.bridge, _gateway_iface(network), network.mtu, self.owner, gateway6, more
        )
        try:
            sysctl.write(sysctl.interface_key(network.bridge, "route_localnet"), "1")
            if gateway6 is None:
                sysctl.ipv6_off(network.bridge)
            else:
                # The host routes between its networks and the outside for IPv6 too
                # (net.ipv4.ip_forward's twin, set as Docker sets it: once a network has IPv6).
                sysctl.write("net.ipv6.conf.all.forwarding", "1")
                self.k.netlink.ensure_loopback6_route(network.bridge)
            self.k.nft.apply(
                rules.element_commands("add", self._network_elements(network), self.owner),
                f"add network {network.name}",
            )
        except DockyardError as e:
            if created:
                try:
                    self.k.netlink.delete_bridge(network.bridge, self.owner)
                except DockyardError as undo:
                    # The creation's own error is the one raised; this one goes with it.
                    e.add_note(f"and the bridge {network.bridge} it made could not be removed: {undo}")
                    log.warning("cannot remove bridge %s after a failed creation: %s", network.bridge, undo)
            raise

    def delete_network(self, network: Network) -> None:
        self._routed6.discard(network.id)
        errors: list[Exception] = []
        try:
            self._delete_elements(self._network_elements(network))
        except DockyardError as e:
            errors.append(e)
        try:
            self.k.netlink.delete_bridge(network.bridge, self.owner)
        except DockyardError as e:
            errors.append(e)
        if errors:
            raise KernelError(str(DriverErrors(f"removing network {network.name}", errors)))

    def _delete_elements(self, el: rules.Elements) -> None:
        """Delete elements in one batch; if some were already gone, delete the rest."""
        if el.empty():
            return
        try:
            self.k.nft.apply(rules.element_commands("delete", el), "delete elements")
        except KernelError:
            # A batch fails whole when one element is missing (a crash
            # between steps, a reboot): delete what is still there.
            present = rules.Elements()
            for family, name in rules.TABLES:
                present.update(
                    rules.parse_listed_elements(self.k.nft.list_table(family, name) or [], self.owner)
                )
            remaining = el.common(present)
            if not remaining.empty():
                self.k.nft.apply(rules.element_commands("delete", remaining), "delete elements")

    def sync_forward(self, bridges: set[str]) -> list[str]:
        """Accept our bridges' traffic in iptables' FORWARD chain where its policy
        is DROP; remove our rules where they are no longer needed. Returns what changed.
        iptables-nft's chain is in nftables; iptables-legacy's (x_tables) too is
        looked at, where that table exists."""
        with self._forward_lock:
            return self._sync_forward(bridges)

    def _sync_forward(self, bridges: set[str]) -> list[str]:
        changes = self._sync_legacy_forward(bridges)
        listing = self.k.nft.list_chain(*rules.IPTABLES_FORWARD)
        if listing is None:
            return changes
        ours = rules.forward_rules_of(listing, self.owner)
        needed = bridges if rules.forward_policy_drop(listing) else set()
        stale = [h for bridge, handles in ours.items() if bridge not in needed for h in handles]
        if stale:
            self.k.nft.apply(
                rules.delete_rule_commands(stale), "remove dockyard's rules from iptables FORWARD"
            )
            changes.append(f"iptables FORWARD: removed {len(stale)} rule(s) no longer needed")
        for bridge in sorted(needed - set(ours)):
            self.k.nft.apply(
                rules.forward_accept_commands(bridge, self.owner), f"accept {bridge} in iptables FORWARD"
            )
            changes.append(f"iptables FORWARD: accepted {bridge}, the policy being DROP")
        return changes

    def _sync_legacy_forward(self, bridges: set[str]) -> list[str]:
        legacy = self.k.legacy
        lines = legacy.listing() if legacy is not None else None
        if legacy is None or lines is None:
            return []
        ours = legacy_rules_of(lines, self.owner)
        needed = bridges if legacy_policy_drop(lines) else set()
        changes = []
        stale = [spec for bridge, specs in ours.items() if bridge not in needed for spec in specs]
        for spec in stale:
            legacy.delete(spec)
        if stale:
            changes.append(f"iptables-legacy FORWARD: removed {len(stale)} rule(s) no longer needed")
        for bridge in sorted(needed - set(ours)):
            for spec in legacy_accept_specs(bridge, self.owner):
                legacy.insert(spec)
            changes.append(f"iptables-legacy FORWARD: accepted {bridge}, the policy being DROP")
        return changes

    def join(
        self, network: Network, endpoint: Endpoint, sandbox: Path | None, default_route: bool = True
    ) -> None:
        # Before the port exists, so that no frame passes before the guard holds.
        self.k.nft.apply(
            rules.element_commands("add", rules.endpoint_elements(endpoint, network.icc), self.owner),
            f"guard {endpoint.host_ifname}",
        )
        self.k.netlink.create_endpoint(
            host_ifname=endpoint.host_ifname,
            bridge=network.bridge,
            sandbox=sandbox,
            ifname=endpoint.ifname,
            address=endpoint.address,
            gateway=endpoint.gateway,
            mac=endpoint.mac,
            mtu=network.mtu,
            default_route=default_route and not network.internal,
            address6=endpoint.address6,
            gateway6=endpoint.gateway6,
        )

    def publish(self, network: Network, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None:
        if not bindings:
            return
        # A set of the few addresses: a range's thousand bindings compare once each, cheaply.
        if LOOPBACK6 in {b.host_ip for b in bindings} and _bridged_ip6_netfilter():
            # br_netfilter undoes the NAT of the reply at the bridge, before IPv6's own
            # check drops any packet to ::1 that did not come by lo (RFC 4291).
            raise InvalidArgument(
                "cannot publish on ::1 while net.bridge.bridge-nf-call-ip6tables is 1 "
                "(br_netfilter): publish on another address, or set it to 0"
            )
        self.k.holds.hold(endpoint.id, list(bindings), endpoint_families(endpoint))
        try:
            el = rules.endpoint_publish_elements(network, endpoint, bindings)
            self.k.nft.change_elements(True, publish_changes(el, True), self.owner)
        except DockyardError:
            self.k.holds.release(endpoint.id)
            raise

    def unpublish(self, endpoint: Endpoint, bindings: tuple[PortBinding, ...]) -> None:
        try:
            if bindings:
                el = rules.publish_elements(
                    endpoint.address.ip if endpoint.address is not None else None,
                    bindings,
                    endpoint.address6.ip if endpoint.address6 is not None else None,
                    routed=endpoint.network_id in self._routed6,
                )
                try:
                    self.k.nft.change_elements(False, publish_changes(el, False))
                except KernelError:
                    # Some were gone already (a crash between steps): delete what is left.
                    self._delete_elements(el)
        finally:
            self.k.holds.release(endpoint.id)

    def cut_off(self, endpoint: Endpoint) -> None:
        """The endpoint's port down (or already gone): from now on no frame crosses it, though
        the link and its guard stay until leave."""
        self.k.netlink.set_link_down(endpoint.host_ifname)

    def leave(self, network: Network, endpoint: Endpoint) -> None:
        """Remove the port, then its guard; every step is tried that is safe to try,
        and every failure is reported together.

        The guard goes once the port has, however its removal went: a port left on
        the bridge without its guard could send as any MAC and address, so while
        the kernel keeps the port the guard stays too, and the error says so. The
        caller keeps the endpoint 'releasing' and a later try finishes both."""
        port = endpoint.host_ifname
        errors: list[Exception] = []
        try:
            self.k.netlink.delete_link(port)
        except DockyardError as e:
            errors.append(e)
        try:
            port_gone = not errors or not self.k.netlink.link_exists(port)
        except DockyardError as e:
            errors.append(e)
            port_gone = False
        if port_gone:
            try:
                self._delete_elements(rules.endpoint_elements(endpoint, network.icc))
            except DockyardError as e:
                errors.append(e)
        else:
            errors.append(KernelError(f"its guard stays while {port} exists"))
        if errors:
            raise KernelError(str(DriverErrors(f"removing endpoint {port}", errors)))
