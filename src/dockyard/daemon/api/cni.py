"""The API dockyard-cni speaks to: one route per CNI verb, under /dockyard/cni/.

Parses the plugin's JSON (already stripped of CNI's envelope by cni.py)
into the typed requests of engine/cni (attachments.py, checks.py), and
renders what ADD made as a CNI 1.1.0 result; cni.py converts it to the
version the runtime asked for and merges it with prevResult. Errors carry
their CNI code: {"message", "kind", "cni": {"code", "msg", "details"}}; a
config error begins with the JSON path of the bad value in the runtime's
config (the plugin says where the keys it folded came from, `sources`).

ADD and CHECK come with one descriptor, the network namespace the plugin
opened (SCM_RIGHTS). It is handed to the engine as is, checked there by
identity; the path in the body is only a name. DEL may come with one or
none (a namespace already gone) and needs none.
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
    DEFAULT_ROUTE,
    DEFAULT_ROUTE6,
    CniError,
    NetConf,
    Route,
)
from dockyard.errors import Conflict, DockyardError, InvalidArgument, KernelError, NotFound
from dockyard.model import PortRequest, Protocol, SubnetConfig
from dockyard.policy import ipam, ipam6
from dockyard.wire.cni import (
    CODE_CONFLICT,
    CODE_DECODE,
    CODE_INTERNAL,
    CODE_INVALID_CONFIG,
    CODE_INVALID_ENV,
    CODE_KERNEL,
    CODE_UNKNOWN_CONTAINER,
    MORE_RANGES,
    SOURCES,
)
from dockyard.wire.cni import path as json_path

log = logging.getLogger(__name__)

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


def _handler(fn: Callable[[Json, list[int]], Any]) -> Callable[[Request], Response]:
    """A route: the body parsed, the descriptors passed with it (closed by the server after)."""

    def handle(req: Request) -> Response:
        try:
            out = fn(_body(req), req.fds)
        except Exception as e:
            return cni_error(e)
        return Response(200, out) if out is not None else Response(204)

    return handle


def _netns_fd(fds: list[int]) -> int | None:
    """The namespace's descriptor: the one passed, None when none was."""
    if len(fds) > 1:
        raise CniError(
            CODE_INVALID_ENV, f"{len(fds)} descriptors came with the request; one is the network namespace"
        )
    return fds[0] if fds else None


class _Where:
    """The JSON path of each key in the runtime's config, for error messages."""

    def __init__(self, d: Json, prefix: str = "") -> None:
        sources = d.get(SOURCES)
        self.sources = sources if isinstance(sources, dict) else {}
        self.prefix = prefix

    def __call__(self, key: str, *more: str | int) -> str:
        base = self.sources.get(key)
        if not isinstance(base, str):
            base = json_path(self.prefix, key) if self.prefix else key
        return json_path(base, *more)

    def at(self, key: str, index: int) -> str:
        """The path of the index-th value of a key gathered from several places (ips)."""
        listed = self.sources.get(key)
        if isinstance(listed, list) and index < len(listed) and isinstance(listed[index], str):
            return listed[index]
        return json_path(key, index)


def _at(where: str, parse: Callable[..., Any], *args: Any) -> Any:
    """parse(*args), its InvalidArgument prefixed with the JSON path of the value."""
    try:
        return parse(*args)
    except InvalidArgument as e:
        raise CniError(CODE_INVALID_CONFIG, f"{where}: {e}") from None


# -- parsing ------------------------------------------------------------------


def _bool(d: Json, key: str, where: _Where) -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise CniError(CODE_INVALID_CONFIG, f"{where(key)}: must be true or false, not {value!r}")
    return value


