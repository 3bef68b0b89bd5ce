"""Every field of POST /containers/create, decided: honoured, or refused when not at its zero value.

Docker's clients send every field they know, mostly empty (the docker CLI
sends HostConfig's ~70 fields with zeros, -1 for MemorySwappiness): a field
at its zero value is accepted whatever it is; one that asks for something
dockyard does not do is refused with a 400 that names it, never dropped. A
field Docker does not have is refused too when it holds a value.

This module also parses the fields issue 13 added: Image, Labels, Binds and
Mounts of type bind, ExtraHosts, Sysctls (net.*), RestartPolicy, the MAC
address, StopSignal and StopTimeout. Their meaning is the engine's.
NetworkingConfig's endpoints are endpoint_settings.py's (network connect
sends the same object).
"""

from __future__ import annotations

import ipaddress
import re
import signal
from typing import Any

from dockyard.daemon.api.json_types import json_object as _object
from dockyard.daemon.api.json_types import strings as _strings
from dockyard.daemon.api.json_types import text as _text
from dockyard.errors import InvalidArgument
from dockyard.model import (
    BindMount,
    NetworkMode,
    RestartName,
    RestartPolicy,
)
from dockyard.policy import manifests
from dockyard.policy.manifests import Platform

Json = dict[str, Any]

# Fields another part of the API reads (docker.container_config, confinement, the attach
# helper's Tty and streams): listed so that nothing is taken for unknown.
CONFIG_HONOURED = (
    "Hostname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
    "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "WorkingDir", "Entrypoint", "Labels",
    "MacAddress", "StopSignal", "StopTimeout", "HostConfig", "NetworkingConfig",
)  # fmt: skip
# Fields with no effect in dockyard; accepted at their zero value only. Why, in docs/usage.md.
CONFIG_REFUSED = {
    "Domainname": "a domain name",
    "Healthcheck": "health checks",
    "Volumes": "anonymous volumes (use -v /host/path:/path)",
    "NetworkDisabled": "NetworkDisabled (use --network none)",
    "OnBuild": "OnBuild (an image build field)",
    "Shell": "Shell (an image build field)",
    "ArgsEscaped": "ArgsEscaped (Windows only)",
}
HOST_HONOURED = (
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
    "AutoRemove", "ConsoleSize", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
    "ExtraHosts", "GroupAdd", "Privileged", "PublishAllPorts", "SecurityOpt", "Sysctls",
    "PidsLimit", "Mounts", "Init", "Isolation", "Runtime", "IpcMode", "CgroupnsMode",
    "MemorySwappiness", "OomKillDisable",
)  # fmt: skip
HOST_REFUSED = {
    "VolumeDriver": "volume drivers",
    "VolumesFrom": "--volumes-from",
    "Annotations": "annotations",
    "Cgroup": "--cgroup",
    "Links": "--link (use a user network: names resolve there)",
    "OomScoreAdj": "--oom-score-adj",
    "PidMode": "--pid",
    "ReadonlyRootfs": "--read-only",
    "StorageOpt": "--storage-opt",
    "Tmpfs": "--tmpfs",
    "UTSMode": "--uts",
    "UsernsMode": "--userns",
    "ShmSize": "--shm-size",
    "MaskedPaths": "MaskedPaths",
    "ReadonlyPaths": "ReadonlyPaths",
    "CpuShares": "--cpu-shares",
    "Memory": "--memory",
    "NanoCpus": "--cpus",
    "CgroupParent": "--cgroup-parent",
    "BlkioWeight": "--blkio-weight",
    "BlkioWeightDevice": "--blkio-weight-device",
    "BlkioDeviceReadBps": "--device-read-bps",
    "BlkioDeviceWriteBps": "--device-write-bps",
    "BlkioDeviceReadIOps": "--device-read-iops",
    "BlkioDeviceWriteIOps": "--device-write-iops",
    "CpuPeriod": "--cpu-period",
    "CpuQuota": "--cpu-quota",
    "CpuRealtimePeriod": "--cpu-rt-period",
    "CpuRealtimeRuntime": "--cpu-rt-runtime",
    "CpusetCpus": "--cpuset-cpus",
    "CpusetMems": "--cpuset-mems",
    "Devices": "--device",
    "DeviceCgroupRules": "--device-cgroup-rule",
    "DeviceRequests": "--gpus",
    "KernelMemory": "--kernel-memory",
    "KernelMemoryTCP": "kernel TCP memory",
    "MemoryReservation": "--memory-reservation",
    "MemorySwap": "--memory-swap",
    "Ulimits": "--ulimit",
    "CpuCount": "--cpu-count",
    "CpuPercent": "--cpu-percent",
    "IOMaximumIOps": "--io-maxiops",
    "IOMaximumBandwidth": "--io-maxbandwidth",
}


