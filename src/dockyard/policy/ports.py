"""Published ports: Docker's -p/--expose syntax, and the choice of host ports.

Pure logic, no I/O: the engine hands in what is taken and a probe that
says whether the host could bind a port (and why not); this module decides,
and words every refusal a user reads, the ones the kernel layer reports too.

Forms, as `docker run -p` takes them:
    CPORT   HPORT:CPORT   IP:HPORT:CPORT   IP::CPORT
    C1-C2   H1-H2:C1-C2   IP:H1-H2:C1-C2   H1-H2:CPORT (one port from the range)
each with an optional /tcp (the default), /udp or /sctp; an IPv6 IP in
brackets ([::1]:8080:80). Without an IP a port is published on every
address of each family the container's network has (Docker's way);
0.0.0.0 means every IPv4 address only, [::] every IPv6 address only.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dockyard.errors import Conflict, DockyardError, InvalidArgument
from dockyard.model import BindStatus, PortBinding, PortRequest, Protocol

PORT_MAX = 65535
HostIp = ipaddress.IPv4Address | ipaddress.IPv6Address
# The address families "every address" (host_ip None) stands for on an endpoint.
Families = frozenset[int]
IPV4_ONLY: Families = frozenset({4})


def families(has_ipv4: bool, has_ipv6: bool) -> Families:
    """The families of an endpoint (or a network's endpoints): 4, 6 or both."""
    return frozenset(f for f, has in ((4, has_ipv4), (6, has_ipv6)) if has)


def where(ip: HostIp | None, port: int | str) -> str:
    """ADDRESS:PORT as Docker prints it: IPv6 in brackets, every address as 0.0.0.0."""
    if ip is not None and ip.version == 6:
        return f"[{ip}]:{port}"
    return f"{ip or '0.0.0.0'}:{port}"


@dataclass(frozen=True)
class PortSpec:
    """One -p argument, parsed: ranges kept as ranges."""

    container_start: int
    container_end: int
    proto: Protocol
    host_start: int = 0  # 0: choose
    host_end: int = 0
    host_ip: HostIp | None = None

    def requests(self) -> list[PortRequest]:
        """One request per container port; a host range for one port stays a range."""
        count = self.container_end - self.container_start + 1
        if self.host_start == 0:
            return [
                PortRequest(p, self.proto, 0, self.host_ip)
                for p in range(self.container_start, self.container_end + 1)
            ]
        host_count = self.host_end - self.host_start + 1
        if host_count == count:
            return [
                PortRequest(self.container_start + i, self.proto, self.host_start + i, self.host_ip)
                for i in range(count)
            ]
        # A host range with one container port: any free port of the range.
        return [
            PortRequest(
                self.container_start,
                self.proto,
                self.host_start,
                self.host_ip,
                host_port_end=self.host_end,
            )
        ]


def _parse_proto(text: str, spec: str) -> Protocol:
    try:
        return Protocol(text.lower())
    except ValueError:
        raise InvalidArgument(
            f"invalid port spec {spec!r}: unknown protocol {text!r} (use tcp, udp or sctp)"
        ) from None


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_range(text: str, what: str, spec: str, allow_zero: bool) -> tuple[int, int]:
    if text == "":
        raise InvalidArgument(f"invalid port spec {spec!r}: no {what} given")
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo = int(lo_text, 10)
        hi = int(hi_text, 10) if sep else lo
    except ValueError:
        raise InvalidArgument(f"invalid port spec {spec!r}: invalid {what} {text!r}") from None
    # ASCII digits only: int() and isdigit() would also take '٨٠' as 80.
    if not _is_decimal(lo_text) or (sep and not _is_decimal(hi_text)):
        raise InvalidArgument(f"invalid port spec {spec!r}: invalid {what} {text!r}")
    low_bound = 0 if allow_zero else 1
    for p in (lo, hi):
        if not low_bound <= p <= PORT_MAX:
            raise InvalidArgument(f"invalid port spec {spec!r}: {what} {p} is outside 1-{PORT_MAX}")
    if hi < lo:
        raise InvalidArgument(f"invalid port spec {spec!r}: range {text!r} ends before it starts")
    if allow_zero and lo == 0 and hi != 0:
        raise InvalidArgument(f"invalid port spec {spec!r}: invalid {what} {text!r}")
    return lo, hi


def parse_port_spec(spec: str) -> PortSpec:
    body, slash, proto_text = spec.partition("/")
    proto = _parse_proto(proto_text, spec) if slash else Protocol.TCP
    if not body:
        raise InvalidArgument(f"invalid port spec {spec!r}: no container port given")
    host_ip: HostIp | None = None
    host_text = ""
    if body.startswith("["):
        # [IPv6]:HOSTPORT:CPORT or [IPv6]::CPORT: the brackets keep the address's colons apart.
        ip_text, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidArgument(
                f"invalid port spec {spec!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT[/PROTO]"
            )
        host_ip = _parse_host_ip(ip_text, 6, spec)
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise InvalidArgument(
                f"invalid port spec {spec!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT[/PROTO]"
            )
        host_text, container_text = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            container_text = parts[0]
        elif len(parts) == 2:
            host_text, container_text = parts
            if host_text == "":
                raise InvalidArgument(f"invalid port spec {spec!r}: no host port before ':'")
        elif len(parts) == 3:
            ip_text, host_text, container_text = parts
            host_ip = _parse_host_ip(ip_text, 4, spec)
        elif _looks_ipv6(parts):
            raise InvalidArgument(
                f"invalid port spec {spec!r}: put an IPv6 address in brackets, as in [::1]:8080:80"
            )
        else:
            raise InvalidArgument(
                f"invalid port spec {spec!r}: expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]"
            )
    c_lo, c_hi = _parse_range(container_text, "container port", spec, allow_zero=False)
    h_lo = h_hi = 0
    if host_text:
        h_lo, h_hi = _parse_range(host_text, "host port", spec, allow_zero=True)
    if h_lo:
        host_len, container_len = h_hi - h_lo + 1, c_hi - c_lo + 1
        if container_len != host_len and container_len != 1:
            raise InvalidArgument(
                f"invalid port spec {spec!r}: the host range has {host_len} ports "
                f"and the container range {container_len}; they must be equal"
            )
    return PortSpec(c_lo, c_hi, proto, h_lo, h_hi, host_ip)


def _parse_host_ip(text: str, version: int, spec: str) -> HostIp:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid port spec {spec!r}: invalid host address {text!r}") from None
    if ip.version != version:
        # An IPv4 address in brackets, or IPv4-mapped forms: one spelling per family.
        raise InvalidArgument(f"invalid port spec {spec!r}: invalid host address {text!r}")
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.scope_id):
        raise InvalidArgument(
            f"invalid port spec {spec!r}: host address {text!r} is not supported "
            "(give the IPv4 address itself, and no zone)"
        )
    if ip.is_multicast:
        raise InvalidArgument(f"invalid port spec {spec!r}: host address {text!r} is a multicast address")
    return ip


