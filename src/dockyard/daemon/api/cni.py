"""The API dockyard-cni speaks to: one route per CNI verb, under /dockyard/cni/.

Parses the plugin's JSON (already stripped of CNI's envelope by cni.py)
into the typed requests of engine/cni (attachments.py, checks.py), and
renders what ADD made as a CNI 1.1.0 result; cni.py converts it to the
version the runtime asked for and merges it with prevResult. Errors carry
their CNI code: {"message", "kind", "cni": {"code", "msg", "details"}}.
routes.py registers `CniRoutes`' handlers with the rest of the API.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.cni.attachments import Attached, Attachments, AttachRequest
from dockyard.engine.cni.checks import AttachmentChecks, Expected
from dockyard.engine.cni.networks import (
    CODE_CONFLICT,
    CODE_DECODE,
    CODE_INVALID_CONFIG,
    CODE_KERNEL,
    CODE_UNKNOWN_CONTAINER,
    DEFAULT_ROUTE,
    CniError,
    NetConf,
    Route,
)
from dockyard.errors import Conflict, DockyardError, InvalidArgument, KernelError, NotFound
from dockyard.model import PortRequest, Protocol
from dockyard.policy import ipam

log = logging.getLogger(__name__)

CODE_INTERNAL = 999
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

Json = dict[str, Any]


# -- errors -------------------------------------------------------------------


def cni_error(e: BaseException) -> Response:
    """An error with its CNI code; unexpected ones are logged as internal."""
    if isinstance(e, CniError):
        code, details = e.code, e.details
    elif isinstance(e, InvalidArgument):
        code, details = CODE_INVALID_CONFIG, ""
    elif isinstance(e, NotFound):
        code, details = CODE_UNKNOWN_CONTAINER, ""
    elif isinstance(e, Conflict):
        code, details = CODE_CONFLICT, ""
    elif isinstance(e, KernelError):
        code, details = CODE_KERNEL, ""
    elif isinstance(e, DockyardError):
        code, details = CODE_INTERNAL, ""
    else:
        log.error("internal error answering a CNI request", exc_info=e)
        code, details = CODE_INTERNAL, "see the daemon's log (daemon.log under dataDir)"
        e = DockyardError(f"internal error: {e!r}")
    assert isinstance(e, DockyardError)
    status = e.http_status if e.http_status >= 400 else 400
    return Response(
        status,
        {"message": e.message, "kind": e.kind, "cni": {"code": code, "msg": e.message, "details": details}},
    )


def _body(req: Request) -> Json:
    try:
        body = req.json()
    except (ValueError, RecursionError) as e:  # JSONDecodeError; nesting past the parser's depth
        raise CniError(CODE_DECODE, f"cannot decode the request: {e}") from None
    if not isinstance(body, dict):
        raise CniError(CODE_DECODE, "the request must be a JSON object")
    return body


def _handler(fn: Callable[[Json], Any]) -> Callable[[Request], Response]:
    def handle(req: Request) -> Response:
        try:
            out = fn(_body(req))
        except Exception as e:
            return cni_error(e)
        return Response(200, out) if out is not None else Response(204)

    return handle


# -- parsing ------------------------------------------------------------------


def _bool(d: Json, key: str) -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidArgument(f"{key} must be true or false, not {value!r}")
    return value


def _ip_range(subnet: ipaddress.IPv4Network | None, start: str, end: str) -> ipaddress.IPv4Network | None:
    """rangeStart..rangeEnd as one CIDR block (dockyard allocates from an ip range)."""
    if not start and not end:
        return None
    if subnet is None:
        raise InvalidArgument("rangeStart and rangeEnd need a subnet")
    lo = ipam.parse_address(start, "rangeStart") if start else subnet.network_address
    hi = ipam.parse_address(end, "rangeEnd") if end else subnet.broadcast_address
    for what, a in (("rangeStart", lo), ("rangeEnd", hi)):
        if a not in subnet:
            raise InvalidArgument(f"{what} {a} is not within subnet {subnet}")
    if lo > hi:
        raise InvalidArgument(f"rangeStart {lo} is after rangeEnd {hi}")
    if int(lo) <= int(subnet.network_address) + 1 and int(hi) >= int(subnet.broadcast_address) - 1:
        return None
    blocks = list(ipaddress.summarize_address_range(lo, hi))
    if len(blocks) != 1:
        raise InvalidArgument(
            f"rangeStart {lo} to rangeEnd {hi} is not one CIDR block: dockyard allocates from a range "
            f"such as {blocks[0]}; put rangeStart and rangeEnd on the bounds of one"
        )
    return blocks[0]


def net_conf(d: Json) -> NetConf:
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(CODE_INVALID_CONFIG, "the network configuration has no name")
    subnet = ipam.parse_subnet(str(d["subnet"]), "subnet") if d.get("subnet") else None
    ip_range = _ip_range(subnet, str(d.get("rangeStart") or ""), str(d.get("rangeEnd") or ""))
    gateway = ipam.parse_address(str(d["gateway"]), "gateway") if d.get("gateway") else None
    mtu = d.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
        raise InvalidArgument(f"mtu must be a number from 68 to 65535, not {mtu!r}")
    bridge = d.get("bridge")
    if bridge is not None and not isinstance(bridge, str):
        raise InvalidArgument(f"bridge must be an interface name, not {bridge!r}")
    is_gateway = _bool(d, "isGateway")
    default_gateway = _bool(d, "isDefaultGateway")
    # The default route: isDefaultGateway when given (it implies isGateway), else
    # isGateway, else Docker's way: yes (docs/cni.md says why).
    if default_gateway is not None:
        default_route = default_gateway
    else:
        default_route = True if is_gateway is None else is_gateway
    hairpin = _bool(d, "hairpinMode")
    return NetConf(
        name=name,
        bridge=bridge or None,
        subnet=subnet,
        ip_range=ip_range,
        gateway=gateway,
        ip_masq=_bool(d, "ipMasq"),
        mtu=mtu,
        default_route=default_route,
        hairpin=True if hairpin is None else hairpin,
        routes=_routes(d.get("routes")),
    )


def _routes(items: Any) -> tuple[Route, ...]:
    """ipam.routes: [{"dst": CIDR, "gw": address (optional)}], IPv4."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidArgument(f'ipam routes must be a list of {{"dst", "gw"}} objects, not {items!r}')
    out = []
    for r in items:
        if not isinstance(r, dict) or not isinstance(r.get("dst"), str):
            raise InvalidArgument(
                f'invalid ipam route {r!r}: give {{"dst": "10.9.0.0/16", "gw": "10.88.0.1"}}'
            )
        try:
            dst = ipaddress.ip_network(r["dst"], strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid dst {r['dst']!r} in an ipam route: give a CIDR") from None
        if dst.version != 4:
            raise InvalidArgument(f"ipam route to {dst} is IPv6: dockyard networks are IPv4")
        gw = r.get("gw")
        if gw is not None and not isinstance(gw, str):
            raise InvalidArgument(f"invalid gw {gw!r} in the ipam route to {dst}")
        via = ipam.parse_address(gw, f"gw of the ipam route to {dst}") if gw else None
        out.append((ipaddress.IPv4Network(dst), via))
    return tuple(out)


def _ports(items: Any) -> tuple[PortRequest, ...]:
    out = []
    for m in items or ():
        if not isinstance(m, dict):
            raise InvalidArgument(f"a portMappings entry must be an object, not {m!r}")
        host_ip_text = str(m.get("hostIP") or "")
        if ":" in host_ip_text:
            continue  # an IPv6 mapping: dockyard publishes IPv4 only
        try:
            host_port, container_port = int(m["hostPort"]), int(m["containerPort"])
            proto = Protocol(str(m.get("protocol") or "tcp").lower())
        except (KeyError, TypeError, ValueError):
            raise InvalidArgument(
                f"invalid portMappings entry {m}: give hostPort, containerPort, protocol"
            ) from None
        for what, port in (("hostPort", host_port), ("containerPort", container_port)):
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"invalid {what} {port} in portMappings: ports run from 1 to 65535")
        host_ip = None
        if host_ip_text not in ("", "0.0.0.0"):
            host_ip = ipam.parse_address(host_ip_text, "hostIP in portMappings")
        out.append(PortRequest(container_port, proto, host_port, host_ip))
    return tuple(out)


