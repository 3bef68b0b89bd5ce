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
    return json.dumps(
        {
            "cmd": list(cfg.cmd),
            "env": list(cfg.env),
            "workdir": cfg.workdir,
            "hostname": cfg.hostname,
            "auto_remove": cfg.auto_remove,
            "network_mode": str(cfg.network_mode),
            "ports": [
                [p.container_port, str(p.proto), p.host_port, str(p.host_ip or ""), p.host_port_end]
                for p in cfg.ports
            ],
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
    cfg = _parse_config(text)
    with _configs_lock:
        _CONFIGS[text] = cfg
        while len(_CONFIGS) > _CONFIGS_KEPT:
            _CONFIGS.popitem(last=False)
    return cfg


def _parse_config(text: str) -> ContainerConfig:
    d = json.loads(text)
    return ContainerConfig(
        cmd=tuple(d["cmd"]),
        env=tuple(d["env"]),
        workdir=d["workdir"],
        hostname=d["hostname"],
        auto_remove=d["auto_remove"],
        network_mode=NetworkMode.parse(d["network_mode"]),
        ports=tuple(
            PortRequest(int(c), protocol_of(pr), int(h), ipaddress.ip_address(ip) if ip else None, int(end))
            for c, pr, h, ip, end in d["ports"]
        ),
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
