"""Docker Engine API shapes: model objects in, Docker's JSON out (and back).

Field names and nesting follow Docker's API (containers/json,
containers/{id}/json, networks/{id}) so that tooling written against
Docker reads dockyard's answers unchanged.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from typing import Any

from dockyard import ipam, ports
from dockyard.errors import InvalidArgument
from dockyard.model import (
    Container,
    ContainerConfig,
    Endpoint,
    Network,
    NetworkMode,
    PortBinding,
    PortRequest,
    check_name,
)
from dockyard.networks import NetworkSpec

Json = dict[str, Any]


def _epoch(ts: str) -> int:
    if not ts:
        return 0
    return int(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp())


def _ago(ts: str) -> str:
    seconds = max(0, int(time.time()) - _epoch(ts))
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} days"


def status_text(c: Container) -> str:
    if c.running:
        return f"Up {_ago(c.started_at)}"
    if c.state.value == "created":
        return "Created"
    return f"Exited ({c.exit_code}) {_ago(c.finished_at)} ago"


# -- requests ---------------------------------------------------------------


def port_requests(
    port_bindings: Any, exposed: Any = None, publish_all: bool = False
) -> tuple[PortRequest, ...]:
    """HostConfig.PortBindings (and -P over ExposedPorts) to port requests."""
    out: list[PortRequest] = []
    if port_bindings is None:
        port_bindings = {}
    if not isinstance(port_bindings, dict):
        raise InvalidArgument("HostConfig.PortBindings must be an object")
    for key, binds in port_bindings.items():
        container_part = str(key)
        for bind in binds or [{}]:
            host_ip = str((bind or {}).get("HostIp") or "")
            host_port = str((bind or {}).get("HostPort") or "")
            spec = (
                f"{host_ip}:{host_port}:{container_part}"
                if host_ip
                else (f"{host_port}:{container_part}" if host_port else container_part)
            )
            if host_ip and not host_port:
                spec = f"{host_ip}::{container_part}"
            out.extend(ports.parse_port_spec(spec).requests())
    if publish_all and isinstance(exposed, dict):
        published = {(r.container_port, r.proto) for r in out}
        for key in exposed:
            for port, proto in ports.parse_expose(str(key)):
                if (port, proto) not in published:
                    out.append(PortRequest(port, proto))
    return tuple(out)


def requested_ip(endpoint: Json) -> ipaddress.IPv4Address | None:
    ipam_cfg = endpoint.get("IPAMConfig") or {}
    text = ipam_cfg.get("IPv4Address")
    if not text:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid --ip {text!r}: expected an IPv4 address") from None


def _pairs(raw: Any, what: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{what} must be an object of strings")
    return tuple(sorted((str(k), str(v)) for k, v in raw.items()))


def network_spec(body: Json) -> NetworkSpec:
    """POST /networks/create's body to a NetworkSpec."""
    name = str(body.get("Name") or "")
    if not name:
        raise InvalidArgument("a network needs a name")
    configs = (body.get("IPAM") or {}).get("Config") or []
    if len(configs) > 1:
        raise InvalidArgument("dockyard networks take one IPv4 subnet")
    cfg = configs[0] if configs else {}
    subnet = ipam.parse_subnet(cfg["Subnet"], "--subnet") if cfg.get("Subnet") else None
    gateway = ipam.parse_address(cfg["Gateway"], "--gateway") if cfg.get("Gateway") else None
    ip_range = ipam.parse_subnet(cfg["IPRange"], "--ip-range") if cfg.get("IPRange") else None
    aux = []
    for key, value in _pairs(cfg.get("AuxiliaryAddresses"), "AuxiliaryAddresses"):
        aux.append((key, ipam.parse_address(value, f"--aux-address {key}")))
    labels = _pairs(body.get("Labels"), "Labels")
    options = _pairs(body.get("Options"), "Options")
    for key, _ in labels + options:
        if not key or any(ch.isspace() for ch in key):
            raise InvalidArgument(f"invalid key {key!r}: keys cannot be empty or hold white space")
    return NetworkSpec(
        name=name,
        driver=str(body.get("Driver") or "bridge"),
        subnet=subnet,
        gateway=gateway,
        ip_range=ip_range,
        aux_addresses=tuple(aux),
        internal=bool(body.get("Internal")),
        labels=labels,
        options=options,
    )