def _zero(value: Any) -> bool:
    # Strict: {"/x": ""} (--tmpfs /x) asks for something; structured defaults are checked by name.
    return value is None or value is False or (type(value) in (str, int, float, list, dict) and not value)


def refuse(where: str, body: Json, honoured: tuple[str, ...], refused: dict[str, str]) -> None:
    """Refuse, by name, each field of body not honoured and not at its zero value."""
    for key, value in body.items():
        if key in honoured or _zero(value):
            continue
        what = refused.get(key)
        if what is None:
            name = key if key.isidentifier() else repr(key)
            raise InvalidArgument(f"{where}{name} is not a field dockyard knows: refused, not ignored")
        raise InvalidArgument(f"{where}{key} is not supported by dockyard: {what}")


def check_all(body: Json, host: Json) -> None:
    """Refuse every field that asks for what dockyard does not do."""
    refuse("", body, CONFIG_HONOURED, CONFIG_REFUSED)
    refuse("HostConfig.", host, HOST_HONOURED, HOST_REFUSED)
    healthcheck = _object(body.get("Healthcheck"), "Healthcheck")
    if healthcheck.get("Test") not in (None, [], ["NONE"]):
        raise InvalidArgument("Healthcheck is not supported by dockyard: health checks")
    log_config = _object(host.get("LogConfig"), "HostConfig.LogConfig")
    if _text(log_config.get("Type"), "LogConfig.Type") not in ("", "json-file", "local"):
        raise InvalidArgument(
            f"HostConfig.LogConfig.Type {log_config['Type']!r} is not supported by dockyard"
        )
    if not _zero(log_config.get("Config")):
        raise InvalidArgument("HostConfig.LogConfig.Config (--log-opt) is not supported by dockyard")
    if _text(host.get("Runtime"), "HostConfig.Runtime") not in ("", "runc"):
        raise InvalidArgument(f"HostConfig.Runtime {host['Runtime']!r} is not supported by dockyard")
    if _text(host.get("Isolation"), "HostConfig.Isolation") not in ("", "default"):
        raise InvalidArgument(f"HostConfig.Isolation {host['Isolation']!r} is not supported by dockyard")
    # Each container has its own IPC and cgroup namespaces' defaults: Docker's private ones.
    if _text(host.get("IpcMode"), "HostConfig.IpcMode") not in ("", "private", "shareable"):
        raise InvalidArgument(f"HostConfig.IpcMode {host['IpcMode']!r} is not supported by dockyard")
    if _text(host.get("CgroupnsMode"), "HostConfig.CgroupnsMode") not in ("", "host"):
        raise InvalidArgument(
            f"HostConfig.CgroupnsMode {host['CgroupnsMode']!r} is not supported by dockyard"
        )
    # docker-py sends null, the docker CLI -1: the kernel's default either way.
    if host.get("MemorySwappiness") not in (None, -1):
        raise InvalidArgument("HostConfig.MemorySwappiness is not supported by dockyard: --memory-swappiness")
    if host.get("OomKillDisable") not in (None, False):
        raise InvalidArgument("HostConfig.OomKillDisable is not supported by dockyard: --oom-kill-disable")


