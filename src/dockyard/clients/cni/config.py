"""dockyard-cni's checks of what needs no daemon: the environment, the configuration's types.

Pure and light (every ADD imports it): CNI_CONTAINERID, CNI_IFNAME and
CNI_ARGS, the network's keys (ipam's and ranges' folded into the plugin's
own, with `sources` telling the daemon the JSON path each came from), the
per-container part (addresses, MAC, ports) and prevResult's shape. Each
refusal is a PluginError whose message begins with the JSON path of the
bad value (dockyard.wire.cni.path). Values (subnets, addresses, ports)
are the daemon's to check (api/cni.py), with the same paths.
"""

from __future__ import annotations

import json

from dockyard.wire import cni as codes
from dockyard.wire.cni import MORE_RANGES, SOURCES
from dockyard.wire.cni import path as json_path

TYPE_CHECKING = False  # typing costs every ADD its import
if TYPE_CHECKING:
    from typing import Any

IPAM_TYPES = ("", "host-local", "dockyard")
# Keys of the network taken from the plugin's config, else from its ipam section (host-local's).
FOLDED = ("subnet", "gateway", "rangeStart", "rangeEnd")


class PluginError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def loads(text: str) -> Any:
    """One JSON document; ValueError when it is not one (nested too deeply too)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(value: object) -> str:
    return json.dumps(value)


# -- checks that need no daemon ------------------------------------------------


def check_container_id(cid: str) -> None:
    ok = (
        cid[:1].isascii()
        and cid[:1].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in cid)
    )
    if not ok:
        raise PluginError(
            codes.CODE_INVALID_ENV,
            f"CNI_CONTAINERID {cid!r} is invalid: a letter or digit, then letters, digits, _ . or -",
        )


def check_ifname(name: str) -> None:
    if not name or name in (".", "..") or len(name) > 15 or any(c in "/:" or c.isspace() for c in name):
        raise PluginError(
            codes.CODE_INVALID_ENV,
            f"CNI_IFNAME {name!r} is invalid: up to 15 characters, not . or .., without / : or spaces",
        )


def cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: "K=V;K=V" (IP and MAC are used, the rest is ignored)."""
    out = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PluginError(
                codes.CODE_INVALID_ENV,
                f"CNI_ARGS {text!r} is invalid: expected KEY=VALUE pairs separated by ;",
            )
        out[key] = value
    return out


def _typed(conf: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, at: tuple = ()) -> Any:
    """conf[key] when it is of kind (None when absent); else a config error naming its JSON path."""
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PluginError(
            codes.CODE_INVALID_CONFIG, f"{json_path(*at, key)}: must be {what}, not {dumps(value)}"
        )
    return value


def _ranges(ranges: Any, at: tuple) -> dict[int, list[tuple[dict[str, Any], tuple]]]:
    """The ranges of each family in ipam's (or the config's) ranges, each with its JSON path:
    {4: [...], 6: [...]}. A dual-stack config has two range sets, one per family (the CNI
    host-local way); a set may hold several ranges, of different subnets, that an address
    comes from in turn. A dockyard endpoint has one address of each family: one set each."""
    where = json_path(*at, "ranges")
    if not isinstance(ranges, list) or not ranges:
        raise PluginError(
            codes.CODE_INVALID_CONFIG,
            f'{where}: must be a list of range sets: [[{{"subnet": "10.1.0.0/24"}}]]',
        )
    found: dict[int, list[tuple[dict[str, Any], tuple]]] = {4: [], 6: []}
    for i, range_set in enumerate(ranges):
        if not isinstance(range_set, list) or not range_set:
            raise PluginError(
                codes.CODE_INVALID_CONFIG,
                f"{json_path(*at, 'ranges', i)}: must be a list of ranges, not {dumps(range_set)}",
            )
        set_version = 0  # the family of the set's first range: every other one must share it
        for j, r in enumerate(range_set):
            here = (*at, "ranges", i, j)
            if not isinstance(r, dict):
                raise PluginError(
                    codes.CODE_INVALID_CONFIG, f"{json_path(*here)}: must be an object, not {dumps(r)}"
                )
            subnet = r.get("subnet")
            if not isinstance(subnet, str):
                raise PluginError(
                    codes.CODE_INVALID_CONFIG,
                    f"{json_path(*here, 'subnet')}: must be a CIDR string, not {dumps(subnet)}",
                )
            version = 6 if ":" in subnet else 4
            if set_version and version != set_version:
                raise PluginError(
                    codes.CODE_INVALID_CONFIG,
                    f"{json_path(*here, 'subnet')}: IPv{version} subnet {subnet} in a range set of "
                    f"IPv{set_version} ranges: give each family a range set of its own",
                )
            set_version = version
            found[version].append((r, here))
    for version, items in found.items():
        sets = sorted({here[-2] for _, here in items})
        if len(sets) > 1:
            raise PluginError(
                codes.CODE_INVALID_CONFIG,
                f"{where}: gives {len(sets)} range sets of IPv{version} ({', '.join(map(str, sets))}); "
                f"a dockyard endpoint has one address of each family: put the IPv{version} ranges "
                "in one range set",
            )
    return {version: items for version, items in found.items() if items}