def container_config(body: Json) -> tuple[ContainerConfig, list[str]]:
    """POST /containers/create's body to a ContainerConfig; also the requested aliases."""
    host = body.get("HostConfig") or {}
    cmd = body.get("Cmd") or []
    if isinstance(cmd, str):
        cmd = [cmd]
    entrypoint = body.get("Entrypoint") or []
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    mode = NetworkMode.parse(str(host.get("NetworkMode") or "bridge"))
    ip = None
    aliases: list[str] = []
    endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}
    for _name, ep in endpoints.items():
        ip = requested_ip(ep or {}) or ip
        aliases.extend(str(a) for a in (ep or {}).get("Aliases") or [])
    for alias in aliases:
        check_name(alias, "network alias")
    dns = []
    for server in host.get("Dns") or []:
        dns.append(ipam.parse_address(str(server), "--dns"))
    for word in [*(host.get("DnsSearch") or []), *(host.get("DnsOptions") or [])]:
        if not str(word) or any(ch.isspace() for ch in str(word)):
            raise InvalidArgument(f"invalid --dns-search/--dns-option {word!r}")
    env = body.get("Env") or []
    for item in env:
        if not isinstance(item, str) or "=" not in item or item.startswith("="):
            raise InvalidArgument(f"invalid environment variable {item!r}: expected KEY=VALUE")
    config = ContainerConfig(
        cmd=tuple(str(x) for x in [*entrypoint, *cmd]),
        env=tuple(env),
        workdir=str(body.get("WorkingDir") or ""),
        hostname=str(body.get("Hostname") or ""),
        auto_remove=bool(host.get("AutoRemove")),
        network_mode=mode,
        ports=port_requests(
            host.get("PortBindings"), body.get("ExposedPorts"), bool(host.get("PublishAllPorts"))
        ),
        ip=ip,
        detach=not bool(body.get("AttachStdout", True)),
        aliases=tuple(aliases),
        dns=tuple(dns),
        dns_search=tuple(str(x) for x in host.get("DnsSearch") or ()),
        dns_options=tuple(str(x) for x in host.get("DnsOptions") or ()),
    )
    return config, aliases


# -- containers -----------------------------------------------------------


def _port_key(b: PortBinding | PortRequest) -> str:
    return f"{b.container_port}/{b.proto}"


def requested_bindings(cfg: ContainerConfig) -> Json:
    out: Json = {}
    for r in cfg.ports:
        host_port = (
            ""
            if not r.host_port
            else (f"{r.host_port}-{r.host_port_end}" if r.host_port_end else str(r.host_port))
        )
        out.setdefault(_port_key(r), []).append({"HostIp": str(r.host_ip or ""), "HostPort": host_port})
    return out


def published_ports(bindings: list[PortBinding]) -> Json:
    out: Json = {}
    for b in bindings:
        out.setdefault(_port_key(b), []).append({"HostIp": b.host_ip_text, "HostPort": str(b.host_port)})
    return out


def _endpoint_json(ep: Endpoint, network: Network) -> Json:
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": list(ep.aliases) or None,
        "NetworkID": network.id,
        "EndpointID": ep.id,
        "Gateway": str(ep.gateway or ""),
        "IPAddress": str(ep.address.ip),
        "IPPrefixLen": ep.address.network.prefixlen,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": ep.mac,
        "DriverOpts": None,
    }