# -- the fields issue 13 honours ---------------------------------------------


def labels(raw: Any, what: str = "Labels") -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in _object(raw, what).items():
        if not key or "\0" in key:
            raise InvalidArgument(f"invalid label {key!r}: a label needs a key")
        out.append((key, _text(value, f"{what} {key!r}")))
    return tuple(sorted(out))


def _container_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid {what} {path!r}: the path in the container must be absolute")
    if any(part == ".." for part in path.split("/")):
        raise InvalidArgument(f"invalid {what} {path!r}: '..' is not allowed")
    normal = re.sub("/+", "/", path).rstrip("/") or "/"
    if normal == "/":
        raise InvalidArgument(f"invalid {what} {path!r}: the container's root cannot be a mount point")
    return normal


def _host_path(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(
            f"invalid {what} {path!r}: named volumes are not supported by dockyard; "
            "give an absolute host path"
        )
    return re.sub("/+", "/", path).rstrip("/") or "/"


def binds(raw_binds: Any, raw_mounts: Any) -> tuple[BindMount, ...]:
    """HostConfig.Binds (-v SRC:DST[:OPTS]) and HostConfig.Mounts of type bind."""
    out: list[BindMount] = []
    for spec in _strings(raw_binds, "HostConfig.Binds"):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise InvalidArgument(f"invalid volume {spec!r}: give /host/path:/container/path[:ro]")
        options = parts[2].split(",") if len(parts) == 3 else []
        read_only = False
        for opt in options:
            if opt in ("ro", "rw"):
                read_only = opt == "ro"
            elif opt in ("z", "Z", "rprivate", "private", "nocopy"):
                continue  # SELinux labels (no SELinux here), the default propagation, a volume flag
            else:
                raise InvalidArgument(f"invalid volume {spec!r}: option {opt!r} is not supported by dockyard")
        out.append(BindMount(_host_path(parts[0], "volume"), _container_path(parts[1], "volume"), read_only))
    mounts = raw_mounts if raw_mounts is not None else []
    if not isinstance(mounts, list):
        raise InvalidArgument("HostConfig.Mounts must be a list")
    for m in mounts:
        m = _object(m, "HostConfig.Mounts entry")
        kind = _text(m.get("Type"), "Mounts Type")
        if kind != "bind":
            raise InvalidArgument(
                f"HostConfig.Mounts of type {kind!r} is not supported by dockyard: only bind mounts"
            )
        for key, value in m.items():
            if key in ("Type", "Source", "Target", "ReadOnly", "Consistency") or _zero(value):
                continue
            if key == "BindOptions" and _object(value, "BindOptions").get("Propagation") in (
                None,
                "",
                "rprivate",
            ):
                continue
            raise InvalidArgument(f"HostConfig.Mounts {key} is not supported by dockyard")
        read_only = m.get("ReadOnly") or False
        if not isinstance(read_only, bool):
            raise InvalidArgument("HostConfig.Mounts ReadOnly must be true or false")
        out.append(
            BindMount(
                _host_path(_text(m.get("Source"), "Mounts Source"), "mount source"),
                _container_path(_text(m.get("Target"), "Mounts Target"), "mount target"),
                read_only,
            )
        )
    targets = [b.target for b in out]
    for t in targets:
        if targets.count(t) > 1:
            raise InvalidArgument(f"duplicate mount point: {t}")
    return tuple(out)


HOST_NAME = re.compile(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.-]*[a-zA-Z0-9_])?\Z")


def extra_hosts(raw: Any) -> tuple[tuple[str, str], ...]:
    """--add-host NAME:IP (Docker also takes NAME=IP); IP may be host-gateway."""
    out = []
    for spec in _strings(raw, "HostConfig.ExtraHosts"):
        sep = "=" if "=" in spec else ":"
        name, _, address = spec.partition(sep)
        if not HOST_NAME.match(name) or len(name) > 255:
            raise InvalidArgument(f"invalid --add-host {spec!r}: expected NAME:IP")
        address = address.strip("[]")
        if address != "host-gateway":
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                raise InvalidArgument(
                    f"invalid --add-host {spec!r}: {address!r} is not an IP address"
                ) from None
        out.append((name, address))
    return tuple(out)


