"""Docker Engine API shapes: model objects in, Docker's JSON out (and back).

Field names and nesting follow Docker's API (containers/json,
containers/{id}/json, networks/{id}) so that tooling written against
Docker reads dockyard's answers unchanged.
"""

from __future__ import annotations

import ipaddress
import re
import time
from datetime import UTC, datetime
from typing import Any

from dockyard import digests
from dockyard.daemon.api import confinement, create_fields, endpoint_settings
from dockyard.daemon.api.json_types import flag as _flag
from dockyard.daemon.api.json_types import json_object as _object
from dockyard.daemon.api.json_types import strings as _strings
from dockyard.daemon.api.json_types import text as _text
from dockyard.engine.networks.service import NetworkSpec
from dockyard.engine.views import Member
from dockyard.errors import InvalidArgument
from dockyard.model import (
    Container,
    ContainerConfig,
    DriverName,
    Endpoint,
    ImageRun,
    ModeKind,
    Network,
    NetworkMode,
    PortBinding,
    PortRequest,
    SubnetConfig,
    check_network_name,
)
from dockyard.policy import ipam6, ports

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
#
# A body may come from any client, so each field is checked for Docker's JSON
# type before it is used (json_types.py): a bad body is an InvalidArgument
# that names the field, never a TypeError in the daemon.

# The kernel's HOST_NAME_MAX: sethostname refuses a longer name.
HOSTNAME_MAX = 64
# A host name goes into /etc/hosts and /etc/hostname: no white space, no line breaks.
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")


def port_requests(
    port_bindings: Any, exposed: Any = None, publish_all: bool = False
) -> tuple[PortRequest, ...]:
    """HostConfig.PortBindings (and -P over ExposedPorts) to port requests."""
    out: list[PortRequest] = []
    for key, binds in _object(port_bindings, "HostConfig.PortBindings").items():
        container_part = str(key)
        if binds is not None and not isinstance(binds, list):
            raise InvalidArgument(f"HostConfig.PortBindings[{container_part!r}] must be a list")
        # Each part goes in its own place: a ':' inside one would shift the others.
        if ":" in container_part and not container_part.startswith("["):
            raise InvalidArgument(f"invalid port {container_part!r} in HostConfig.PortBindings")
        for bind in binds or [{}]:
            fields = _object(bind, f"HostConfig.PortBindings[{container_part!r}] entry")
            host_ip = _text(fields.get("HostIp"), "HostIp")
            host_port = _text(fields.get("HostPort"), "HostPort")
            if ":" in host_ip:
                # IPv6, in brackets in the spec; anything else with a colon is refused there.
                if "[" in host_ip or "]" in host_ip:
                    raise InvalidArgument(f"invalid HostIp {host_ip!r}: expected an IP address")
                host_ip = f"[{host_ip}]"
            if ":" in host_port:
                raise InvalidArgument(f"invalid HostPort {host_port!r}: expected a port or a range")
            spec = (
                f"{host_ip}:{host_port}:{container_part}"
                if host_ip
                else (f"{host_port}:{container_part}" if host_port else container_part)
            )
            if host_ip and not host_port:
                spec = f"{host_ip}::{container_part}"
            out.extend(ports.parse_port_spec(spec).requests())
    # Exposed ports are checked even without -P, as Docker checks --expose.
    exposed_ports = [p for key in _object(exposed, "ExposedPorts") for p in ports.parse_expose(str(key))]
    return ports.publish_all(out, exposed_ports) if publish_all else tuple(out)


