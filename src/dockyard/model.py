"""dockyard's nouns: frozen dataclasses and enums shared by every layer.

Values here are already parsed (ipaddress objects, enums); parsing from
strings happens at the edges (cli, api, ports, settings). Names are checked
here because every entry point needs the same rule.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

# Docker's rule for container and network names. \Z, not $: "$" also matches
# before a final newline, and "web\n" is no name.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
# What `container:<name|id>` may name: a name, or an id or a prefix of one.
CONTAINER_REF_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
NAME_MAX = 128


class DriverName(enum.StrEnum):
    BRIDGE = "bridge"
    HOST = "host"
    NONE = "null"
    OVERLAY = "overlay"


class Protocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


class BindStatus(enum.StrEnum):
    """What the host answers when a host port is tried (kernel/holds.py asks it)."""

    FREE = "free"
    IN_USE = "in use"  # EADDRINUSE: another socket holds the port
    NOT_LOCAL = "not local"  # EADDRNOTAVAIL: the address is not one of the host's


class ContainerState(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    REMOVING = "removing"


class ModeKind(enum.StrEnum):
    """How a container gets its network: one of Docker's four modes, or a named network."""

    BRIDGE = "bridge"
    NONE = "none"
    HOST = "host"
    CONTAINER = "container"
    NETWORK = "network"


@dataclass(frozen=True)
class NetworkMode:
    kind: ModeKind
    # The target container (CONTAINER) or the network's name (NETWORK).
    target: str = ""

    @classmethod
    def parse(cls, value: str) -> NetworkMode:
        if value in ("", "default", "bridge"):
            return cls(ModeKind.BRIDGE)
        if value == "none":
            return cls(ModeKind.NONE)
        if value == "host":
            return cls(ModeKind.HOST)
        if value.startswith("container:"):
            target = value.split(":", 1)[1]
            if not target:
                raise InvalidArgument(
                    "invalid network mode 'container:': name the container, for example --net container:web"
                )
            if len(target) > NAME_MAX or not CONTAINER_REF_RE.match(target):
                raise InvalidArgument(
                    f"invalid network mode {value!r}: give a container's name or id after 'container:'"
                )
            return cls(ModeKind.CONTAINER, target)
        check_network_name(value)
        return cls(ModeKind.NETWORK, value)

    def __str__(self) -> str:
        if self.kind is ModeKind.CONTAINER:
            return f"container:{self.target}"
        if self.kind is ModeKind.NETWORK:
            return self.target
        return self.kind.value

    @property
    def network_name(self) -> str | None:
        """The network an endpoint is made on, if this mode makes one."""
        if self.kind is ModeKind.BRIDGE:
            return "bridge"
        if self.kind is ModeKind.NETWORK:
            return self.target
        return None


# libnetwork's rule for network names (moby/libnetwork#1560): word characters at both
# ends, spaces, dots and dashes between ("test 01"). Docker's container rule is taken too.
NETWORK_NAME_RE = re.compile(r"^[a-zA-Z0-9_]+[ .a-zA-Z0-9_-]*[a-zA-Z0-9_]+\Z")


def check_network_name(name: str) -> str:
    if (
        isinstance(name, str)
        and len(name) <= NAME_MAX
        and (NETWORK_NAME_RE.match(name) or NAME_RE.match(name))
    ):
        return name
    raise InvalidArgument(
        f"invalid network name {name!r}: use letters, digits, '_', '.', '-' and spaces between them, "
        "at least two characters"
    )


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            "at least two characters"
        )
    return name


# A range makes a thousand PortRequests at create and a thousand PortBindings at
# start. Their __init__ fills the instance's dict in one update instead of a frozen
# dataclass's object.__setattr__ per field: 0.7 against 1.4 ms for 1,000. They
# stay frozen: only assignment is refused, and nothing else is different.


@dataclass(frozen=True, order=True, init=False)
class PortBinding:
    """One published port, resolved: the host port is chosen already."""

    container_port: int
    proto: Protocol
    host_port: int
    # None: every host address of each family the endpoint has (Docker's -p 8080:80);
    # 0.0.0.0: every IPv4 address only, :: every IPv6 address only.
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    def __init__(
        self,
        container_port: int,
        proto: Protocol,
        host_port: int,
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    ) -> None:
        self.__dict__.update(container_port=container_port, proto=proto, host_port=host_port, host_ip=host_ip)

    @property
    def host_ip_text(self) -> str:
        return str(self.host_ip) if self.host_ip else "0.0.0.0"

    @property
    def host_text(self) -> str:
        """Address and port as Docker prints them: an IPv6 address in brackets."""
        if self.host_ip is not None and self.host_ip.version == 6:
            return f"[{self.host_ip}]:{self.host_port}"
        return f"{self.host_ip_text}:{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_text}->{self.container_port}/{self.proto}"


