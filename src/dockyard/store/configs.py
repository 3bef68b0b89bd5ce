"""A container's config as the text the database keeps, and back (parsed ones cached)."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections import OrderedDict

from dockyard.model import (
    BindMount,
    ContainerConfig,
    EndpointRequest,
    NetworkMode,
    PortRequest,
    Protocol,
    RestartName,
    RestartPolicy,
)


def net_or_none(text: str | None) -> ipaddress.IPv4Network | None:
    return ipaddress.IPv4Network(text) if text else None


def addr_or_none(text: str | None) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(text) if text else None


def net6_or_none(text: str | None) -> ipaddress.IPv6Network | None:
    return ipaddress.IPv6Network(text) if text else None


def addr6_or_none(text: str | None) -> ipaddress.IPv6Address | None:
    return ipaddress.IPv6Address(text) if text else None


def text_or_none(value: object) -> str | None:
    """An address or network as a column holds it: its canonical text, NULL for none."""
    return str(value) if value is not None else None


def config_to_json(cfg: ContainerConfig) -> str:
    text = _config_text(cfg)
    # The config just written is the one read next (start follows create): kept as
    # the parse of its text, which equals it (a unit test holds the round trip), so a
    # 1,000-port config is not parsed back (~2.5 ms).
    _remember(text, cfg)
    return text


def _config_text(cfg: ContainerConfig) -> str:
    return json.dumps(
        {
            "cmd": list(cfg.cmd),
            "env": list(cfg.env),
            "workdir": cfg.workdir,
            "hostname": cfg.hostname,
            "auto_remove": cfg.auto_remove,
            "network_mode": str(cfg.network_mode),
            "ports": _port_runs(cfg.ports),
            "ip": str(cfg.ip or ""),
            "ip6": str(cfg.ip6 or ""),
            "detach": cfg.detach,
            "aliases": list(cfg.aliases),
            "dns": [str(x) for x in cfg.dns],
            "dns_search": list(cfg.dns_search),
            "dns_options": list(cfg.dns_options),
            "user": cfg.user,
            "group_add": list(cfg.group_add),
            "cap_add": list(cfg.cap_add),
            "cap_drop": list(cfg.cap_drop),
            "privileged": cfg.privileged,
            "no_new_privileges": cfg.no_new_privileges,
            "init": cfg.init,
            "pids_limit": cfg.pids_limit,
            "image": cfg.image_id,  # what images' users() looks for
            "image_name": cfg.image,
            "labels": [list(kv) for kv in cfg.labels],
            "mounts": [[m.source, m.target, m.read_only] for m in cfg.mounts],
            "extra_hosts": [list(kv) for kv in cfg.extra_hosts],
            "sysctls": [list(kv) for kv in cfg.sysctls],
            "restart": [str(cfg.restart.name), cfg.restart.max_retries],
            "networks": [
                [n.network, str(n.ip or ""), list(n.aliases), n.mac, str(n.ip6 or "")] for n in cfg.networks
            ],
            "mac": cfg.mac,
            "stop_signal": cfg.stop_signal,
            "stop_timeout": cfg.stop_timeout,
            "network_left": cfg.network_left,
            "tty": cfg.tty,
            "open_stdin": cfg.open_stdin,
            "stdin_once": cfg.stdin_once,
            "console_size": list(cfg.console_size),
        }
    )


def _port_runs(ports: tuple[PortRequest, ...]) -> list[list[object]]:
    """The requests as runs, [container port, proto, host port, host ip, host port end, count]:
    a range's thousand requests, each port one further on both sides (a host port 0 stays
    0), are one entry, not a thousand (~40 kB of text written and parsed back)."""
    out: list[list[object]] = []
    first: PortRequest | None = None
    count = 0
    for p in ports:
        if (
            first is not None
            and p.container_port == first.container_port + count
            and p.host_port == (first.host_port + count if first.host_port else 0)
            and p.proto is first.proto
            and p.host_ip == first.host_ip
            and not p.host_port_end
            and not first.host_port_end
        ):
            count += 1
            continue
        if first is not None:
            out.append(_port_run(first, count))
        first, count = p, 1
    if first is not None:
        out.append(_port_run(first, count))
    return out


def _port_run(p: PortRequest, count: int) -> list[object]:
    return [p.container_port, str(p.proto), p.host_port, str(p.host_ip or ""), p.host_port_end, count]


def _port_requests(runs: list[list]) -> tuple[PortRequest, ...]:
    """_port_runs' entries back as requests; an entry of five (rows before runs) is one request."""
    out: list[PortRequest] = []
    for c, pr, h, ip, end, *rest in runs:
        count = int(rest[0]) if rest else 1
        proto, host_ip = protocol_of(pr), ipaddress.ip_address(ip) if ip else None
        c, h, end = int(c), int(h), int(end)
        out.extend(PortRequest(c + i, proto, h + i if h else 0, host_ip, end) for i in range(count))
    return tuple(out)