def _looks_ipv6(parts: list[str]) -> bool:
    """An IPv6 address without brackets: more colons than any IPv4 form has."""
    try:
        ipaddress.IPv6Address(":".join(parts[:-2]))
    except ValueError:
        return False
    return True


def parse_expose(spec: str) -> list[tuple[int, Protocol]]:
    """--expose PORT[-PORT][/PROTO]."""
    body, slash, proto_text = spec.partition("/")
    proto = _parse_proto(proto_text, spec) if slash else Protocol.TCP
    lo, hi = _parse_range(body, "port", spec, allow_zero=False)
    return [(p, proto) for p in range(lo, hi + 1)]


def publish_all(
    requests: Iterable[PortRequest], exposed: Iterable[tuple[int, Protocol]]
) -> tuple[PortRequest, ...]:
    """-P: every exposed port that no -p publishes gets a random host port, as Docker does."""
    out = list(requests)
    published = {(r.container_port, r.proto) for r in out}
    for port, proto in exposed:
        if (port, proto) not in published:
            published.add((port, proto))
            out.append(PortRequest(port, proto))
    return tuple(out)


def overlaps(a_ip: HostIp | None, b_ip: HostIp | None) -> bool:
    """Two bindings of one port clash when either is on every address, or both are of
    one family and either is on every address of it (0.0.0.0, ::), or both on the same."""
    if a_ip is None or b_ip is None:
        return True
    if a_ip.version != b_ip.version:
        return False
    return a_ip == b_ip or a_ip.is_unspecified or b_ip.is_unspecified


BindProbe = Callable[[HostIp | None, int, Protocol], BindStatus]
# Probes ports of one address and protocol in order, stopping at the first that is not
# free: (its index, why), or None when every one is free. A range's ports in one call.
BindProbeMany = Callable[[HostIp | None, Sequence[int], Protocol], tuple[int, BindStatus] | None]
Key = tuple[int, Protocol]


def _hint(ip: HostIp | None, port: int) -> str:
    if port == 53 and (ip is None or ip.is_unspecified):
        return (
            " (where user networks exist, dockyard's resolver listens on port 53 of each gateway:"
            " publish on one host address, as in -p ADDR:53:53/udp)"
        )
    return ""


def check_families(requests: Iterable[PortRequest], every: Families, network: str) -> None:
    """Refuse a host address of a family the endpoint lacks: nothing could answer there."""
    for r in requests:
        if r.host_ip is not None and r.host_ip.version not in every:
            raise InvalidArgument(
                f"cannot publish on {where(r.host_ip, r.host_port or '').rstrip(':')}: network {network} "
                f"has no IPv{r.host_ip.version}"
            )


def not_local(ip: HostIp | None) -> InvalidArgument:
    # Docker's words, from its proxy's bind: "cannot assign requested address".
    return InvalidArgument(
        f"cannot publish on {ip}: it is not an address of this host (cannot assign requested address)"
    )