def _requested_ip(items: Any) -> ipaddress.IPv4Address | None:
    found = []
    for text in items or ():
        try:
            iface = ipaddress.ip_interface(str(text))
        except ValueError:
            raise InvalidArgument(f"invalid address {text!r} asked for (ips / IP)") from None
        if iface.version == 4:
            found.append(iface.ip)
    if len(found) > 1:
        raise InvalidArgument(f"{len(found)} IPv4 addresses asked for; dockyard gives one per interface")
    return found[0] if found else None


def _mac(text: Any) -> str | None:
    if not text:
        return None
    if not isinstance(text, str) or not MAC_RE.match(text):
        raise InvalidArgument(f"invalid MAC address {text!r}: six hex octets such as 02:42:0a:01:00:05")
    if int(text[:2], 16) & 1:
        raise InvalidArgument(f"MAC address {text} is a multicast address")
    return text.lower()


def attach_request(d: Json) -> AttachRequest:
    return AttachRequest(
        net=net_conf(d.get("network") or {}),
        container_id=str(d.get("containerId") or ""),
        ifname=str(d.get("ifname") or ""),
        netns=str(d.get("netns") or ""),
        ip=_requested_ip(d.get("ips")),
        mac=_mac(d.get("mac")),
        ports=_ports(d.get("portMappings")),
    )


def _prev_error(what: str) -> CniError:
    return CniError(CODE_INVALID_CONFIG, f"prevResult is malformed: {what}")