def _dns_server(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A --dns server: an address of either family, as Docker takes it (no IPv6 zone)."""
    try:
        return ipam6.parse_any_address(text, "--dns")
    except InvalidArgument:
        raise InvalidArgument(f"invalid --dns {text!r}: expected an IPv4 or IPv6 address") from None


def _pairs(raw: Any, what: str) -> tuple[tuple[str, str], ...]:
    """An object of strings (Labels, Options, AuxiliaryAddresses), sorted by key."""
    out = []
    for key, value in _object(raw, what).items():
        key = str(key)
        if not key or "\0" in key or any(ch.isspace() for ch in key):
            raise InvalidArgument(f"invalid key {key!r}: keys cannot be empty or hold white space")
        out.append((key, _text(value, f"{what} {key!r}")))
    return tuple(sorted(out))


def network_spec(body: Any) -> NetworkSpec:
    """POST /networks/create's body to a NetworkSpec."""
    body = _object(body, "the request body")
    name = _text(body.get("Name"), "Name")
    if not name:
        raise InvalidArgument("a network needs a name")
    check_network_name(name)
    configs = _object(body.get("IPAM"), "IPAM").get("Config")
    if configs is None:
        configs = []
    if not isinstance(configs, list):
        raise InvalidArgument("IPAM.Config must be a list")
    driver = _text(body.get("Driver"), "Driver") or "bridge"
    enable_ipv6 = _flag(body.get("EnableIPv6"), "EnableIPv6")
    enable_ipv4 = _flag(body.get("EnableIPv4"), "EnableIPv4", default=True)
    ipam_v4: dict[str, Any] = {}
    ipam_v6: dict[str, Any] = {}
    aux: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]] = []
    more: list[SubnetConfig] = []
    for raw_cfg in configs:
        cfg = _object(raw_cfg, "IPAM.Config entry")
        subnet_text = _text(cfg.get("Subnet"), "IPAM.Config Subnet")
        gateway_text = _text(cfg.get("Gateway"), "IPAM.Config Gateway")
        range_text = _text(cfg.get("IPRange"), "IPAM.Config IPRange")
        # Each entry is one family's, decided by its values (as Docker decides it).
        v6 = ipam6.is_ipv6(subnet_text or gateway_text or range_text)
        first = ipam_v6 if v6 else ipam_v4
        if first:
            family = "IPv6" if v6 else "IPv4"
            second = f"a second {family} subnet: {subnet_text or '(default)'}"
            if driver == "bridge":
                # Docker's bridge driver refuses it so too (libnetwork's processIPAM).
                raise InvalidArgument(f"bridge driver doesn't support multiple subnets ({second})")
            if not subnet_text or not first.get("subnet"):
                raise InvalidArgument(f"{second}: every subnet of a family after its first needs --subnet")
        # A later subnet of the family goes to more (the driver says whether it takes it).
        parsed: dict[str, Any] = {}
        parsed["subnet"] = ipam6.parse_any_subnet(subnet_text, "--subnet") if subnet_text else None
        parsed["gateway"] = ipam6.parse_any_address(gateway_text, "--gateway") if gateway_text else None
        parsed["ip_range"] = ipam6.parse_any_subnet(range_text, "--ip-range") if range_text else None
        for what, value in (("--gateway", parsed["gateway"]), ("--ip-range", parsed["ip_range"])):
            if (
                value is not None
                and parsed["subnet"] is not None
                and value.version != parsed["subnet"].version
            ):
                raise InvalidArgument(f"{what} {value} is not of subnet {parsed['subnet']}'s family")
        if first:
            more.append(SubnetConfig(parsed["subnet"], parsed["gateway"], parsed["ip_range"]))
        else:
            first.update(parsed, given=True)
        for key, value in _pairs(cfg.get("AuxiliaryAddresses"), "AuxiliaryAddresses"):
            aux.append((key, ipam6.parse_any_address(value, f"--aux-address {key!r}")))
    return NetworkSpec(
        name=name,
        driver=driver,
        subnet=ipam_v4.get("subnet"),
        gateway=ipam_v4.get("gateway"),
        ip_range=ipam_v4.get("ip_range"),
        aux_addresses=tuple(aux),
        enable_ipv6=enable_ipv6,
        subnet6=ipam_v6.get("subnet"),
        gateway6=ipam_v6.get("gateway"),
        ip_range6=ipam_v6.get("ip_range"),
        more_subnets=tuple(more),
        enable_ipv4=enable_ipv4,
        internal=_flag(body.get("Internal"), "Internal"),
        attachable=_flag(body.get("Attachable"), "Attachable"),
        labels=_pairs(body.get("Labels"), "Labels"),
        options=_pairs(body.get("Options"), "Options"),
    )