@dataclass(frozen=True, init=False)
class PortRequest:
    """One published port as asked for: host port 0 means 'choose one'."""

    container_port: int
    proto: Protocol
    host_port: int = 0
    host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    # A host range for one container port: any free port from host_port to this.
    host_port_end: int = 0

    def __init__(
        self,
        container_port: int,
        proto: Protocol,
        host_port: int = 0,
        host_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
        host_port_end: int = 0,
    ) -> None:
        self.__dict__.update(
            container_port=container_port,
            proto=proto,
            host_port=host_port,
            host_ip=host_ip,
            host_port_end=host_port_end,
        )


AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AnyAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet of a network with its gateway and range: one entry of Docker's IPAM.Config."""

    subnet: AnyNetwork
    gateway: AnyAddress | None = None
    ip_range: AnyNetwork | None = None


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: DriverName
    # IPv4: subnet is None on an IPv6-only network (--ipv4=false) and on host/none.
    subnet: ipaddress.IPv4Network | None = None
    gateway: ipaddress.IPv4Address | None = None
    ip_range: ipaddress.IPv4Network | None = None
    bridge: str = ""
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    mtu: int = 1500
    host_binding: ipaddress.IPv4Address | None = None
    options: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    aux_addresses: tuple[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address], ...] = ()
    created: str = ""
    # IPv6 (--ipv6): subnet6 and gateway6 are set whenever enable_ipv6 is.
    enable_ipv6: bool = False
    subnet6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    ip_range6: ipaddress.IPv6Network | None = None
    # A family's second and later subnets, in the order given (overlay networks and CNI range
    # sets take several, as Docker's overlay driver and host-local do; a bridge takes one per
    # family, as Docker's). An address comes from the first subnet of its family with room.
    more_subnets: tuple[SubnetConfig, ...] = ()

    def subnet_configs(self, version: int) -> tuple[SubnetConfig, ...]:
        """Every subnet of one family, the first one first."""
        head: tuple[SubnetConfig, ...] = ()
        if version == 4 and self.subnet is not None:
            head = (SubnetConfig(self.subnet, self.gateway, self.ip_range),)
        elif version == 6 and self.subnet6 is not None:
            head = (SubnetConfig(self.subnet6, self.gateway6, self.ip_range6),)
        return head + tuple(p for p in self.more_subnets if p.subnet.version == version)

    def subnets(self) -> tuple[AnyNetwork, ...]:
        """Every subnet of the network, IPv4's first."""
        return tuple(p.subnet for version in (4, 6) for p in self.subnet_configs(version))

    def config_of(self, address: AnyAddress) -> SubnetConfig | None:
        """The subnet an address of this network is in (None: it is in none of them)."""
        return next((p for p in self.subnet_configs(address.version) if address in p.subnet), None)

    @property
    def enable_ipv4(self) -> bool:
        """False on an IPv6-only network (--ipv4=false) and on host/none."""
        return self.subnet is not None

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def builtin(self) -> bool:
        return self.name in ("bridge", "host", "none")

    @property
    def bridged(self) -> bool:
        """Endpoints are veths on a bridge of this host (an overlay network has one per host too)."""
        return self.driver in (DriverName.BRIDGE, DriverName.OVERLAY)

    @property
    def scope(self) -> str:
        return "global" if self.driver is DriverName.OVERLAY else "local"


class OwnerKind(enum.StrEnum):
    """What an endpoint belongs to."""

    CONTAINER = "container"
    # A CNI attachment: a runtime's (network, CNI_CONTAINERID, CNI_IFNAME), not a dockyard container.
    CNI = "cni"


@dataclass(frozen=True)
class EndpointOwner:
    """Whose endpoint: a container (key: its id) or a CNI attachment (key: engine/cni's owner_key).

    The key is what the store files the endpoint and its ports under; the
    kind says which of the two it names, so that a CNI attachment is never
    taken for a container (nor looked up as one).
    """

    kind: OwnerKind
    key: str

    @classmethod
    def container(cls, container_id: str) -> EndpointOwner:
        return cls(OwnerKind.CONTAINER, container_id)

    @classmethod
    def attachment(cls, key: str) -> EndpointOwner:
        return cls(OwnerKind.CNI, key)

    @property
    def container_id(self) -> str | None:
        """The container's id, or None when the owner is not a container."""
        return self.key if self.kind is OwnerKind.CONTAINER else None

    @property
    def short(self) -> str:
        return self.key[:12]