def _ip_range(subnet: Any, start: str, end: str, where: Callable[[str], str], suffix: str = "") -> Any:
    """rangeStart..rangeEnd as one CIDR block (dockyard allocates from an ip range); of IPv4's
    range set, or IPv6's (suffix "6": the keys dockyard-cni folded that set's values into)."""
    start_key, end_key = "rangeStart" + suffix, "rangeEnd" + suffix
    if not start and not end:
        return None
    at = where(start_key if start else end_key)
    if subnet is None:
        raise CniError(CODE_INVALID_CONFIG, f"{at}: rangeStart and rangeEnd need a subnet")
    parse = ipam6.parse_address6 if suffix else ipam.parse_address
    lo = _at(where(start_key), parse, start, "rangeStart") if start else subnet.network_address
    hi = _at(where(end_key), parse, end, "rangeEnd") if end else subnet.broadcast_address
    for what, a in ((start_key, lo), (end_key, hi)):
        if a not in subnet:
            raise CniError(CODE_INVALID_CONFIG, f"{where(what)}: {a} is not within subnet {subnet}")
    if lo > hi:
        raise CniError(CODE_INVALID_CONFIG, f"{where(start_key)}: {lo} is after rangeEnd {hi}")
    if int(lo) <= int(subnet.network_address) + 1 and int(hi) >= int(subnet.broadcast_address) - 1:
        return None
    blocks = list(ipaddress.summarize_address_range(lo, hi))
    if len(blocks) != 1:
        raise CniError(
            CODE_INVALID_CONFIG,
            f"{where(start_key)}: rangeStart {lo} to rangeEnd {hi} is not one CIDR block: dockyard "
            f"allocates from a range such as {blocks[0]}; put rangeStart and rangeEnd on the bounds of one",
        )
    return blocks[0]


def net_conf(d: Json) -> NetConf:
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(CODE_INVALID_CONFIG, "name: the network configuration has no name")
    where = _Where(d)
    subnet = _at(where("subnet"), ipam.parse_subnet, str(d["subnet"]), "subnet") if d.get("subnet") else None
    ip_range = _ip_range(subnet, str(d.get("rangeStart") or ""), str(d.get("rangeEnd") or ""), where)
    gateway = (
        _at(where("gateway"), ipam.parse_address, str(d["gateway"]), "gateway") if d.get("gateway") else None
    )
    # The IPv6 range set of a dual-stack config (dockyard-cni folds it into these keys).
    subnet6 = (
        _at(where("subnet6"), ipam6.parse_subnet6, str(d["subnet6"]), "subnet") if d.get("subnet6") else None
    )
    ip_range6 = _ip_range(
        subnet6, str(d.get("rangeStart6") or ""), str(d.get("rangeEnd6") or ""), where, suffix="6"
    )
    gateway6 = (
        _at(where("gateway6"), ipam6.parse_address6, str(d["gateway6"]), "gateway")
        if d.get("gateway6")
        else None
    )
    more = _more_ranges(d.get(MORE_RANGES), where)
    mtu = d.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
        raise CniError(CODE_INVALID_CONFIG, f"{where('mtu')}: must be a number from 68 to 65535, not {mtu!r}")
    bridge = d.get("bridge")
    if bridge is not None and not isinstance(bridge, str):
        raise CniError(CODE_INVALID_CONFIG, f"{where('bridge')}: must be an interface name, not {bridge!r}")
    is_gateway = _bool(d, "isGateway", where)
    default_gateway = _bool(d, "isDefaultGateway", where)
    # The default route: isDefaultGateway when given (it implies isGateway), else
    # isGateway, else Docker's way: yes (docs/cni.md says why).
    if default_gateway is not None:
        default_route = default_gateway
    else:
        default_route = True if is_gateway is None else is_gateway
    hairpin = _bool(d, "hairpinMode", where)
    return NetConf(
        name=name,
        bridge=bridge or None,
        subnet=subnet,
        ip_range=ip_range,
        gateway=gateway,
        ip_masq=_bool(d, "ipMasq", where),
        mtu=mtu,
        default_route=default_route,
        hairpin=True if hairpin is None else hairpin,
        routes=_routes(d.get("routes"), where),
        subnet6=subnet6,
        ip_range6=ip_range6,
        gateway6=gateway6,
        more_subnets=more,
    )


def _more_ranges(items: Any, where: _Where) -> tuple[SubnetConfig, ...]:
    """A range set's later ranges (dockyard-cni's MORE_RANGES), each a subnet of its own with its
    range and gateway (None: the subnet's first address, as the network's first range)."""
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise CniError(CODE_INVALID_CONFIG, f"{MORE_RANGES}: must be a list of ranges, not {items!r}")
    out = []
    for i, r in enumerate(items):
        base = where.at(MORE_RANGES, i)

        def at(key: str, base: str = base) -> str:
            return json_path(base, key)

        subnet_text, gateway_text = r.get("subnet"), r.get("gateway")
        if not isinstance(subnet_text, str) or not subnet_text:
            raise CniError(CODE_INVALID_CONFIG, f"{at('subnet')}: a range needs a subnet")
        v6 = ipam6.is_ipv6(subnet_text)
        parse_subnet = ipam6.parse_subnet6 if v6 else ipam.parse_subnet
        subnet = _at(at("subnet"), parse_subnet, subnet_text, "subnet")
        suffix = "6" if v6 else ""
        start, end = str(r.get("rangeStart") or ""), str(r.get("rangeEnd") or "")
        ip_range = _ip_range(subnet, start, end, lambda key: at(key.removesuffix("6")), suffix)
        parse_address = ipam6.parse_address6 if v6 else ipam.parse_address
        gateway = _at(at("gateway"), parse_address, str(gateway_text), "gateway") if gateway_text else None
        out.append(SubnetConfig(subnet, gateway, ip_range))
    return tuple(out)