def refused(ip: HostIp | None, port: int, proto: Protocol, status: BindStatus) -> DockyardError:
    """The error for a host port the host would not bind."""
    if status is BindStatus.NOT_LOCAL:
        return not_local(ip)
    return Conflict(
        f"cannot publish {where(ip, port)}/{proto}: address already in use by another process"
        + _hint(ip, port)
    )


class HostPortChooser:
    """Picks host ports for one container against what is already published.

    `holders(key)` gives the host addresses already publishing (port, proto)
    (None for every address): asked per port tried, so that a choice costs
    the same however many ports are published. `probe` asks the host whether
    a port is free of other processes; `probe_many` (by default `probe` per
    port) asks it for a run of ports at once. An address that is not the host's
    fails at its first probe: every port of it would fail alike, so no range
    is scanned.
    """

    def __init__(
        self,
        holders: Callable[[Key], Iterable[HostIp | None]],
        probe: BindProbe,
        local_range: tuple[int, int],
        rng: random.Random | None = None,
        probe_many: BindProbeMany | None = None,
    ) -> None:
        self._holders = holders
        self._chosen: dict[Key, list[HostIp | None]] = {}
        self._probe = probe
        self._probe_many = probe_many or self._probe_each
        self._range = local_range
        self._rng = rng or random.Random()

    def _probe_each(
        self, ip: HostIp | None, ports: Sequence[int], proto: Protocol
    ) -> tuple[int, BindStatus] | None:
        for i, port in enumerate(ports):
            status = self._probe(ip, port, proto)
            if status is not BindStatus.FREE:
                return i, status
        return None

    def _clashes(self, ip: HostIp | None, port: int, proto: Protocol) -> bool:
        key = (port, proto)
        held, mine = self._holders(key), self._chosen.get(key)
        if not held and not mine:
            return False
        return any(overlaps(ip, other) for other in (*held, *(mine or ())))

    def _take(self, ip: HostIp | None, port: int, proto: Protocol) -> None:
        self._chosen.setdefault((port, proto), []).append(ip)

    def _free(self, ip: HostIp | None, port: int, proto: Protocol) -> bool:
        if self._clashes(ip, port, proto):
            return False
        status = self._probe(ip, port, proto)
        if status is BindStatus.NOT_LOCAL:
            raise not_local(ip)
        return status is BindStatus.FREE

    def choose(self, requests: Iterable[PortRequest]) -> tuple[PortBinding, ...]:
        reqs = tuple(requests)
        out: list[PortBinding] = []
        i, count = 0, len(reqs)
        while i < count:
            req = reqs[i]
            ip = req.host_ip
            if req.host_port and not req.host_port_end:
                # A run of ports asked for by number on one address and protocol (a
                # range's thousand): checked in order, probed in one call.
                i = self._choose_fixed(reqs, i, out)
                continue
            if req.host_port:
                port = self._first_free(ip, req.proto, req.host_port, req.host_port_end)
            else:
                port = self._random_free(ip, req.proto)
            self._take(ip, port, req.proto)
            out.append(PortBinding(req.container_port, req.proto, port, ip))
            i += 1
        return tuple(out)

    def _choose_fixed(self, reqs: tuple[PortRequest, ...], start: int, out: list[PortBinding]) -> int:
        """The run of fixed host ports from reqs[start] (one address, one protocol), as the
        one-by-one walk would decide it: each port checked against what is published and
        what this container took before it, then the host probed in order; the first
        refusal, of either kind, is the one reported. Returns where the run ends."""
        first = reqs[start]
        ip, proto = first.host_ip, first.proto
        end = start
        run: list[int] = []
        clash = 0
        for req in reqs[start:]:
            if not req.host_port or req.host_port_end or req.proto is not proto or req.host_ip != ip:
                break
            port = req.host_port
            if self._clashes(ip, port, proto):
                clash = port
                break
            self._take(ip, port, proto)
            run.append(port)
            end += 1
        refused_at = self._probe_many(ip, run, proto) if run else None
        if refused_at is not None:
            index, status = refused_at
            raise refused(ip, run[index], proto, status)
        if clash:
            raise Conflict(f"Bind for {where(ip, clash)}/{proto} failed: port is already allocated")
        asked = zip(reqs[start:end], run, strict=True)
        out.extend(PortBinding(r.container_port, proto, port, ip) for r, port in asked)
        return end

    def _first_free(self, ip: HostIp | None, proto: Protocol, lo: int, hi: int) -> int:
        for port in range(lo, hi + 1):
            if self._free(ip, port, proto):
                return port
        raise Conflict(
            f"Bind for {where(ip, f'{lo}-{hi}')}/{proto} failed: every port of the range is already allocated"
        )

    def _random_free(self, ip: HostIp | None, proto: Protocol) -> int:
        lo, hi = self._range
        span = hi - lo + 1
        start = self._rng.randrange(span)
        # Walk the range from a random point: a full scan, but each port is checked once.
        for i in range(span):
            port = lo + (start + i) % span
            if self._free(ip, port, proto):
                return port
        raise Conflict(f"no free host port left in {lo}-{hi} for {proto}")
