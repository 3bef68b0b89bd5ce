"""explain's and trace's arguments, parsed once at the edge. Pure."""

from __future__ import annotations

import ipaddress

from dockyard.errors import InvalidArgument
from dockyard.model import Protocol
from dockyard.policy.ports import parse_expose
from dockyard.policy.rules.trace import Flow


def parse_port(text: str) -> tuple[int, Protocol]:
    """--port PORT[/PROTO]: one port (tcp when no protocol is given)."""
    ports = parse_expose(text)
    if len(ports) != 1:
        raise InvalidArgument(f"invalid --port {text!r}: give one port, for example 8080/tcp")
    return ports[0]


def parse_address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: give an IPv4 or IPv6 address") from None


def parse_flow(source: str, target: str) -> Flow:
    """--from ADDRESS --to ADDRESS:PORT/PROTO (an IPv6 address in brackets: [2001:db8::1]:80/tcp)."""
    address, colon, rest = target.rpartition(":")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    elif ":" in address:
        address = ""  # an IPv6 address without brackets: its last group would be taken for the port
    if not colon or not address:
        raise InvalidArgument(
            f"invalid --to {target!r}: give ADDRESS:PORT/PROTO, for example 198.51.100.1:8080/tcp "
            "or [2001:db8::1]:8080/tcp"
        )
    port, proto = parse_port(rest)
    src, dst = parse_address(source, "--from"), parse_address(address, "--to address")
    if src.version != dst.version:
        raise InvalidArgument(
            f"invalid --from {source!r} and --to {target!r}: one is IPv{src.version}, the other "
            f"IPv{dst.version}; a flow has one family"
        )
    return Flow(src, dst, port, proto)
