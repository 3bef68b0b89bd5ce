"""How to reach the cluster store: `--cluster-store etcd://host:2379[,host:2379...]`.

Parsed once, at the edge (the daemon's flags and daemon.json), into a frozen
StoreConfig the client takes. TLS is on when a CA or a client certificate is
given (Docker's `kv.cacertfile`, `kv.certfile`, `kv.keyfile`); etcd's
user/password auth when a user name is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import InvalidArgument

SCHEME = "etcd://"
DEFAULT_PORT = 2379


@dataclass(frozen=True)
class TLSFiles:
    ca: Path | None = None  # None: the system's trust store
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class StoreConfig:
    endpoints: tuple[tuple[str, int], ...]
    tls: TLSFiles | None = None
    username: str | None = None
    password: str | None = None
    # One attempt at one member; a member that takes longer is taken as down.
    attempt_timeout: float = 2.0
    # All attempts of one request, across members and elections, before ClusterUnavailable.
    deadline: float = 10.0

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> StoreConfig:
        if not url.startswith(SCHEME):
            raise InvalidArgument(f"invalid cluster store {url!r}: expected etcd://host:port[,host:port...]")
        endpoints = tuple(_endpoint(part, url) for part in url.removeprefix(SCHEME).rstrip("/").split(","))
        if (cert is None) != (key is None):
            raise InvalidArgument("a TLS client certificate needs both its certificate and its key file")
        tls = None
        if ca or cert:
            tls = TLSFiles(Path(ca) if ca else None, Path(cert) if cert else None, Path(key) if key else None)
        if password is not None and not username:
            raise InvalidArgument("a cluster store password needs a user name")
        return cls(endpoints, tls, username or None, password)

    def describe(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.endpoints)


def _endpoint(part: str, url: str) -> tuple[str, int]:
    part = part.strip()
    if not part or "/" in part or "@" in part:
        raise InvalidArgument(f"invalid cluster store {url!r}: bad endpoint {part!r}")
    host, sep, port = part.rpartition(":")
    if not sep:
        return part, DEFAULT_PORT
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid cluster store {url!r}: bad endpoint {part!r}")
    return host, int(port)