_PROTOCOLS = {str(p): p for p in Protocol}
# Configs parsed lately, by their text: one operation reads its container
# several times, and a 1,000-port config takes milliseconds to parse. The
# values are frozen, so they can be shared; a few are kept, whatever their size.
_CONFIGS: OrderedDict[str, ContainerConfig] = OrderedDict()
_CONFIGS_KEPT = 8
_configs_lock = threading.Lock()


def protocol_of(text: str) -> Protocol:
    return _PROTOCOLS.get(text) or Protocol(text)


def config_from_json(text: str) -> ContainerConfig:
    with _configs_lock:
        cfg = _CONFIGS.get(text)
        if cfg is not None:
            _CONFIGS.move_to_end(text)
            return cfg
    cfg = parse_config(text)
    _remember(text, cfg)
    return cfg


def _remember(text: str, cfg: ContainerConfig) -> None:
    with _configs_lock:
        _CONFIGS[text] = cfg
        _CONFIGS.move_to_end(text)
        while len(_CONFIGS) > _CONFIGS_KEPT:
            _CONFIGS.popitem(last=False)


def parse_config(text: str) -> ContainerConfig:
    """The config a text holds, parsed afresh (config_from_json reads through the cache)."""
    d = json.loads(text)
    return ContainerConfig(
        cmd=tuple(d["cmd"]),
        env=tuple(d["env"]),
        workdir=d["workdir"],
        hostname=d["hostname"],
        auto_remove=d["auto_remove"],
        network_mode=NetworkMode.parse(d["network_mode"]),
        ports=_port_requests(d["ports"]),
        ip=addr_or_none(d["ip"]),
        ip6=addr6_or_none(d.get("ip6")),
        detach=d.get("detach", False),
        aliases=tuple(d.get("aliases", ())),
        dns=tuple(ipaddress.ip_address(x) for x in d.get("dns", ())),
        dns_search=tuple(d.get("dns_search", ())),
        dns_options=tuple(d.get("dns_options", ())),
        # Rows written before confinement have none of these: Docker's defaults.
        user=d.get("user", ""),
        group_add=tuple(d.get("group_add", ())),
        cap_add=tuple(d.get("cap_add", ())),
        cap_drop=tuple(d.get("cap_drop", ())),
        privileged=d.get("privileged", False),
        no_new_privileges=d.get("no_new_privileges", False),
        init=d.get("init", False),
        pids_limit=int(d.get("pids_limit", 0)),
        # Rows written before issue 13's fields: Docker's defaults.
        image=d.get("image_name", ""),
        image_id=d.get("image", ""),
        labels=tuple((k, v) for k, v in d.get("labels", ())),
        mounts=tuple(BindMount(src, dst, bool(ro)) for src, dst, ro in d.get("mounts", ())),
        extra_hosts=tuple((k, v) for k, v in d.get("extra_hosts", ())),
        sysctls=tuple((k, v) for k, v in d.get("sysctls", ())),
        restart=RestartPolicy(
            RestartName(d.get("restart", ["no", 0])[0]), int(d.get("restart", ["no", 0])[1])
        ),
        networks=tuple(
            # Rows from before IPv6 have four fields.
            EndpointRequest(name, addr_or_none(ip), tuple(aliases), mac, addr6_or_none(ip6[0] if ip6 else ""))
            for name, ip, aliases, mac, *ip6 in d.get("networks", ())
        ),
        mac=d.get("mac", ""),
        stop_signal=d.get("stop_signal", ""),
        stop_timeout=d.get("stop_timeout"),
        network_left=d.get("network_left", False),
        tty=d.get("tty", False),
        open_stdin=d.get("open_stdin", False),
        stdin_once=d.get("stdin_once", False),
        console_size=(int(d.get("console_size", (0, 0))[0]), int(d.get("console_size", (0, 0))[1])),
    )
