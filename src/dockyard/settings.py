"""Where dockyard keeps things ($ROOT) and the daemon's settings.

Settings come from `$ROOT/daemon.json` with Docker's key names, overridden
by the daemon's flags. Parsing happens here, once; the rest of dockyard
gets typed values. The thin clients use locations.py instead.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import locations
from dockyard.errors import InvalidArgument

DEFAULT_ROOT = locations.DEFAULT_ROOT
DEFAULT_BRIDGE = "dockyard0"
# Docker's default-address-pools: 172.17-31 as /16s, then 192.168/16 as /20s.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/15", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)
IFNAME_MAX = 15
DEFAULT_API_IDLE_TIMEOUT = 60.0
# Where dockerd looks for plugins (Docker's /run/docker/plugins/*.sock).
DEFAULT_DOCKER_PLUGIN_SOCKET = Path("/run/docker/plugins/dockyard.sock")

# Ranges that hold no container's address (RFC 6890): what an address there
# means is fixed elsewhere. A network on loopback would, for one, make its
# resolver bind the host's own 127.0.0.1:53.
SPECIAL_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), 'the "this network" range'),
    (ipaddress.IPv4Network("127.0.0.0/8"), "the loopback range"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "the link-local range"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "the multicast range"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "the reserved range, with the broadcast address 255.255.255.255"),
)


def unusable_because(subnet: ipaddress.IPv4Network) -> str | None:
    """Why a subnet can hold no container's addresses, or None when it can."""
    # CIDR blocks that overlap nest: name the range the subnet lies in, else one it holds.
    for special, what in SPECIAL_RANGES:
        if subnet.subnet_of(special):
            where = "is" if subnet == special else "lies in"
            return f"it {where} {special} ({what}): no container may have an address there"
    for special, what in SPECIAL_RANGES:
        if special.subnet_of(subnet):
            return f"it holds {special} ({what}): no container may have an address there"
    return None


def root_from_env(explicit: str | None = None) -> Path:
    return Path(locations.root_dir(explicit))


@dataclass(frozen=True)
class Paths:
    """Every file and directory under $ROOT, named once."""

    root: Path

    @property
    def socket(self) -> Path:
        return self.root / locations.SOCKET

    @property
    def database(self) -> Path:
        return self.root / "dockyard.db"

    @property
    def daemon_log(self) -> Path:
        return self.root / locations.DAEMON_LOG

    @property
    def daemon_pid(self) -> Path:
        return self.root / locations.DAEMON_PID

    @property
    def daemon_json(self) -> Path:
        return self.root / "daemon.json"

    @property
    def shim_socket(self) -> Path:
        return self.root / "shim.sock"

    @property
    def shim_pid(self) -> Path:
        return self.root / "shim.pid"

    @property
    def netns_dir(self) -> Path:
        return self.root / "netns"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    def sandbox_pin(self, container_id: str) -> Path:
        return self.netns_dir / container_id[:16]

    def container_dir(self, container_id: str) -> Path:
        return self.containers_dir / container_id

    def container_log(self, container_id: str) -> Path:
        return self.container_dir(container_id) / "container.log"

    def exit_file(self, container_id: str) -> Path:
        return self.container_dir(container_id) / "exit"


@dataclass(frozen=True)
class AddressPool:
    base: ipaddress.IPv4Network
    size: int


@dataclass(frozen=True)
class AddressPool6:
    """An IPv6 default address pool: base cut into /size subnets (policy/ipam6.py)."""

    base: ipaddress.IPv6Network
    size: int


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon's configuration, after daemon.json and flags."""

    root: Path
    host_netns: str | None = None
    bridge: str = DEFAULT_BRIDGE
    # Gateway address with prefix, as dockerd's --bip; None: choose a free /16.
    bip: ipaddress.IPv4Interface | None = None
    mtu: int = 1500
    icc: bool = True
    ip_masq: bool = True
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    default_address_pools: tuple[AddressPool, ...] = field(
        default_factory=lambda: tuple(AddressPool(ipaddress.IPv4Network(b), s) for b, s in DEFAULT_POOLS)
    )
    # default-address-pools' IPv6 entries; none: Docker 27's ULA /48 of this daemon (policy/ipam6.py).
    default_address_pools6: tuple[AddressPool6, ...] = ()
    # daemon.json's ipv6 and fixed-cidr-v6: IPv6 on the default bridge.
    ipv6: bool = False
    fixed_cidr_v6: ipaddress.IPv6Network | None = None
    # dockyard's own keys (Docker has none): the API's cap of open connections (None: from
    # the descriptor limit) and how long an idle connection is kept, in seconds.
    api_max_connections: int | None = None
    api_idle_timeout: float = DEFAULT_API_IDLE_TIMEOUT
    # Registries pulled from over plain HTTP when HTTPS fails: host[:port] or a CIDR
    # (Docker's key); loopback ones always are.
    insecure_registries: tuple[str, ...] = ()
    # Overlay networks: etcd://host:port[,host:port...], this host's VTEP (an address or an
    # interface), and Docker's kv.* options (TLS files; dockyard's own kv.username,
    # kv.password, kv.prefix). None: no cluster, and nothing changes.
    cluster_store: str | None = None
    cluster_advertise: str | None = None
    cluster_store_opts: tuple[tuple[str, str], ...] = ()
    # Docker's metrics-addr: where the daemon serves Prometheus metrics over TCP (None: not at all).
    metrics_addr: tuple[str, int] | None = None
    # Docker's network and IPAM plugin (daemon/plugin.py): served when asked, on this socket.
    docker_plugin: bool = False
    docker_plugin_socket: Path = DEFAULT_DOCKER_PLUGIN_SOCKET

    @property
    def paths(self) -> Paths:
        return Paths(self.root)


