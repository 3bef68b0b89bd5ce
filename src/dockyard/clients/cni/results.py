"""dockyard-cni's results: the daemon's 1.1.0 result in the shape of the version asked
for, and that result joined to the prevResult of the plugins before it in a chain.

Pure, and imported by every plugin process (cni.py), so it imports
nothing. The result itself is made by the daemon (api/cni.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs every ADD its import
if TYPE_CHECKING:
    from typing import Any


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def format_result(result: dict[str, Any], version: str, dns: dict[str, Any]) -> dict[str, Any]:
    """The daemon's 1.1.0 result in the shape of the asked version."""
    v = _version(version)
    interfaces = []
    for item in result.get("interfaces", []):
        x = dict(item)
        if v < (1, 1, 0):
            for key in ("mtu", "socketPath", "pciID"):
                x.pop(key, None)
        interfaces.append(x)
    ips = [
        ({"version": "6" if ":" in ip["address"] else "4", **ip} if v < (1, 0, 0) else dict(ip))
        for ip in result.get("ips", [])
    ]
    routes = []
    for route in result.get("routes", []):
        routes.append(route if v >= (1, 1, 0) else {k: route[k] for k in ("dst", "gw") if k in route})
    out: dict[str, Any] = {"cniVersion": version, "interfaces": interfaces, "ips": ips}
    if routes:
        out["routes"] = routes
    out["dns"] = dns
    return out


def merge_result(prev: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Our result after prevResult's, as the spec asks of a plugin that is given one.

    prevResult is in the config's version already (the runtime converts it);
    our ips' interface indexes move past its interfaces; routes and dns
    lists are joined without repeats, the config's dns winning for single values.
    """
    shift = len(prev.get("interfaces") or ())
    ips = list(prev.get("ips") or ())
    for ip in ours["ips"]:
        ips.append({**ip, "interface": ip["interface"] + shift} if "interface" in ip else ip)
    out: dict[str, Any] = {
        "cniVersion": ours["cniVersion"],
        "interfaces": [*(prev.get("interfaces") or ()), *ours["interfaces"]],
        "ips": ips,
    }
    routes = list(prev.get("routes") or ())
    routes += [r for r in ours.get("routes", ()) if r not in routes]
    if routes:
        out["routes"] = routes
    dns = dict(prev.get("dns") or {})
    for key, value in ours["dns"].items():
        if isinstance(value, list) and isinstance(dns.get(key), list):
            dns[key] = dns[key] + [v for v in value if v not in dns[key]]
        else:
            dns[key] = value
    out["dns"] = dns
    return out
