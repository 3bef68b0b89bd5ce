"""IPv6's part of address management: its subnets, its default pools, and
telling a value's family apart (`--subnet` and `--gateway` take either).

Pure logic, beside ipam.py, whose allocator serves both families. Docker's
rules: the gateway is the subnet's first address (::1 of it), addresses are
given in order after it, and `--ipv6` without an IPv6 subnet takes a /64 of
a ULA /48 (fdXX:XXXX:XXXX::/48, RFC 4193) whose global ID is the daemon's
own, unless daemon.json's default-address-pools has IPv6 entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dockyard import digests
from dockyard.errors import Conflict, InvalidArgument
from dockyard.model import SubnetConfig
from dockyard.policy import ipam
from dockyard.settings import AddressPool6, unusable_because

IPv6Net = ipaddress.IPv6Network
IPv6Addr = ipaddress.IPv6Address

# Ranges that hold no container's IPv6 address (RFC 6890): a subnet there is refused.
SPECIAL_RANGES6: tuple[tuple[IPv6Net, str], ...] = (
    (IPv6Net("::/127"), "the unspecified and loopback addresses"),
    (IPv6Net("::ffff:0:0/96"), "the IPv4-mapped range"),
    (IPv6Net("fe80::/10"), "the link-local range"),
    (IPv6Net("ff00::/8"), "the multicast range"),
)
# The longest prefix that still holds the gateway and a container (and the anycast address).
MAX_PREFIXLEN6 = 126


def unusable_because6(subnet: IPv6Net) -> str | None:
    for special, what in SPECIAL_RANGES6:
        if subnet.overlaps(special):
            where = "lies in" if subnet.subnet_of(special) else "holds"
            return f"it {where} {special} ({what}): no container may have an address there"
    return None


def is_ipv6(text: str) -> bool:
    """The family a --subnet, --gateway, --ip-range or --aux-address value names: IPv6 has a colon."""
    return isinstance(text, str) and ":" in text


def parse_subnet6(text: str, what: str = "subnet") -> IPv6Net:
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        iface = ipaddress.IPv6Interface(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid {what} {text!r}: expected an IPv6 CIDR such as 2001:db8:1::/64"
        ) from None
    if "/" not in text:
        raise InvalidArgument(f"invalid {what} {text!r}: the prefix length is missing")
    net = iface.network
    if iface.ip != net.network_address:
        raise InvalidArgument(f"invalid {what} {text!r}: host bits are set; did you mean {net}?")
    if net.prefixlen > MAX_PREFIXLEN6:
        raise InvalidArgument(
            f"invalid {what} {text!r}: it must be /{MAX_PREFIXLEN6} or larger to hold a container"
        )
    why = unusable_because6(net)
    if why is not None:
        raise InvalidArgument(f"invalid {what} {text!r}: {why}")
    return net


def parse_address6(text: str, what: str = "address") -> IPv6Addr:
    try:
        if not isinstance(text, str) or "%" in text:
            raise ValueError(text)
        return IPv6Addr(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv6 address") from None


def parse_any_subnet(text: str, what: str = "subnet") -> ipam.AnyNet:
    return parse_subnet6(text, what) if is_ipv6(text) else ipam.parse_subnet(text, what)


def parse_any_address(text: str, what: str = "address") -> ipam.AnyAddr:
    return parse_address6(text, what) if is_ipv6(text) else ipam.parse_address(text, what)


def ula_pool(seed: str) -> AddressPool6:
    """Docker 27's default IPv6 pool: a ULA /48 whose 40-bit global ID comes from
    the daemon's own identity (seed), cut into /64s; the same daemon, the same /48."""
    global_id = digests.sha256(seed.encode()).digest()[:5]
    base = int.from_bytes(b"\xfd" + global_id, "big") << 80
    return AddressPool6(IPv6Net((base, 48)), 64)


def first_free_subnet6(pools: Iterable[AddressPool6], taken: Iterable[tuple[str, IPv6Net]]) -> IPv6Net:
    """The first pool subnet overlapping nothing taken (a /48 holds 65,536 /64s: looked
    at in order, past the taken ones, never listed whole)."""
    taken_nets = sorted({net for _, net in taken}, key=lambda n: (int(n.network_address), n.prefixlen))
    for pool in pools:
        step = 1 << (128 - pool.size)
        candidate = int(pool.base.network_address)
        end = int(pool.base.broadcast_address)
        while candidate <= end:
            net = IPv6Net((candidate, pool.size))
            clash = next((t for t in taken_nets if net.overlaps(t)), None)
            if clash is None:
                return net
            # Past the clash: the next candidate after its last address, aligned.
            after = max(int(clash.broadcast_address), int(net.broadcast_address)) + 1
            candidate = (after + step - 1) // step * step
    raise Conflict(
        "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the "
        "network; remove unused networks or give an IPv6 --subnet"
    )


def check_overlap6(subnet: IPv6Net, taken: Iterable[tuple[str, IPv6Net]]) -> None:
    for what, net in taken:
        if subnet.overlaps(net):
            raise Conflict(f"subnet {subnet} overlaps {what} ({net})")


def first_host6(subnet: IPv6Net) -> IPv6Addr:
    """The gateway Docker chooses: the subnet's ::1."""
    return subnet.network_address + 1


def check_more_subnets(
    more: Iterable[SubnetConfig],
    firsts: Iterable[ipam.AnyNet | None],
    taken: Iterable[tuple[str, ipam.AnyNet]],
) -> tuple[SubnetConfig, ...]:
    """A network's later subnets of a family, checked: each after a first subnet of its family
    (firsts: the network's IPv4 and IPv6 ones, None where it has none), usable, its range and
    gateway in it, overlapping none of the network's own nor what is taken elsewhere; each
    with its gateway (the subnet's first address when not given)."""
    own: list[ipam.AnyNet] = [n for n in firsts if n is not None]
    taken = list(taken)
    out: list[SubnetConfig] = []
    for c in more:
        v = c.subnet.version
        if not any(n.version == v for n in own):
            raise InvalidArgument(f"subnet {c.subnet}: a second IPv{v} subnet needs a first one")
        why = unusable_because(c.subnet) if v == 4 else unusable_because6(c.subnet)  # type: ignore[arg-type]
        if why is not None:
            raise InvalidArgument(f"invalid subnet {c.subnet}: {why}")
        gateway = c.gateway or c.subnet.network_address + 1
        ipam.check_in_subnet(gateway, c.subnet, "gateway")
        if c.ip_range is not None and not c.ip_range.subnet_of(c.subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"ip-range {c.ip_range} is not within subnet {c.subnet}")
        for other in own:
            if other.version == v and other.overlaps(c.subnet):  # type: ignore[arg-type]
                raise Conflict(f"subnet {c.subnet} overlaps subnet {other} of the same network")
        for what, net in taken:
            if net.version == v and net.overlaps(c.subnet):  # type: ignore[arg-type]
                raise Conflict(f"subnet {c.subnet} overlaps {what} ({net})")
        own.append(c.subnet)
        out.append(SubnetConfig(c.subnet, gateway, c.ip_range))
    return tuple(out)