def _hostname(raw: Any) -> str:
    name = _text(raw, "Hostname")
    if name and (not HOSTNAME_RE.match(name) or len(name) > HOSTNAME_MAX):
        raise InvalidArgument(
            f"invalid hostname {name!r}: use letters, digits, '.', '-' and '_', "
            f"at most {HOSTNAME_MAX} characters"
        )
    return name


def image_run(body: Any) -> ImageRun | None:
    """What the create request asks of its image (None: a command of the host's, dockyard's own way)."""
    body = _object(body, "the request body")
    name = _text(body.get("Image"), "Image")
    if not name:
        return None
    host = _object(body.get("HostConfig"), "HostConfig")
    entrypoint, cmd = body.get("Entrypoint"), body.get("Cmd")
    return ImageRun(
        name=name,
        entrypoint=None if entrypoint is None else tuple(_strings(entrypoint, "Entrypoint", one_string=True)),
        cmd=None if cmd is None else tuple(_strings(cmd, "Cmd", one_string=True)),
        publish_all=_flag(host.get("PublishAllPorts"), "HostConfig.PublishAllPorts"),
    )


def container_config(body: Any) -> tuple[ContainerConfig, list[str]]:
    """POST /containers/create's body to a ContainerConfig; also the requested aliases.

    With an image, cmd is only the request's (the engine merges the image's in).
    """
    body = _object(body, "the request body")
    host = _object(body.get("HostConfig"), "HostConfig")
    cmd = _strings(body.get("Cmd"), "Cmd", one_string=True)
    entrypoint = _strings(body.get("Entrypoint"), "Entrypoint", one_string=True)
    mode = NetworkMode.parse(_text(host.get("NetworkMode"), "HostConfig.NetworkMode") or "bridge")
    create_fields.check_all(body, host)
    first, further = endpoint_settings.endpoint_requests(body.get("NetworkingConfig"), mode)
    ip = first.ip if first else None
    ip6 = first.ip6 if first else None
    aliases: list[str] = list(first.aliases) if first else []
    if (ip is not None or ip6 is not None) and mode.kind is ModeKind.BRIDGE:
        raise InvalidArgument("user specified IP address is supported on user defined networks only")
    if aliases and (mode.kind is ModeKind.BRIDGE or mode.network_name is None):
        # Docker's rule: the default bridge has no names to resolve them by, nor host, none or container:.
        raise InvalidArgument("network-scoped aliases are only supported for user-defined networks")
    mac = (first.mac if first else "") or create_fields.mac_address(body.get("MacAddress"), "MacAddress")
    if mac and mode.network_name is None:
        raise InvalidArgument(f"--mac-address cannot be used with the {mode.kind.value} network mode")
    auto_remove = _flag(host.get("AutoRemove"), "HostConfig.AutoRemove")
    dns = [_dns_server(server) for server in _strings(host.get("Dns"), "HostConfig.Dns")]
    dns_search = _strings(host.get("DnsSearch"), "HostConfig.DnsSearch")
    dns_options = _strings(host.get("DnsOptions"), "HostConfig.DnsOptions")
    for word in [*dns_search, *dns_options]:
        if not word or any(ch.isspace() for ch in word):
            raise InvalidArgument(f"invalid --dns-search/--dns-option {word!r}")
    env = _strings(body.get("Env"), "Env")
    for item in env:
        if "=" not in item or item.startswith("="):
            raise InvalidArgument(f"invalid environment variable {item!r}: expected KEY=VALUE")
    config = ContainerConfig(
        cmd=tuple([*entrypoint, *cmd]),
        env=tuple(env),
        workdir=_text(body.get("WorkingDir"), "WorkingDir"),
        hostname=_hostname(body.get("Hostname")),
        auto_remove=auto_remove,
        network_mode=mode,
        ports=port_requests(
            host.get("PortBindings"),
            body.get("ExposedPorts"),
            _flag(host.get("PublishAllPorts"), "HostConfig.PublishAllPorts"),
        ),
        ip=ip,
        ip6=ip6,
        # An explicit null detaches, as before; absent means attached.
        detach=not _flag(body.get("AttachStdout", True), "AttachStdout"),
        aliases=tuple(aliases),
        dns=tuple(dns),
        dns_search=tuple(dns_search),
        dns_options=tuple(dns_options),
        tty=_flag(body.get("Tty"), "Tty"),
        open_stdin=_flag(body.get("OpenStdin"), "OpenStdin"),
        stdin_once=_flag(body.get("StdinOnce"), "StdinOnce"),
        console_size=create_fields.console_size(host.get("ConsoleSize")),
        **confinement.fields(body, host),
        image=_text(body.get("Image"), "Image"),
        labels=create_fields.labels(body.get("Labels")),
        mounts=create_fields.binds(host.get("Binds"), host.get("Mounts")),
        extra_hosts=create_fields.extra_hosts(host.get("ExtraHosts")),
        sysctls=create_fields.sysctls(host.get("Sysctls"), mode),
        restart=create_fields.restart_policy(host.get("RestartPolicy"), auto_remove),
        networks=further,
        mac=mac,
        stop_signal=create_fields.stop_signal(body.get("StopSignal")),
        stop_timeout=create_fields.stop_timeout(body.get("StopTimeout")),
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


def _host_ips(b: PortBinding, families: tuple[bool, bool]) -> list[str]:
    """The host addresses a binding shows, as Docker shows them: one on every address
    is 0.0.0.0 where the container has IPv4 and :: where it has IPv6 (only :: on an
    IPv6-only network)."""
    ipv4, ipv6 = families
    if b.host_ip is None and ipv6:
        return ["0.0.0.0", "::"] if ipv4 else ["::"]
    return [b.host_ip_text]


def _families(endpoints: list[tuple[Endpoint, Network]]) -> tuple[bool, bool]:
    """(IPv4, IPv6): whether the container has an address of each family (IPv4 when it has none)."""
    ipv4 = any(ep.address is not None for ep, _ in endpoints) or not endpoints
    return ipv4, any(ep.address6 is not None for ep, _ in endpoints)


def published_ports(bindings: list[PortBinding], families: tuple[bool, bool] = (True, False)) -> Json:
    out: Json = {}
    for b in bindings:
        for ip in _host_ips(b, families):
            out.setdefault(_port_key(b), []).append({"HostIp": ip, "HostPort": str(b.host_port)})
    return out


def _requested(c: Container | None, network: Network) -> tuple[Json | None, str]:
    """(IPAMConfig, MAC) c's config asked for on network: what inspect echoes (--ip, --ip6)."""
    if c is None:
        return None, ""
    cfg = c.config
    if cfg.network_mode.network_name == network.name:
        ip, ip6, mac = cfg.ip, cfg.ip6, cfg.mac
    else:
        req = next((r for r in cfg.networks if r.network in (network.name, network.id)), None)
        if req is None:
            return None, ""
        ip, ip6, mac = req.ip, req.ip6, req.mac
    ipam_config = ({"IPv4Address": str(ip)} if ip else {}) | ({"IPv6Address": str(ip6)} if ip6 else {})
    return ipam_config or None, mac


def _endpoint_json(ep: Endpoint, network: Network, c: Container | None = None) -> Json:
    ipam_config, _ = _requested(c, network)
    return {
        "IPAMConfig": ipam_config,
        "Links": None,
        "Aliases": list(ep.aliases) or None,
        "NetworkID": network.id,
        "EndpointID": ep.id,
        "Gateway": str(ep.gateway or ""),
        "IPAddress": str(ep.address.ip) if ep.address else "",
        "IPPrefixLen": ep.address.network.prefixlen if ep.address else 0,
        "IPv6Gateway": str(ep.gateway6 or ""),
        "GlobalIPv6Address": str(ep.address6.ip) if ep.address6 else "",
        "GlobalIPv6PrefixLen": ep.address6.network.prefixlen if ep.address6 else 0,
        "MacAddress": ep.mac,
        "DriverOpts": None,
    }


def mode_endpoint_id(c: Container, network: Network) -> str:
    """The id of a host or none container's place on that network: Docker lists one, while
    no endpoint exists (no interface, no address); derived, so every answer shows the same."""
    return digests.sha256(f"{network.id}/{c.id}".encode()).hexdigest()


def _mode_endpoint_json(c: Container, network: Network) -> Json:
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "NetworkID": network.id,
        "EndpointID": mode_endpoint_id(c, network),
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "DriverOpts": None,
    }


