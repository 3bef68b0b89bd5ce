"""Docker's EndpointSettings object, one parser for both places a client sends it.

Container create's NetworkingConfig.EndpointsConfig[<network>] and network
connect's EndpointConfig are the same Go type (moby api/types/network,
EndpointSettings, API 1.41-1.44). Each field is honoured, or refused by
name with its JSON path when it holds a value:

- honoured: IPAMConfig.IPv4Address and IPv6Address (--ip, --ip6), Aliases
  (--alias; names as a container's), MacAddress (--mac-address);
- refused: Links (--link), DriverOpts (--driver-opt), IPAMConfig.LinkLocalIPs
  (--link-local-ip), GwPriority (--gw-priority, API 1.48);
- output: what inspect reports (NetworkID, EndpointID, Gateway, IPAddress,
  ...). docker-py and Compose echo some of them back at their zero value,
  which is accepted; a value there asks for something the daemon decides,
  and is refused.

This module also reads network connect's and disconnect's bodies (Container,
EndpointConfig; Container, Force): anything else there is refused by name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dockyard.daemon.api.create_fields import mac_address, refuse
from dockyard.daemon.api.json_types import flag, json_object, strings, text
from dockyard.errors import InvalidArgument
from dockyard.model import EndpointRequest, NetworkMode, check_name, check_network_name

HONOURED = ("IPAMConfig", "Aliases", "MacAddress")
_SET_BY_DAEMON = "an output field: the daemon sets it"
REFUSED = {
    "Links": "--link (use a user network: names resolve there)",
    "DriverOpts": "endpoint driver options (--driver-opt)",
    "GwPriority": "--gw-priority",
    **{
        key: _SET_BY_DAEMON
        for key in (
            "NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway",
            "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DNSNames",
        )
    },
}  # fmt: skip
IPAM_HONOURED = ("IPv4Address", "IPv6Address")
IPAM_REFUSED = {"LinkLocalIPs": "--link-local-ip"}


def endpoint_request(raw: Any, network: str, where: str) -> EndpointRequest:
    """One EndpointSettings object for network; where is its JSON path, for the messages."""
    ep = json_object(raw, where)
    refuse(f"{where}.", ep, HONOURED, REFUSED)
    ipam = json_object(ep.get("IPAMConfig"), f"{where}.IPAMConfig")
    refuse(f"{where}.IPAMConfig.", ipam, IPAM_HONOURED, IPAM_REFUSED)
    ip: ipaddress.IPv4Address | None = None
    ip6: ipaddress.IPv6Address | None = None
    if v4 := text(ipam.get("IPv4Address"), f"{where}.IPAMConfig.IPv4Address"):
        try:
            ip = ipaddress.IPv4Address(v4)
        except ValueError:
            raise InvalidArgument(
                f"invalid --ip {v4!r} for network {network!r}: expected an IPv4 address"
            ) from None
    if v6 := text(ipam.get("IPv6Address"), f"{where}.IPAMConfig.IPv6Address"):
        try:
            if "%" in v6:  # a zone: a link-local address of one link, not an endpoint's
                raise ValueError(v6)
            ip6 = ipaddress.IPv6Address(v6)
        except ValueError:
            raise InvalidArgument(
                f"invalid --ip6 {v6!r} for network {network!r}: expected an IPv6 address"
            ) from None
    aliases = tuple(strings(ep.get("Aliases"), f"{where}.Aliases"))
    for alias in aliases:
        check_name(alias, "network alias")
    mac = mac_address(ep.get("MacAddress"), f"{where}.MacAddress")
    return EndpointRequest(network, ip, aliases, mac, ip6)


def endpoint_requests(
    raw: Any, mode: NetworkMode
) -> tuple[EndpointRequest | None, tuple[EndpointRequest, ...]]:
    """Container create's NetworkingConfig: the mode's network's settings, and the further networks."""
    networking = json_object(raw, "NetworkingConfig")
    refuse("NetworkingConfig.", networking, ("EndpointsConfig",), {})
    first: EndpointRequest | None = None
    rest: list[EndpointRequest] = []
    mode_name = str(mode)
    configs = json_object(networking.get("EndpointsConfig"), "NetworkingConfig.EndpointsConfig")
    for name, ep in configs.items():
        req = endpoint_request(ep, name, f"NetworkingConfig.EndpointsConfig[{name!r}]")
        # The CLI names the mode's network "default" when --network was not given.
        if name == mode_name or (name == "default" and mode_name == "bridge"):
            first = req
        else:
            if mode.network_name is None:
                raise InvalidArgument(
                    f"container cannot be connected to network {name}: it uses the {mode_name} network mode"
                )
            check_network_name(name)
            rest.append(req)
    return first, tuple(rest)


def connect_body(raw: Any, network: str) -> tuple[str, EndpointRequest]:
    """POST /networks/{id}/connect: the container's reference, and what it asks of the endpoint."""
    body = json_object(raw, "body")
    refuse("", body, ("Container", "EndpointConfig"), {})
    container = text(body.get("Container"), "Container")
    if not container:
        raise InvalidArgument("Container is required: the container to connect")
    return container, endpoint_request(body.get("EndpointConfig"), network, "EndpointConfig")


def disconnect_body(raw: Any) -> tuple[str, bool]:
    """POST /networks/{id}/disconnect: the container's reference, and Force (-f)."""
    body = json_object(raw, "body")
    refuse("", body, ("Container", "Force"), {})
    container = text(body.get("Container"), "Container")
    if not container:
        raise InvalidArgument("Container is required: the container to disconnect")
    return container, flag(body.get("Force"), "Force")