SYSCTL_KEY = re.compile(r"^net\.[a-zA-Z0-9_.\-/]+\Z")


def sysctls(raw: Any, mode: NetworkMode) -> tuple[tuple[str, str], ...]:
    """net.* only, set in the container's network namespace; Docker's other namespaced ones
    (kernel.msg*, fs.mqueue.*) are refused by name."""
    out = []
    for key, value in _object(raw, "HostConfig.Sysctls").items():
        value = _text(value, f"sysctl {key}")
        if not SYSCTL_KEY.match(key) or ".." in key:
            raise InvalidArgument(
                f"sysctl {key!r} is not supported by dockyard: only net.* in the container's netns"
            )
        if "\n" in value or not value:
            raise InvalidArgument(f"invalid value for sysctl {key}: {value!r}")
        out.append((key, value))
    if out and mode.network_name is None:
        raise InvalidArgument(f"--sysctl {out[0][0]}: not allowed with the {mode.kind.value} network mode")
    return tuple(sorted(out))


def restart_policy(raw: Any, auto_remove: bool) -> RestartPolicy:
    policy = _object(raw, "HostConfig.RestartPolicy")
    name = _text(policy.get("Name"), "RestartPolicy.Name") or "no"
    retries = policy.get("MaximumRetryCount") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidArgument("RestartPolicy.MaximumRetryCount must be a whole number, 0 or more")
    try:
        parsed = RestartName(name)
    except ValueError:
        raise InvalidArgument(
            f"invalid restart policy {name!r}: use no, always, unless-stopped or on-failure[:max-retries]"
        ) from None
    if retries and parsed is not RestartName.ON_FAILURE:
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    if auto_remove and parsed is not RestartName.NO:
        raise InvalidArgument("conflicting options: --restart and --rm")
    return RestartPolicy(parsed, retries)


MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")


def mac_address(raw: Any, what: str) -> str:
    text = _text(raw, what)
    if not text:
        return ""
    if not MAC.match(text):
        raise InvalidArgument(f"invalid MAC address {text!r}")
    first = int(text[:2], 16)
    if first & 1:
        raise InvalidArgument(f"invalid MAC address {text!r}: a multicast address")
    return text.lower()


def stop_signal(raw: Any) -> str:
    text = _text(raw, "StopSignal")
    if not text:
        return ""
    if text.isdigit():
        if not 0 < int(text) < signal.NSIG:
            raise InvalidArgument(f"invalid signal: {text}")
        return text
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    if name not in signal.Signals.__members__:
        raise InvalidArgument(f"invalid signal: {text}")
    return name


def console_size(raw: Any, what: str = "HostConfig.ConsoleSize") -> tuple[int, int]:
    """[height, width] of a TTY's window at start (Docker's `[2]uint`); [0, 0] or null: none.

    Accepted without a TTY too, as Docker does: the docker CLI sends its own
    terminal's size whenever it has one, -t or not; there is no window to size then.
    """
    if raw is None:
        return (0, 0)
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 0xFFFF for x in raw)
    ):
        raise InvalidArgument(f"invalid {what} {raw!r}: expected [height, width], each 0 to 65535")
    return (raw[0], raw[1])


def check_platform(text: str, host: Platform) -> None:
    """create's `platform` query (--platform): dockyard runs the host's own platform's images."""
    if not text:
        return
    wanted = manifests.parse_platform(text, host)
    if (wanted.os, wanted.architecture) != (host.os, host.architecture):
        raise InvalidArgument(
            f"platform {text!r} is not supported by dockyard: this host runs {host} images only"
        )


def stop_timeout(raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidArgument("StopTimeout must be a whole number of seconds")
    return raw