def _list_of_objects(prev: Json, key: str) -> list[Json]:
    items = prev.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise _prev_error(f"{key} must be a list of objects")
    return items


def expected(prev: Any, ifname: str) -> Expected:
    """What prevResult says the attachment has (CHECK); CniError 7 when it is malformed."""
    if not isinstance(prev, dict):
        raise CniError(CODE_INVALID_CONFIG, "CHECK needs the prevResult of the ADD")
    interfaces = _list_of_objects(prev, "interfaces")
    index = next(
        (i for i, x in enumerate(interfaces) if x.get("name") == ifname and x.get("sandbox")),
        None,
    )
    if index is None:
        raise CniError(CODE_INVALID_CONFIG, f"prevResult lists no interface {ifname} in a sandbox")
    mac = interfaces[index].get("mac")
    if mac is not None and (not isinstance(mac, str) or not MAC_RE.match(mac)):
        raise _prev_error(f"interface {ifname} has MAC {mac!r}")
    address = None
    for ip in _list_of_objects(prev, "ips"):
        at = ip.get("interface")
        if at is not None and (type(at) is not int or not 0 <= at < len(interfaces)):
            raise _prev_error(f"an ips entry names interface {at!r} of {len(interfaces)}")
        if at != index:
            continue
        text = ip.get("address")
        try:
            if not isinstance(text, str):
                raise ValueError(text)
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise _prev_error(f"address {text!r} of {ifname}") from None
        if iface.version == 4:
            address = ipaddress.IPv4Interface(str(iface))
    routes = []
    for r in _list_of_objects(prev, "routes"):
        dst_text, gw_text = r.get("dst"), r.get("gw")
        try:
            if not isinstance(dst_text, str) or not isinstance(gw_text, str | None):
                raise ValueError(r)
            dst = ipaddress.ip_network(dst_text, strict=False)
            gw = ipaddress.ip_address(gw_text) if gw_text is not None else None
        except ValueError:
            raise _prev_error(f"route {r}") from None
        if dst == DEFAULT_ROUTE and (gw is None or gw.version == 4):
            routes.append((DEFAULT_ROUTE, gw))
    return Expected(address=address, mac=mac, routes=tuple(routes))


# -- results ------------------------------------------------------------------


def _iface(name: str, mac: str, mtu: int, sandbox: str = "") -> Json:
    out: Json = {"name": name}
    if mac:
        out["mac"] = mac
    out["mtu"] = mtu
    if sandbox:
        out["sandbox"] = sandbox
    return out


def result(a: Attached) -> Json:
    """The CNI 1.1.0 result of an ADD, without cniVersion and dns (cni.py adds those)."""
    n, ep = a.network, a.endpoint
    ip: Json = {"address": str(ep.address)}
    if ep.gateway is not None:
        ip["gateway"] = str(ep.gateway)
    ip["interface"] = 2
    return {
        "interfaces": [
            _iface(n.bridge, a.bridge_mac, n.mtu),
            _iface(ep.host_ifname, a.host_mac, n.mtu),
            _iface(ep.ifname, ep.mac, n.mtu, a.netns),
        ],
        "ips": [ip],
        "routes": [{"dst": str(dst), "gw": str(gw)} for dst, gw in a.routes],
    }


# -- the routes ---------------------------------------------------------------------


class CniRoutes:
    """The handlers of /dockyard/cni/*, which routes.py registers."""

    def __init__(self, attachments: Attachments, checks: AttachmentChecks) -> None:
        self.attachments = attachments
        self.checks = checks
        self.add = _handler(self._add)
        self.delete = _handler(self._delete)
        self.check = _handler(self._check)
        self.gc = _handler(self._gc)
        self.status = _handler(self._status)
        self.listing = _handler(self._listing)

    def _add(self, d: Json) -> Json:
        return result(self.attachments.add(attach_request(d)))

    def _delete(self, d: Json) -> None:
        net = d.get("network") or {}
        self.attachments.delete(
            str(net.get("name") or ""), str(d.get("containerId") or ""), str(d.get("ifname") or "")
        )

    def _check(self, d: Json) -> None:
        req = attach_request(d)
        self.checks.check(req, expected(d.get("prevResult"), req.ifname))

    def _gc(self, d: Json) -> Json:
        valid = {(str(v[0]), str(v[1])) for v in d.get("valid") or ()}
        net = d.get("network") or {}
        return {"Removed": self.attachments.gc(str(net.get("name") or ""), valid)}

    def _status(self, d: Json) -> None:
        self.checks.status(net_conf(d.get("network") or {}))

    def _listing(self, d: Json) -> Json:
        return {
            "Attachments": [
                {
                    "Network": a.network,
                    "ContainerID": a.container_id,
                    "IfName": a.ifname,
                    "Netns": a.netns,
                    "State": a.state,
                    "Owner": a.owner,
                }
                for a in self.attachments.all()
            ]
        }