def _configured_json(c: Container, name: str, network: Network | None) -> Json:
    """A network c's config names, not joined (c is not running): Docker shows it without address."""
    ipam_config, mac = _requested(c, network) if network is not None else (None, "")
    aliases = list(c.config.aliases) if name == c.config.network_mode.network_name else []
    aliases += [a for r in c.config.networks if r.network == name for a in r.aliases]
    return {
        "IPAMConfig": ipam_config,
        "Links": None,
        "Aliases": aliases or None,
        "NetworkID": network.id if network is not None else "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": mac,
        "DriverOpts": None,
    }


def _networks_json(
    c: Container,
    endpoints: list[tuple[Endpoint, Network]],
    mode_network: Network | None,
    configured: dict[str, Network | None] | None = None,
) -> Json:
    out = {n.name: _endpoint_json(ep, n, c) for ep, n in endpoints}
    if not c.running:
        for name, network in (configured or {}).items():
            out.setdefault(name, _configured_json(c, name, network))
    if mode_network is not None:
        out[mode_network.name] = _mode_endpoint_json(c, mode_network)
    return out


def container_inspect(
    c: Container,
    endpoints: list[tuple[Endpoint, Network]],
    bindings: list[PortBinding],
    sandbox_key: str,
    log_path: str,
    netns_view: list[tuple[Endpoint, Network]] | None = None,
    mode_network: Network | None = None,
    extra: Json | None = None,
) -> Json:
    """extra: what the engine knows beside the record (ImageId, RestartCount, Restarting,
    Configured: the networks its config names, by name)."""
    extra = extra or {}
    # A container: joiner shows the target's endpoints, as its interfaces are the target's.
    view = endpoints if netns_view is None else netns_view
    # Docker's top-level IPAddress & co. describe the default bridge only.
    legacy = next((ep for ep, n in view if n.name == "bridge"), None)
    ports_json: Json = {}
    if c.running:
        ports_json = published_ports(bindings, _families(view))
        for r in c.config.ports:
            ports_json.setdefault(_port_key(r), None)
    confined_config, confined_host = confinement.inspect(c.config)
    return {
        "Id": c.id,
        "Created": c.created,
        "Path": c.config.cmd[0] if c.config.cmd else "",
        "Args": list(c.config.cmd[1:]),
        "Image": extra.get("ImageId") or c.config.image,
        "RestartCount": extra.get("RestartCount", 0),
        "State": {
            "Status": "restarting" if extra.get("Restarting") else c.state.value,
            "Running": c.running,
            "Paused": False,
            "Restarting": bool(extra.get("Restarting")),
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
            "Image": c.config.image,
            "Labels": dict(c.config.labels),
            "MacAddress": c.config.mac,
            "StopSignal": c.config.stop_signal or None,
            "StopTimeout": c.config.stop_timeout,
            "Tty": c.config.tty,
            "OpenStdin": c.config.open_stdin,
            "StdinOnce": c.config.stdin_once,
            "AttachStdin": c.config.open_stdin and not c.config.detach,
            "AttachStdout": not c.config.detach,
            "AttachStderr": not c.config.detach,
            **confined_config,
        },
        "HostConfig": {
            "NetworkMode": str(c.config.network_mode),
            "PortBindings": requested_bindings(c.config),
            "AutoRemove": c.config.auto_remove,
            "Dns": [str(x) for x in c.config.dns],
            "DnsSearch": list(c.config.dns_search),
            "DnsOptions": list(c.config.dns_options),
            "Binds": [f"{m.source}:{m.target}{':ro' if m.read_only else ''}" for m in c.config.mounts]
            or None,
            "ExtraHosts": [f"{name}:{address}" for name, address in c.config.extra_hosts] or None,
            "Sysctls": dict(c.config.sysctls) or None,
            "RestartPolicy": {
                "Name": c.config.restart.name.value,
                "MaximumRetryCount": c.config.restart.max_retries,
            },
            # The shim writes Docker's json-file format (kernel/logfile.py).
            "LogConfig": {"Type": "json-file", "Config": {}},
            "ConsoleSize": list(c.config.console_size),
            **confined_host,
        },
        "Mounts": mounts_json(c),
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": c.netns_owner or (c.id if sandbox_key else ""),
            "SandboxKey": sandbox_key,
            "Ports": ports_json,
            "EndpointID": legacy.id if legacy else "",
            "Gateway": str(legacy.gateway or "") if legacy else "",
            "IPAddress": str(legacy.address.ip) if legacy and legacy.address else "",
            "IPPrefixLen": legacy.address.network.prefixlen if legacy and legacy.address else 0,
            "IPv6Gateway": str(legacy.gateway6 or "") if legacy else "",
            "GlobalIPv6Address": str(legacy.address6.ip) if legacy and legacy.address6 else "",
            "GlobalIPv6PrefixLen": legacy.address6.network.prefixlen if legacy and legacy.address6 else 0,
            "MacAddress": legacy.mac if legacy else "",
            "Networks": _networks_json(c, endpoints, mode_network, extra.get("Configured")),
        },
    }