def parse_bridge_name(value: str, what: str = "bridge") -> str:
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
        raise InvalidArgument(f"invalid {what} name {value!r}: it is not valid UTF-8") from None
    if not value or size > IFNAME_MAX:
        raise InvalidArgument(
            f"invalid {what} name {value!r}: a Linux interface name is 1 to {IFNAME_MAX} bytes"
        )
    # The kernel's dev_valid_name refuses '/', ':' and every isspace() byte
    # (\v, \f and \r too); NUL would cut the name short in netlink; and '%'
    # makes a template: asked for "br%d", the kernel makes "br0".
    if any(c in "/:%\0" or c.isspace() for c in value) or value in (".", ".."):
        raise InvalidArgument(
            f"invalid {what} name {value!r}: it may not contain '/', ':', '%', NUL or white space"
        )
    return value


def parse_bip(value: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise InvalidArgument(
            f"invalid --bip {value!r}: give the bridge's address with a prefix, for example 10.10.0.1/24"
        ) from None
    if "/" not in value:
        raise InvalidArgument(f"invalid --bip {value!r}: the prefix length is missing (e.g. /24)")
    net = iface.network
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid --bip {value!r}: the subnet must be /30 or larger")
    if iface.ip in (net.network_address, net.broadcast_address):
        raise InvalidArgument(
            f"invalid --bip {value!r}: the bridge address cannot be the subnet's network or broadcast address"
        )
    why = unusable_because(net)
    if why is not None:
        raise InvalidArgument(f"invalid --bip {value!r}: {why}")
    return iface


def _pools(raw: object) -> tuple[tuple[AddressPool, ...], tuple[AddressPool6, ...]]:
    """default-address-pools: its IPv4 entries and its IPv6 ones (a base with a colon)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("daemon.json: default-address-pools must be a non-empty list")
    pools = []
    pools6 = []
    for item in raw:
        if not isinstance(item, dict) or "base" not in item or "size" not in item:
            raise InvalidArgument('daemon.json: each default-address-pools entry needs "base" and "size"')
        # Docker's types: base a string, size an integer (not 24.5, "24" or true,
        # and not 1e400, which Python's json reads as an infinite float).
        raw_size = item["size"]
        if not isinstance(item["base"], str) or not isinstance(raw_size, int) or isinstance(raw_size, bool):
            raise InvalidArgument(f"daemon.json: invalid address pool {item!r}")
        if ":" in item["base"]:
            pools6.append(_pool6(item, raw_size))
            continue
        try:
            base = ipaddress.IPv4Network(item["base"])
        except ValueError:
            raise InvalidArgument(f"daemon.json: invalid address pool {item!r}") from None
        size = raw_size
        if not base.prefixlen <= size <= 30:
            raise InvalidArgument(f"daemon.json: pool {base} cannot be cut into /{size} subnets")
        why = unusable_because(base)
        if why is not None:
            raise InvalidArgument(f"daemon.json: invalid address pool {base}: {why}")
        pools.append(AddressPool(base, size))
    return tuple(pools), tuple(pools6)


def _pool6(item: dict[str, object], size: int) -> AddressPool6:
    try:
        base = ipaddress.IPv6Network(str(item["base"]))
    except ValueError:
        raise InvalidArgument(f"daemon.json: invalid address pool {item!r}") from None
    if not base.prefixlen <= size <= 126:
        raise InvalidArgument(f"daemon.json: pool {base} cannot be cut into /{size} subnets")
    if base.is_link_local or base.is_multicast or base.is_loopback or base.prefixlen < 8:
        raise InvalidArgument(
            f"daemon.json: invalid address pool {base}: no container may have an address there"
        )
    return AddressPool6(base, size)


def _ipv6_keys(data: dict[str, object]) -> dict[str, object]:
    """ipv6, fixed-cidr-v6 and ip6tables: the default bridge's IPv6."""
    out: dict[str, object] = {}
    for key in ("ipv6", "ip6tables"):
        if key in data and not isinstance(data[key], bool):
            raise InvalidArgument(f"daemon.json: {key} must be true or false")
    if data.get("ip6tables") is False:
        # Docker's ip6tables=false leaves IPv6 forwarding unfirewalled: dockyard's
        # isolation and publishing are one nftables table for both families.
        raise InvalidArgument('daemon.json: "ip6tables": false is not supported (the firewall covers IPv6)')
    out["ipv6"] = bool(data.get("ipv6", False))
    cidr = data.get("fixed-cidr-v6")
    if cidr is not None:
        try:
            if not isinstance(cidr, str):
                raise ValueError(cidr)
            net = ipaddress.IPv6Network(cidr)
        except ValueError:
            raise InvalidArgument(
                f"daemon.json: invalid fixed-cidr-v6 {cidr!r}: expected an IPv6 CIDR such as 2001:db8:1::/64"
            ) from None
        if net.prefixlen > 126 or net.is_link_local or net.is_multicast or net.is_loopback:
            raise InvalidArgument(
                f"daemon.json: invalid fixed-cidr-v6 {cidr!r}: it holds no container's address"
            )
        out["fixed_cidr_v6"] = net
    return out


def read_daemon_json(path: Path) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{path} is not valid UTF-8: {e.reason} at byte {e.start}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidArgument(f"{path} is not valid JSON: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} must hold a JSON object")
    return data


CLUSTER_STORE_OPTS = ("kv.cacertfile", "kv.certfile", "kv.keyfile", "kv.username", "kv.password", "kv.prefix")


def _cluster(
    data: dict[str, object], store: str | None, advertise: str | None, opts: list[str] | None
) -> dict[str, object]:
    """--cluster-store, --cluster-advertise, --cluster-store-opt (or daemon.json's keys), checked."""
    out: dict[str, object] = {}
    for key, flag in (("cluster-store", store), ("cluster-advertise", advertise)):
        value = flag if flag is not None else data.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidArgument(f"daemon.json: {key} must be a non-empty string")
        out[key.replace("-", "_")] = value
    raw = data.get("cluster-store-opts", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidArgument("daemon.json: cluster-store-opts must be an object of strings")
    pairs = dict(raw)
    for item in opts or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid --cluster-store-opt {item!r}: expected KEY=VALUE")
        pairs[key] = value
    for key in pairs:
        if key not in CLUSTER_STORE_OPTS:
            raise InvalidArgument(
                f"cluster store option {key} is not supported: use {', '.join(CLUSTER_STORE_OPTS)}"
            )
    out["cluster_store_opts"] = tuple(sorted(pairs.items()))
    if out["cluster_store"] and not out["cluster_advertise"]:
        raise InvalidArgument(
            "--cluster-store needs --cluster-advertise ADDRESS|INTERFACE (this host's VTEP)"
        )
    if not out["cluster_store"] and (out["cluster_advertise"] or pairs):
        raise InvalidArgument("--cluster-advertise and --cluster-store-opt need --cluster-store")
    return out


# Every daemon.json key load_settings reads; any other is refused by name, as dockerd does.
KNOWN_KEYS = (
    "bridge", "bip", "mtu", "icc", "ip-masq", "dns", "default-address-pools",
    "insecure-registries", "metrics-addr", "cluster-store", "cluster-advertise",
    "cluster-store-opts", "api-max-connections", "api-idle-timeout", "docker-plugin",
    "docker-plugin-socket", "ipv6", "fixed-cidr-v6", "ip6tables",
)  # fmt: skip


def check_keys(data: dict[str, object]) -> None:
    """dockerd's refusal of a key it does not know (a misspelt one would be dropped silently)."""
    # A key that would break the line (a newline, a control character) is shown quoted.
    unknown = sorted(key if key.isprintable() else repr(key) for key in data if key not in KNOWN_KEYS)
    if unknown:
        raise InvalidArgument(
            "daemon.json: the following directives don't match any configuration option: "
            + ", ".join(unknown)
        )


def load_settings(
    root: Path,
    host_netns: str | None = None,
    bridge: str | None = None,
    bip: str | None = None,
    cluster_store: str | None = None,
    cluster_advertise: str | None = None,
    cluster_store_opts: list[str] | None = None,
    docker_plugin: bool = False,
) -> DaemonSettings:
    """daemon.json under root, then the flags, which win."""
    data = read_daemon_json(Paths(root).daemon_json)
    check_keys(data)
    kwargs: dict[str, object] = {"root": root, "host_netns": host_netns}
    kwargs.update(_cluster(data, cluster_store, cluster_advertise, cluster_store_opts))
    for key in ("bridge", "bip"):
        # A list or a number must not turn into a name such as "['x']" or "True".
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidArgument(f"daemon.json: {key} must be a string")
    bridge_value = bridge if bridge is not None else data.get("bridge")
    if bridge_value is not None:
        kwargs["bridge"] = parse_bridge_name(str(bridge_value))
    bip_value = bip if bip is not None else data.get("bip")
    if bip_value is not None:
        kwargs["bip"] = parse_bip(str(bip_value))
    if "mtu" in data:
        mtu = data["mtu"]
        if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise InvalidArgument("daemon.json: mtu must be an integer from 68 to 65535")
        kwargs["mtu"] = mtu
    for key, attr in (("icc", "icc"), ("ip-masq", "ip_masq")):
        if key in data:
            if not isinstance(data[key], bool):
                raise InvalidArgument(f"daemon.json: {key} must be true or false")
            kwargs[attr] = data[key]
    if "dns" in data:
        raw = data["dns"]
        if not isinstance(raw, list):
            raise InvalidArgument("daemon.json: dns must be a list of IP addresses")
        try:
            kwargs["dns"] = tuple(ipaddress.ip_address(str(x)) for x in raw)
        except ValueError as e:
            raise InvalidArgument(f"daemon.json: dns: {e}") from None
    if "default-address-pools" in data:
        pools, pools6 = _pools(data["default-address-pools"])
        # As Docker: a family without entries keeps its defaults.
        if pools:
            kwargs["default_address_pools"] = pools
        kwargs["default_address_pools6"] = pools6
    kwargs.update(_ipv6_keys(data))
    if "api-max-connections" in data:
        cap = data["api-max-connections"]
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= 1_000_000:
            raise InvalidArgument("daemon.json: api-max-connections must be an integer from 1 to 1000000")
        kwargs["api_max_connections"] = cap
    if "api-idle-timeout" in data:
        idle = data["api-idle-timeout"]
        if not isinstance(idle, (int, float)) or isinstance(idle, bool) or not 0.1 <= idle <= 86400:
            raise InvalidArgument(
                "daemon.json: api-idle-timeout must be a number of seconds from 0.1 to 86400"
            )
        kwargs["api_idle_timeout"] = float(idle)
    if "insecure-registries" in data:
        registries = data["insecure-registries"]
        if not isinstance(registries, list) or not all(isinstance(r, str) and r for r in registries):
            raise InvalidArgument("daemon.json: insecure-registries must be a list of host[:port] or CIDR")
        kwargs["insecure_registries"] = tuple(registries)
    if "metrics-addr" in data:
        kwargs["metrics_addr"] = parse_metrics_addr(data["metrics-addr"])
    if "docker-plugin" in data and not isinstance(data["docker-plugin"], bool):
        raise InvalidArgument("daemon.json: docker-plugin must be true or false")
    kwargs["docker_plugin"] = docker_plugin or bool(data.get("docker-plugin", False))
    if "docker-plugin-socket" in data:
        sock = data["docker-plugin-socket"]
        if not isinstance(sock, str) or not sock.startswith("/") or not sock.endswith(".sock"):
            raise InvalidArgument(
                "daemon.json: docker-plugin-socket must be an absolute path ending in .sock"
            )
        kwargs["docker_plugin_socket"] = Path(sock)
    return DaemonSettings(**kwargs)  # type: ignore[arg-type]


def parse_metrics_addr(raw: object) -> tuple[str, int] | None:
    """daemon.json's metrics-addr: "IP:PORT" (an IPv4 address), or "" for none."""
    if raw == "":
        return None
    if not isinstance(raw, str):
        raise InvalidArgument('daemon.json: metrics-addr must be a string such as "127.0.0.1:9323"')
    host, sep, port = raw.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        number = int(port) if port.isascii() and port.isdigit() else -1
    except ValueError:
        number = -1
    if not sep or not 1 <= number <= 65535:
        raise InvalidArgument(
            f"daemon.json: invalid metrics-addr {raw!r}: give an IPv4 address and a port, "
            'such as "127.0.0.1:9323"'
        )
    return host, number