def network_of(conf: dict[str, Any]) -> dict[str, Any]:
    """The network keys of the config, checked for type, with ipam/ranges folded in.

    `sources` tells the daemon the JSON path each folded key came from, for its errors.
    """
    ipam = _typed(conf, "ipam", dict, "an object") or {}
    ipam_type = ipam.get("type") or ""
    if ipam_type not in IPAM_TYPES:
        raise PluginError(
            codes.CODE_INVALID_CONFIG,
            f"ipam.type: {ipam_type!r} is not supported: dockyard-cni manages addresses itself; "
            "leave ipam out and give subnet (or ranges) in the plugin's config",
        )
    net: dict[str, Any] = {"name": conf.get("name")}
    sources: dict[str, Any] = {}
    for key in FOLDED:
        at = () if conf.get(key) is not None else ("ipam",)
        net[key] = _typed(ipam if at else conf, key, str, "a string", at)
        if at and net[key] is not None:
            sources[key] = json_path(*at, key)
    if net["subnet"] is not None and ":" in net["subnet"]:
        # An IPv6 subnet (host-local's one-range form): the IPv6 keys, as an IPv6 range set's.
        for key in FOLDED:
            value = net.pop(key)
            if value is not None:
                net[key + "6"] = value
                sources[key + "6"] = sources.pop(key, key)
    at = () if conf.get("ranges") is not None else ("ipam",)
    ranges = (ipam if at else conf).get("ranges")
    if ranges is not None:
        by_family = _ranges(ranges, at)
        for version, suffix in ((4, ""), (6, "6")):
            if version not in by_family:
                continue
            # The IPv6 range set: the same keys, each with a 6 (subnet6, gateway6, ...).
            (r, here), *later = by_family[version]
            # A set's later ranges (either family's), each with the same keys, and its path.
            for r_more, here_more in later:
                more = {key: _typed(r_more, key, str, "a string", here_more) for key in FOLDED}
                net.setdefault(MORE_RANGES, []).append({k: v for k, v in more.items() if v is not None})
                sources.setdefault(MORE_RANGES, []).append(json_path(*here_more))
            given = net.get("subnet" + suffix)
            if given is not None and given != r["subnet"]:
                raise PluginError(
                    codes.CODE_INVALID_CONFIG,
                    f"{json_path(*here, 'subnet')}: {r['subnet']} disagrees with "
                    f"{sources.get('subnet' + suffix, 'subnet')} {given}",
                )
            for key in FOLDED:
                if r.get(key) is not None:
                    net[key + suffix] = _typed(r, key, str, "a string", here)
                    sources[key + suffix] = json_path(*here, key)
    net["bridge"] = _typed(conf, "bridge", str, "an interface name")
    net["mtu"] = _typed(conf, "mtu", int, "a number")
    for key in ("ipMasq", "isGateway", "isDefaultGateway", "hairpinMode"):
        net[key] = _typed(conf, key, bool, "true or false")
    net["routes"] = _typed(ipam, "routes", list, 'a list of {"dst", "gw"} objects', ("ipam",))
    if net["routes"] is not None:
        sources["routes"] = "ipam.routes"
    net[SOURCES] = sources
    return net


def attachment_of(conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The per-container part: addresses, MAC and ports asked for, and where each came from."""
    runtime = _typed(conf, "runtimeConfig", dict, "an object") or {}
    args = cni_args(env.get("CNI_ARGS", ""))
    conv = ((conf.get("args") or {}).get("cni") or {}) if isinstance(conf.get("args"), dict) else {}
    conv = conv if isinstance(conv, dict) else {}
    ips = list(_typed(runtime, "ips", list, "a list of addresses", ("runtimeConfig",)) or [])
    where = [json_path("runtimeConfig", "ips", i) for i in range(len(ips))]
    for i, ip in enumerate(conv.get("ips") or []):
        ips.append(ip)
        where.append(json_path("args", "cni", "ips", i))
    for ip in args["IP"].split(",") if args.get("IP") else []:
        ips.append(ip)
        where.append("CNI_ARGS IP")
    mac, mac_from = runtime.get("mac"), "runtimeConfig.mac"
    if not mac:
        mac, mac_from = conv.get("mac"), "args.cni.mac"
    if not mac:
        mac, mac_from = args.get("MAC"), "CNI_ARGS MAC"
    ports = _typed(runtime, "portMappings", list, "a list of port mappings", ("runtimeConfig",)) or []
    return {
        "containerId": env.get("CNI_CONTAINERID", ""),
        "ifname": env.get("CNI_IFNAME", ""),
        "netns": env.get("CNI_NETNS", ""),
        "ips": ips,
        "mac": mac,
        "portMappings": ports,
        SOURCES: {"ips": where, "mac": mac_from, "portMappings": "runtimeConfig.portMappings"},
    }


# -- results ------------------------------------------------------------------


def prev_result_of(conf: dict[str, Any]) -> dict[str, Any] | None:
    """The config's prevResult, checked for the shape a result has; None when absent."""
    prev = conf.get("prevResult")
    if prev is None:
        return None
    if not isinstance(prev, dict):
        raise PluginError(codes.CODE_INVALID_CONFIG, f"prevResult must be a result object, not {dumps(prev)}")
    for key in ("interfaces", "ips", "routes"):
        items = prev.get(key)
        if items is not None and not (isinstance(items, list) and all(isinstance(x, dict) for x in items)):
            raise PluginError(
                codes.CODE_INVALID_CONFIG, f"prevResult is malformed: {key} must be a list of objects"
            )
    if prev.get("dns") is not None and not isinstance(prev["dns"], dict):
        raise PluginError(codes.CODE_INVALID_CONFIG, "prevResult is malformed: dns must be an object")
    count = len(prev.get("interfaces") or ())
    for ip in prev.get("ips") or ():
        index = ip.get("interface")
        if index is not None and (type(index) is not int or not 0 <= index < count):
            raise PluginError(
                codes.CODE_INVALID_CONFIG,
                f"prevResult is malformed: an ips entry names interface {dumps(index)}, "
                f"and its interfaces list has {count}",
            )
    return prev