def container_inspect(
    c: Container,
    endpoints: list[tuple[Endpoint, Network]],
    bindings: list[PortBinding],
    sandbox_key: str,
    log_path: str,
    netns_view: list[tuple[Endpoint, Network]] | None = None,
) -> Json:
    # A container: joiner shows the target's endpoints, as its interfaces are the target's.
    view = endpoints if netns_view is None else netns_view
    # Docker's top-level IPAddress & co. describe the default bridge only.
    legacy = next((ep for ep, n in view if n.name == "bridge"), None)
    ports_json: Json = {}
    if c.running:
        ports_json = published_ports(bindings)
        for r in c.config.ports:
            ports_json.setdefault(_port_key(r), None)
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": c.config.cmd[0] if c.config.cmd else "",
        "Args": list(c.config.cmd[1:]),
        "State": {
            "Status": c.state.value,
            "Running": c.running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": c.pid if c.running else 0,
            "ExitCode": c.exit_code,
            "Error": c.error,
            "StartedAt": c.started_at or "0001-01-01T00:00:00Z",
            "FinishedAt": c.finished_at or "0001-01-01T00:00:00Z",
        },
        "Name": "/" + c.name,
        "LogPath": log_path,
        "HostnamePath": "",
        "HostsPath": "",
        "ResolvConfPath": "",
        "Config": {
            "Hostname": c.config.hostname or c.short_id,
            "Env": list(c.config.env),
            "Cmd": list(c.config.cmd),
            "WorkingDir": c.config.workdir,
            "ExposedPorts": {_port_key(r): {} for r in c.config.ports} or None,
        },
        "HostConfig": {
            "NetworkMode": str(c.config.network_mode),
            "PortBindings": requested_bindings(c.config),
            "AutoRemove": c.config.auto_remove,
            "Dns": [str(x) for x in c.config.dns],
            "DnsSearch": list(c.config.dns_search),
            "DnsOptions": list(c.config.dns_options),
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": c.netns_owner or (c.id if sandbox_key else ""),
            "SandboxKey": sandbox_key,
            "Ports": ports_json,
            "EndpointID": legacy.id if legacy else "",
            "Gateway": str(legacy.gateway or "") if legacy else "",
            "IPAddress": str(legacy.address.ip) if legacy else "",
            "IPPrefixLen": legacy.address.network.prefixlen if legacy else 0,
            "MacAddress": legacy.mac if legacy else "",
            "Networks": {n.name: _endpoint_json(ep, n) for ep, n in endpoints},
        },
    }


def container_summary(
    c: Container, endpoints: list[tuple[Endpoint, Network]], bindings: list[PortBinding]
) -> Json:
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": "",
        "Command": " ".join(c.config.cmd),
        "Created": _epoch(c.created),
        "State": c.state.value,
        "Status": status_text(c),
        "Ports": [
            {
                "IP": b.host_ip_text,
                "PrivatePort": b.container_port,
                "PublicPort": b.host_port,
                "Type": str(b.proto),
            }
            for b in (bindings if c.running else [])
        ],
        "HostConfig": {"NetworkMode": str(c.config.network_mode)},
        "NetworkSettings": {"Networks": {n.name: _endpoint_json(ep, n) for ep, n in endpoints}},
    }


# -- networks ---------------------------------------------------------------


def network_inspect(n: Network, members: list[tuple[Container, Endpoint]]) -> Json:
    ipam_config = []
    if n.subnet is not None:
        entry: Json = {"Subnet": str(n.subnet), "Gateway": str(n.gateway or "")}
        if n.ip_range is not None:
            entry["IPRange"] = str(n.ip_range)
        if n.aux_addresses:
            entry["AuxiliaryAddresses"] = {k: str(v) for k, v in n.aux_addresses}
        ipam_config.append(entry)
    return {
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver.value,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_config},
        "Internal": n.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            c.id: {
                "Name": c.name,
                "EndpointID": ep.id,
                "MacAddress": ep.mac,
                "IPv4Address": str(ep.address),
                "IPv6Address": "",
            }
            for c, ep in members
        },
        "Options": dict(n.options),
        "Labels": dict(n.labels),
    }
