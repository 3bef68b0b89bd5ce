"""All of dockyard's SQL: the state database under $ROOT.

The database is the intent; the kernel is made to match it. An operation
records what it is about to do (a container, an endpoint with its address,
its host ports) in one transaction before the kernel work, so that after a
crash the records say what may exist in the kernel and gc can finish or
undo it. UNIQUE constraints make double-booking of names, addresses and
host ports impossible even if two requests race.

One connection, WAL mode, used under a lock; every statement is short.

The package splits it by table; Store is all of them on one connection.
"""

from __future__ import annotations

from dockyard.store.attachments import AttachmentRecords
from dockyard.store.configs import config_from_json, config_to_json
from dockyard.store.containers import ContainerRecords
from dockyard.store.database import Database, now
from dockyard.store.dns_lookups import DnsLookups
from dockyard.store.docker_ipam import DockerIpamRecords
from dockyard.store.endpoints import EndpointRecords
from dockyard.store.images import ImageRecords
from dockyard.store.networks import NetworkRecords
from dockyard.store.ports import PortRecords
from dockyard.store.remote_endpoints import RemoteEndpoint, RemoteEndpointRecords
from dockyard.store.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "RemoteEndpoint",
    "Store",
    "config_from_json",
    "config_to_json",
    "now",
]


class Store(
    DnsLookups,
    NetworkRecords,
    ContainerRecords,
    EndpointRecords,
    PortRecords,
    AttachmentRecords,
    DockerIpamRecords,
    ImageRecords,
    RemoteEndpointRecords,
):
    """The state database: every table's records, on one connection under one lock."""
