"""Address management: subnets for networks and addresses for endpoints.

Pure logic. The engine passes in what is taken (other networks' subnets,
the host's routes, a predicate over leased addresses) and stores what this
module chooses.

Addresses are handed out next-fit: each network remembers the last address
it gave, and the search continues after it, wrapping at the end of the
range. A released address is therefore reused only after the rest of the
range, so a peer with a stale ARP entry does not get a new container's
traffic at once, and the n-th allocation costs what the first did.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator

from dockyard.errors import Conflict, InvalidArgument
from dockyard.settings import AddressPool, unusable_because

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


def parse_subnet(text: str, what: str = "subnet") -> IPv4Net:
    try:
        # Text only: ipaddress would also take an int or a tuple.
        if not isinstance(text, str):
            raise ValueError(text)
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv4 CIDR such as 10.1.0.0/24") from None
    if "/" not in text:
        raise InvalidArgument(f"invalid {what} {text!r}: the prefix length is missing")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid {what} {text!r}: it must be /30 or larger to hold a container")
    if ipaddress.IPv4Network(text, strict=False).network_address != ipaddress.IPv4Interface(text).ip:
        raise InvalidArgument(f"invalid {what} {text!r}: host bits are set; did you mean {net}?")
    why = unusable_because(net)
    if why is not None:
        raise InvalidArgument(f"invalid {what} {text!r}: {why}")
    return net


def check_usable(subnet: IPv4Net, what: str = "subnet") -> None:
    """Refuse a subnet in a range that holds no container's address (loopback,
    multicast, link-local, "this network", broadcast, reserved)."""
    why = unusable_because(subnet)
    if why is not None:
        raise InvalidArgument(f"invalid {what} {subnet}: {why}")


def parse_address(text: str, what: str = "address") -> IPv4Addr:
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an IPv4 address") from None


def pool_candidates(pools: Iterable[AddressPool]) -> Iterator[IPv4Net]:
    for pool in pools:
        yield from pool.base.subnets(new_prefix=pool.size)


def first_free_subnet(pools: Iterable[AddressPool], taken: Iterable[tuple[str, IPv4Net]]) -> IPv4Net:
    """The first pool subnet overlapping nothing in `taken` (what, subnet) pairs."""
    taken_nets = [net for _, net in taken]
    for candidate in pool_candidates(pools):
        if not any(candidate.overlaps(t) for t in taken_nets):
            return candidate
    raise Conflict(
        "all predefined address pools have been fully subnetted; remove unused networks or give --subnet"
    )


def check_overlap(subnet: IPv4Net, taken: Iterable[tuple[str, IPv4Net]]) -> None:
    for what, net in taken:
        if subnet.overlaps(net):
            raise Conflict(f"subnet {subnet} overlaps {what} ({net})")


def first_host(subnet: IPv4Net) -> IPv4Addr:
    return subnet.network_address + 1


def check_in_subnet(address: IPv4Addr, subnet: IPv4Net, what: str) -> None:
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"{what} {address} is not a usable address of subnet {subnet}")


class AddressAllocator:
    """Next-fit allocation over one network's range."""

    def __init__(
        self,
        subnet: IPv4Net,
        reserved: Iterable[IPv4Addr],
        ip_range: IPv4Net | None = None,
    ) -> None:
        self.subnet = subnet
        self.range = ip_range or subnet
        self.reserved = frozenset(reserved) | {subnet.network_address, subnet.broadcast_address}
        lo = int(self.range.network_address)
        hi = int(self.range.broadcast_address)
        # Never hand out the network or broadcast address of the subnet.
        self._lo = max(lo, int(subnet.network_address) + 1)
        self._hi = min(hi, int(subnet.broadcast_address) - 1)

    @property
    def capacity(self) -> int:
        n = self._hi - self._lo + 1
        return n - sum(1 for r in self.reserved if self._lo <= int(r) <= self._hi)

    def allocate(self, is_used: Callable[[IPv4Addr], bool], cursor: IPv4Addr | None) -> IPv4Addr:
        """The next free address after `cursor`, wrapping once around the range."""
        span = self._hi - self._lo + 1
        if span <= 0:
            raise Conflict(f"no available IPv4 addresses in {self.range}")
        start = int(cursor) + 1 if cursor is not None else self._lo
        if not self._lo <= start <= self._hi:
            start = self._lo
        for i in range(span):
            candidate = IPv4Addr(self._lo + (start - self._lo + i) % span)
            if candidate in self.reserved or is_used(candidate):
                continue
            return candidate
        raise Conflict(f"no available IPv4 addresses left in {self.range}")

    def check_requested(self, address: IPv4Addr, is_used: Callable[[IPv4Addr], bool]) -> IPv4Addr:
        check_in_subnet(address, self.subnet, "requested address")
        if address in self.reserved:
            raise Conflict(f"address {address} is reserved on this network (gateway or aux address)")
        if is_used(address):
            raise Conflict(f"address {address} is already in use")
        return address