def _routes(items: Any, where: _Where) -> tuple[Route, ...]:
    """ipam.routes: [{"dst": CIDR, "gw": address (optional)}], of either family."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise CniError(
            CODE_INVALID_CONFIG,
            f'{where("routes")}: must be a list of {{"dst", "gw"}} objects, not {items!r}',
        )
    out = []
    for i, r in enumerate(items):
        if not isinstance(r, dict) or not isinstance(r.get("dst"), str):
            raise CniError(
                CODE_INVALID_CONFIG,
                f"{where('routes', i)}: invalid route {r!r}: "
                'give {"dst": "10.9.0.0/16", "gw": "10.88.0.1"}',
            )
        try:
            dst = ipaddress.ip_network(r["dst"], strict=False)
        except ValueError:
            raise CniError(
                CODE_INVALID_CONFIG, f"{where('routes', i, 'dst')}: invalid dst {r['dst']!r}: give a CIDR"
            ) from None
        gw = r.get("gw")
        if gw is not None and not isinstance(gw, str):
            raise CniError(
                CODE_INVALID_CONFIG, f"{where('routes', i, 'gw')}: invalid gw {gw!r} of the route to {dst}"
            )
        parse = ipam6.parse_address6 if dst.version == 6 else ipam.parse_address
        via = _at(where("routes", i, "gw"), parse, gw, f"gw of the route to {dst}") if gw else None
        out.append((dst, via))
    return tuple(out)


def _keys_as_go_reads_them(m: Json, names: tuple[str, ...]) -> Json:
    """`m` with each of `names` also found in any case, as Go's encoding/json (every Go plugin)
    matches them: containerd's go-cni sends portMappings as {"HostPort": 8080, ...} (its
    PortMapping struct has no json tags). The exact key wins."""
    folded = {k.lower(): k for k in m if isinstance(k, str)}
    return {**{n: m[folded[n.lower()]] for n in names if n not in m and n.lower() in folded}, **m}


def _ports(items: Any, where: _Where) -> tuple[PortRequest, ...]:
    out = []
    for i, m in enumerate(items or ()):
        at = where("portMappings", i)
        if not isinstance(m, dict):
            raise CniError(CODE_INVALID_CONFIG, f"{at}: a port mapping must be an object, not {m!r}")
        k = _keys_as_go_reads_them(m, ("hostPort", "containerPort", "protocol", "hostIP"))
        host_ip_text = str(k.get("hostIP") or "")
        try:
            host_port, container_port = int(k["hostPort"]), int(k["containerPort"])
            proto = Protocol(str(k.get("protocol") or "tcp").lower())
        except (KeyError, TypeError, ValueError):
            raise CniError(
                CODE_INVALID_CONFIG, f"{at}: invalid port mapping {m}: give hostPort, containerPort, protocol"
            ) from None
        for what, port in (("hostPort", host_port), ("containerPort", container_port)):
            if not 1 <= port <= 65535:
                raise CniError(
                    CODE_INVALID_CONFIG,
                    f"{json_path(at, what)}: invalid {what} {port}: ports run from 1 to 65535",
                )
        # As portmap and -p: "" is every address of each family the container has,
        # 0.0.0.0 every IPv4 one, :: every IPv6 one, an address its own family.
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        if host_ip_text:
            parse = ipam6.parse_address6 if ":" in host_ip_text else ipam.parse_address
            host_ip = _at(json_path(at, "hostIP"), parse, host_ip_text, "hostIP")
        out.append(PortRequest(container_port, proto, host_port, host_ip))
    return tuple(out)


def _requested_ips(
    items: Any, where: _Where
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """The `ips` capability: at most one address per family."""
    found: dict[int, list[Any]] = {4: [], 6: []}
    for i, text in enumerate(items or ()):
        try:
            iface = ipaddress.ip_interface(str(text))
        except ValueError:
            raise CniError(
                CODE_INVALID_CONFIG, f"{where.at('ips', i)}: invalid address {text!r} asked for"
            ) from None
        found[iface.version].append(iface.ip)
    for version, addresses in found.items():
        if len(addresses) > 1:
            raise CniError(
                CODE_INVALID_CONFIG,
                f"ips: {len(addresses)} IPv{version} addresses asked for; dockyard gives one per family",
            )
    return (found[4] or [None])[0], (found[6] or [None])[0]


def _mac(text: Any, where: _Where) -> str | None:
    if not text:
        return None
    if not isinstance(text, str) or not MAC_RE.match(text):
        raise CniError(
            CODE_INVALID_CONFIG,
            f"{where('mac')}: invalid MAC address {text!r}: six hex octets such as 02:42:0a:01:00:05",
        )
    if int(text[:2], 16) & 1:
        raise CniError(CODE_INVALID_CONFIG, f"{where('mac')}: MAC address {text} is a multicast address")
    return text.lower()


def attach_request(d: Json, netns_fd: int | None = None) -> AttachRequest:
    where = _Where(d)
    ip, ip6 = _requested_ips(d.get("ips"), where)
    return AttachRequest(
        net=net_conf(d.get("network") or {}),
        container_id=str(d.get("containerId") or ""),
        ifname=str(d.get("ifname") or ""),
        netns=str(d.get("netns") or ""),
        ip=ip,
        ip6=ip6,
        mac=_mac(d.get("mac"), where),
        ports=_ports(d.get("portMappings"), where),
        netns_fd=netns_fd,
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
    address6 = None
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
        else:
            address6 = ipaddress.IPv6Interface(str(iface))
    routes: list[Route] = []
    for r in _list_of_objects(prev, "routes"):
        dst_text, gw_text = r.get("dst"), r.get("gw")
        try:
            if not isinstance(dst_text, str) or not isinstance(gw_text, str | None):
                raise ValueError(r)
            dst = ipaddress.ip_network(dst_text, strict=False)
            gw = ipaddress.ip_address(gw_text) if gw_text is not None else None
        except ValueError:
            raise _prev_error(f"route {r}") from None
        for default in (DEFAULT_ROUTE, DEFAULT_ROUTE6):
            if dst == default and (gw is None or gw.version == default.version):
                routes.append((default, gw))
    return Expected(address=address, mac=mac, routes=tuple(routes), address6=address6)


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
    ips: list[Json] = []
    if ep.address is not None:  # none on an IPv6-only network: its IPv6 address alone
        ip: Json = {"address": str(ep.address)}
        if ep.gateway is not None:
            ip["gateway"] = str(ep.gateway)
        ip["interface"] = 2
        ips.append(ip)
    if ep.address6 is not None:  # dual stack: the IPv6 address after the IPv4 one
        ip6: Json = {"address": str(ep.address6)}
        if ep.gateway6 is not None:
            ip6["gateway"] = str(ep.gateway6)
        ip6["interface"] = 2
        ips.append(ip6)
    return {
        "interfaces": [
            _iface(n.bridge, a.bridge_mac, n.mtu),
            _iface(ep.host_ifname, a.host_mac, n.mtu),
            _iface(ep.ifname, ep.mac, n.mtu, a.netns),
        ],
        "ips": ips,
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

    def _add(self, d: Json, fds: list[int]) -> Json:
        return result(self.attachments.add(attach_request(d, _netns_fd(fds))))

    def _delete(self, d: Json, fds: list[int]) -> None:
        # The namespace's descriptor, when it still exists, is not needed: DEL frees by the
        # records, whatever the namespace became (gone, or a reused pid's /proc/<pid>/ns/net
        # naming another one, the host's even), and must not fail for it.
        net = d.get("network") or {}
        self.attachments.delete(
            str(net.get("name") or ""), str(d.get("containerId") or ""), str(d.get("ifname") or "")
        )

    def _check(self, d: Json, fds: list[int]) -> None:
        req = attach_request(d, _netns_fd(fds))
        self.checks.check(req, expected(d.get("prevResult"), req.ifname))

    def _gc(self, d: Json, fds: list[int]) -> Json:
        valid = {(str(v[0]), str(v[1])) for v in d.get("valid") or ()}
        net = d.get("network") or {}
        return {"Removed": self.attachments.gc(str(net.get("name") or ""), valid)}

    def _status(self, d: Json, fds: list[int]) -> None:
        self.checks.status(net_conf(d.get("network") or {}))

    def _listing(self, d: Json, fds: list[int]) -> Json:
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