def mounts_json(c: Container) -> list[Json]:
    return [
        {
            "Type": "bind",
            "Source": m.source,
            "Destination": m.target,
            "Mode": "ro" if m.read_only else "",
            "RW": not m.read_only,
            "Propagation": "rprivate",
        }
        for m in c.config.mounts
    ]


def container_summary(
    c: Container,
    endpoints: list[tuple[Endpoint, Network]],
    bindings: list[PortBinding],
    mode_network: Network | None = None,
    configured: dict[str, Network | None] | None = None,
    image_id: str = "",
) -> Json:
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.config.image,
        "ImageID": image_id,
        "Labels": dict(c.config.labels),
        "Mounts": mounts_json(c),
        "Command": " ".join(c.config.cmd),
        "Created": _epoch(c.created),
        "State": c.state.value,
        "Status": status_text(c),
        "Ports": [
            {
                "IP": ip,
                "PrivatePort": b.container_port,
                "PublicPort": b.host_port,
                "Type": str(b.proto),
            }
            for b in (bindings if c.running else [])
            for ip in _host_ips(b, _families(endpoints))
        ],
        "HostConfig": {"NetworkMode": str(c.config.network_mode)},
        "NetworkSettings": {"Networks": _networks_json(c, endpoints, mode_network, configured)},
    }


