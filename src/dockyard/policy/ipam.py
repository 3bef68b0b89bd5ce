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
from typing import Any

from dockyard.errors import Conflict, InvalidArgument
from dockyard.settings import AddressPool, unusable_because

IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address
# Either family: the allocator and the checks in a subnet serve both (ipam6.py has IPv6's own parts).
AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network
AnyAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def _unusable(subnet: AnyNet) -> tuple[AnyAddr, ...]:
    """A subnet's addresses no host may have: IPv4's network and broadcast addresses,
    IPv6's subnet-router anycast address (IPv6 has no broadcast; Docker gives the last one)."""
    if subnet.version == 4:
        return (subnet.network_address, subnet.broadcast_address)
    return (subnet.network_address,)


def check_in_subnet(address: AnyAddr, subnet: AnyNet, what: str) -> None:
    if address.version != subnet.version or address not in subnet or address in _unusable(subnet):
        raise InvalidArgument(f"{what} {address} is not a usable address of subnet {subnet}")


class AddressAllocator:
    """Next-fit allocation over one network's range, of either family."""

    def __init__(
        self,
        subnet: AnyNet,
        reserved: Iterable[AnyAddr],
        ip_range: AnyNet | None = None,
    ) -> None:
        self.subnet = subnet
        self.range = ip_range or subnet
        self.reserved = frozenset(a for a in reserved if a.version == subnet.version) | set(_unusable(subnet))
        lo = int(self.range.network_address)
        hi = int(self.range.broadcast_address)
        # Never hand out the network (or IPv4's broadcast) address of the subnet.
        self._lo = max(lo, int(subnet.network_address) + 1)
        self._hi = min(hi, int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0))

    @property
    def capacity(self) -> int:
        n = self._hi - self._lo + 1
        return n - sum(1 for r in self.reserved if self._lo <= int(r) <= self._hi)

    def holds(self, address: AnyAddr) -> bool:
        """Whether address is in this allocator's range (of its family)."""
        return address.version == self.subnet.version and self._lo <= int(address) <= self._hi

    def allocate(self, is_used: Callable[[Any], bool], cursor: AnyAddr | None, wrap: bool = True) -> Any:
        """The next free address after `cursor`, wrapping once around the range (without
        wrap: up to the range's end only).

        Any: the address is of the subnet's family (the caller's own type)."""
        span = self._hi - self._lo + 1
        family = f"IPv{self.subnet.version}"
        if span <= 0:
            raise Conflict(f"no available {family} addresses in {self.range}")
        start = int(cursor) + 1 if cursor is not None else self._lo
        if not self._lo <= start <= self._hi:
            if not wrap and cursor is not None and start > self._hi:
                raise Conflict(f"no available {family} addresses left in {self.range}")
            start = self._lo
        make = IPv4Addr if self.subnet.version == 4 else ipaddress.IPv6Address
        # range(), not a loop to span: an IPv6 range is 2**64 wide, and the
        # search ends at the first free address after the cursor.
        for i in range(span if wrap else self._hi - start + 1):
            candidate = make(self._lo + (start - self._lo + i) % span)
            if candidate in self.reserved or is_used(candidate):
                continue
            return candidate
        raise Conflict(f"no available {family} addresses left in {self.range}")

    def check_requested(self, address: Any, is_used: Callable[[Any], bool]) -> Any:
        check_in_subnet(address, self.subnet, "requested address")
        if address in self.reserved:
            raise Conflict(f"address {address} is reserved on this network (gateway or aux address)")
        if is_used(address):
            raise Conflict(f"address {address} is already in use")
        return address


class SubnetsAllocator:
    """Next-fit over a family's several subnets of one network, as over one range that is
    their ranges end to end: after the cursor to the end of its subnet, then the next
    subnets, wrapping to the first. One subnet: exactly its AddressAllocator."""

    def __init__(self, allocators: list[AddressAllocator]) -> None:
        if not allocators:
            raise ValueError("a SubnetsAllocator needs a subnet")
        self.allocators = allocators

    @property
    def capacity(self) -> int:
        return sum(a.capacity for a in self.allocators)

    def allocate(self, is_used: Callable[[Any], bool], cursor: AnyAddr | None) -> Any:
        if len(self.allocators) == 1:
            return self.allocators[0].allocate(is_used, cursor)
        at = next((i for i, a in enumerate(self.allocators) if cursor is not None and a.holds(cursor)), None)
        order = self.allocators if at is None else self.allocators[at:] + self.allocators[:at]
        tries: list[tuple[AddressAllocator, AnyAddr | None, bool]] = [(a, None, True) for a in order]
        if at is not None:
            # The cursor's subnet after it, the others whole, then its own before the cursor.
            tries = [(order[0], cursor, False), *tries[1:], (order[0], None, True)]
        for allocator, after, wrap in tries:
            try:
                return allocator.allocate(is_used, after, wrap)
            except Conflict:
                continue
        ranges = ", ".join(str(a.range) for a in self.allocators)
        raise Conflict(f"no available IPv{self.allocators[0].subnet.version} addresses left in {ranges}")

    def check_requested(self, address: Any, is_used: Callable[[Any], bool]) -> Any:
        """The allocator of the subnet address is in checks it (the first one, when none has it)."""
        mine = next((a for a in self.allocators if address in a.subnet), self.allocators[0])
        return mine.check_requested(address, is_used)


def check_in_subnets(address: AnyAddr, subnets: Iterable[AnyNet], what: str) -> None:
    """check_in_subnet against a network's subnets of address's family: usable in one of them."""
    mine = [s for s in subnets if s.version == address.version]
    for subnet in mine:
        if address in subnet:
            check_in_subnet(address, subnet, what)
            return
    if len(mine) == 1:
        check_in_subnet(address, mine[0], what)
    listed = ", ".join(str(s) for s in mine)
    raise InvalidArgument(f"{what} {address} is not a usable address of any subnet of the network ({listed})")