@dataclass(frozen=True)
class Endpoint:
    id: str
    owner: EndpointOwner
    network_id: str
    ifname: str
    address: ipaddress.IPv4Interface | None  # None on an IPv6-only network (--ipv4=false)
    gateway: ipaddress.IPv4Address | None
    mac: str
    host_ifname: str
    aliases: tuple[str, ...] = ()
    # On a network with IPv6: the endpoint's IPv6 address and the network's IPv6 gateway.
    address6: ipaddress.IPv6Interface | None = None
    gateway6: ipaddress.IPv6Address | None = None


class RestartName(enum.StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"


@dataclass(frozen=True)
class RestartPolicy:
    """--restart: what the engine does when the container's process exits."""

    name: RestartName = RestartName.NO
    max_retries: int = 0  # on-failure only; 0: no limit

    def __str__(self) -> str:
        if self.name is RestartName.ON_FAILURE and self.max_retries:
            return f"{self.name}:{self.max_retries}"
        return self.name.value


@dataclass(frozen=True)
class BindMount:
    """-v /host:/container[:ro], or a Mounts entry of type bind."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class EndpointRequest:
    """One more network to join at start (NetworkingConfig beyond the first, or a second --network)."""

    network: str
    ip: ipaddress.IPv4Address | None = None
    aliases: tuple[str, ...] = ()
    mac: str = ""
    ip6: ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class ContainerConfig:
    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""
    hostname: str = ""
    auto_remove: bool = False
    network_mode: NetworkMode = field(default_factory=lambda: NetworkMode(ModeKind.BRIDGE))
    ports: tuple[PortRequest, ...] = ()
    ip: ipaddress.IPv4Address | None = None
    ip6: ipaddress.IPv6Address | None = None  # --ip6
    detach: bool = False
    aliases: tuple[str, ...] = ()
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()  # --dns, either family
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    # Confinement, as Docker's flags give it (policy/security.py checks them).
    user: str = ""  # --user: name|uid[:group|gid]; "" is root
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()  # normalized: CAP_X or ALL
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    init: bool = False
    pids_limit: int = 0  # 0: unlimited
    # What Docker's clients ask beside (issue 13).
    image: str = ""  # the image named at create, as given (no root of its own yet)
    image_id: str = ""  # its id, when the store had it at create (rmi then refuses it)
    labels: tuple[tuple[str, str], ...] = ()
    mounts: tuple[BindMount, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, address or "host-gateway")
    sysctls: tuple[tuple[str, str], ...] = ()  # net.* only, set in the container's netns
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    networks: tuple[EndpointRequest, ...] = ()  # joined at start, after the mode's network
    mac: str = ""  # the first network's endpoint MAC
    stop_signal: str = ""  # "" : SIGTERM
    stop_timeout: int | None = None  # None: the engine's 10 s
    # Its first network (network_mode's) was disconnected while it was not running
    # (Compose does so to connect it again with its aliases): it starts without it.
    network_left: bool = False

    # Stdio, as Docker's -t and -i give it (the shim holds it: kernel/relay.py).
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    # HostConfig.ConsoleSize (height, width): the pty's window size at start; (0, 0) the kernel's.
    console_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class ImageRun:
    """What a create request asked of an image, before the image's defaults apply.

    None for entrypoint or cmd means "not given" (the image's is used); an
    empty tuple means "given, empty", as Docker tells them apart.
    """

    name: str
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    publish_all: bool = False


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    config: ContainerConfig
    state: ContainerState = ContainerState.CREATED
    pid: int = 0
    exit_code: int = 0
    created: str = ""
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    # The container whose network namespace this one joined (container: mode).
    netns_owner: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state is ContainerState.RUNNING


# -- images ----------------------------------------------------------------
#
# An image is its config (whose sha256 is its id), the manifest it came
# with, and its layers, bottom first. Each layer is a blob (as pulled or
# loaded, maybe compressed) and a directory extracted once from it, named
# by its diff id (the sha256 of the uncompressed tar), in overlayfs's form:
# such directories, top first, are an overlay's lowerdirs.


@dataclass(frozen=True)
class ImageConfig:
    """What an image says a container runs with (the `config` of its config JSON)."""

    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ImageLayer:
    diff_id: str  # sha256:... of the uncompressed tar: the extracted directory's name
    blob_digest: str  # sha256:... of the blob as stored (what the manifest names)
    media_type: str
    blob_size: int
    size: int = 0  # bytes of the extracted files


@dataclass(frozen=True)
class Image:
    id: str  # sha256:<hex of the config>
    config: bytes  # the config JSON, byte for byte (its sha256 is the id)
    manifest: bytes  # the manifest it was pulled or loaded with (or one made for it)
    manifest_media_type: str
    layers: tuple[ImageLayer, ...]
    added: str = ""  # when this root got it
    tags: tuple[str, ...] = ()  # normalized: docker.io/library/busybox:latest
    digests: tuple[str, ...] = ()  # normalized: docker.io/library/busybox@sha256:...
    last_tagged: str = ""

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)