# -- networks ---------------------------------------------------------------


def network_inspect(n: Network, members: list[Member], mode_members: tuple[Container, ...] = ()) -> Json:
    ipam_config = []
    # One entry per subnet, IPv4's first, each with the aux addresses it holds (as Docker shows them).
    for config in (*n.subnet_configs(4), *n.subnet_configs(6)):
        entry: Json = {"Subnet": str(config.subnet), "Gateway": str(config.gateway or "")}
        if config.ip_range is not None:
            entry["IPRange"] = str(config.ip_range)
        aux = {k: str(v) for k, v in n.aux_addresses if n.config_of(v) == config}
        if aux:
            entry["AuxiliaryAddresses"] = aux
        ipam_config.append(entry)
    return {
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": n.scope,
        "Driver": n.driver.value,
        "EnableIPv4": n.enable_ipv4 or not n.bridged,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_config},
        "Internal": n.internal,
        "Attachable": n.driver is DriverName.OVERLAY,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            c.id: {
                "Name": c.name,
                "EndpointID": ep.id,
                "MacAddress": ep.mac,
                "IPv4Address": str(ep.address or ""),
                "IPv6Address": str(ep.address6 or ""),
            }
            for c, ep in members
        }
        | {
            c.id: {
                "Name": c.name,
                "EndpointID": mode_endpoint_id(c, n),
                "MacAddress": "",
                "IPv4Address": "",
                "IPv6Address": "",
            }
            for c in mode_members
        },
        "Options": dict(n.options),
        "Labels": dict(n.labels),
    }
