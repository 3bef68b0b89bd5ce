"""The API dockyard-cni speaks to: one route per CNI verb, under /dockyard/cni/.

Parses the plugin's JSON (already stripped of CNI's envelope by cni.py)
into attachments.py's typed requests, and renders what ADD made as a CNI
1.1.0 result; cni.py converts it to the version the runtime asked for.
Errors carry their CNI code: {"message", "kind", "cni": {"code", "msg", "details"}}.

`register` also teaches the rest of the API about attachments (see its
docstring); that part is a stop-gap until routes.py and reconcile.py know
about them (the CNI work's report says what to change there).
"""

from __future__ import annotations

import ipaddress
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from dockyard import ipam
from dockyard.api.http import Request, Response
from dockyard.attachments import (
    CODE_CONFLICT,
    CODE_INVALID_CONFIG,
    CODE_KERNEL,
    CODE_UNKNOWN_CONTAINER,
    Attached,
    Attachments,
    AttachRequest,
    CniError,
    Expected,
    NetConf,
)
from dockyard.errors import Conflict, DockyardError, InvalidArgument, KernelError, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    Endpoint,
    Network,
    PortRequest,
    Protocol,
)

CODE_INTERNAL = 999
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
DEFAULT_ROUTE = ipaddress.IPv4Network("0.0.0.0/0")

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
        traceback.print_exc(file=sys.stderr)
        code, details = CODE_INTERNAL, "see the daemon's log (daemon.log under dataDir)"
        e = DockyardError(f"internal error: {e!r}")
    assert isinstance(e, DockyardError)
    status = e.http_status if e.http_status >= 400 else 400
    return Response(
        status,
        {"message": e.message, "kind": e.kind, "cni": {"code": code, "msg": e.message, "details": details}},
    )


def _handler(fn: Callable[[Json], Any]) -> Callable[[Request], Response]:
    def handle(req: Request) -> Response:
        try:
            out = fn(req.json())
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
    return NetConf(
        name=name,
        bridge=bridge or None,
        subnet=subnet,
        ip_range=ip_range,
        gateway=gateway,
        is_gateway=True if is_gateway is None else is_gateway,
        ip_masq=_bool(d, "ipMasq"),
        mtu=mtu,
    )


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


def expected(prev: Any, ifname: str) -> Expected:
    """What prevResult says the attachment has (CHECK)."""
    if not isinstance(prev, dict):
        raise CniError(CODE_INVALID_CONFIG, "CHECK needs the prevResult of the ADD")
    interfaces = prev.get("interfaces") or []
    index = next(
        (
            i
            for i, x in enumerate(interfaces)
            if isinstance(x, dict) and x.get("name") == ifname and x.get("sandbox")
        ),
        None,
    )
    if index is None:
        raise CniError(CODE_INVALID_CONFIG, f"prevResult lists no interface {ifname} in a sandbox")
    address = None
    for ip in prev.get("ips") or []:
        if isinstance(ip, dict) and ip.get("interface") == index:
            iface = ipaddress.ip_interface(str(ip.get("address")))
            if iface.version == 4:
                address = ipaddress.IPv4Interface(str(iface))
    routes = []
    for r in prev.get("routes") or []:
        dst = ipaddress.ip_network(str(r.get("dst")), strict=False)
        if dst == DEFAULT_ROUTE:
            gw = r.get("gw")
            routes.append((DEFAULT_ROUTE, ipaddress.IPv4Address(gw) if gw else None))
    return Expected(address=address, mac=interfaces[index].get("mac"), routes=tuple(routes))


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
        "routes": [{"dst": "0.0.0.0/0", "gw": str(ep.gateway)}] if a.default_route else [],
    }


# -- registration ---------------------------------------------------------------


def register(api: Any) -> None:
    """Add the CNI routes, and make the rest of the API aware of attachments.

    Besides its own routes this re-asserts the attachments' published ports
    now (the daemon's start-up gc removed them: reconcile.py only keeps those
    of containers) and after every POST /system/gc; and it lists attachments
    among a network's users (network inspect, and the names in "network has
    active endpoints").
    """
    attachments = Attachments(api.e)

    def add(d: Json) -> Json:
        return result(attachments.add(attach_request(d)))

    def delete(d: Json) -> None:
        net = d.get("network") or {}
        attachments.delete(
            str(net.get("name") or ""), str(d.get("containerId") or ""), str(d.get("ifname") or "")
        )

    def check(d: Json) -> None:
        req = attach_request(d)
        attachments.check(req, expected(d.get("prevResult"), req.ifname))

    def gc(d: Json) -> Json:
        valid = {(str(v[0]), str(v[1])) for v in d.get("valid") or ()}
        net = d.get("network") or {}
        return {"Removed": attachments.gc(str(net.get("name") or ""), valid)}

    def status(d: Json) -> None:
        attachments.status(net_conf(d.get("network") or {}))

    def listing(d: Json) -> Json:
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
                for a in attachments.all()
            ]
        }

    r = api._route
    r("POST", r"/dockyard/cni/add", _handler(add))
    r("POST", r"/dockyard/cni/del", _handler(delete))
    r("POST", r"/dockyard/cni/check", _handler(check))
    r("POST", r"/dockyard/cni/gc", _handler(gc))
    r("POST", r"/dockyard/cni/status", _handler(status))
    r("GET", r"/dockyard/cni/attachments", _handler(listing))

    for line in attachments.restore():
        print(f"dockyardd: restore: {line}", file=sys.stderr, flush=True)
    _restore_after_gc(api, attachments)
    _list_as_members(api, attachments)


def _restore_after_gc(api: Any, attachments: Attachments) -> None:
    for i, (method, pattern, fn) in enumerate(api.routes):
        if method == "POST" and pattern.pattern.endswith("/system/gc$"):

            def gc_then_restore(req: Request, _fn: Callable[..., Response] = fn) -> Response:
                resp = _fn(req)
                attachments.restore()
                return resp

            api.routes[i] = (method, pattern, gc_then_restore)


def _list_as_members(api: Any, attachments: Attachments) -> None:
    members = api._members
    attached = api.e.networks.attached

    def with_attachments(n: Network) -> list[tuple[Container, Endpoint]]:
        out = list(members(n))
        labels = attachments.labels()
        for ep in api.e.store.endpoints(network_id=n.id):
            label = labels.get(ep.container_id)
            if label is not None:
                fake = Container(
                    id=ep.container_id,
                    name=label,
                    config=ContainerConfig(cmd=()),
                    state=ContainerState.RUNNING,
                )
                out.append((fake, ep))
        return out

    def names(n: Network) -> list[str]:
        # The engine names an endpoint without a container by its owner's first 12 characters.
        labels = {owner[:12]: label for owner, label in attachments.labels().items()}
        return [labels.get(name, name) for name in attached(n)]

    api._members = with_attachments
    api.e.networks.attached = names
