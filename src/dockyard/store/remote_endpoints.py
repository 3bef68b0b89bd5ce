"""Endpoints of other hosts on overlay networks, as the cluster's watch last saw them.

A copy of the watch's cache (cluster/view.py), kept by the daemon, so that
the resolver process answers names of containers on other hosts from this
host's database, never by asking etcd per query. Only what DNS needs: the
network, the addresses and the names (the container's name, its aliases,
its short id), lower case.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.store.database import Database


@dataclass(frozen=True)
class RemoteEndpoint:
    id: str
    network_id: str
    address: ipaddress.IPv4Address | None  # None on an IPv6-only overlay network
    names: tuple[str, ...]
    address6: ipaddress.IPv6Address | None = None  # on a dual-stack overlay network


class RemoteEndpointRecords(Database):
    def put_remote_endpoint(self, ep: RemoteEndpoint) -> None:
        self._q(
            "INSERT OR REPLACE INTO remote_endpoints(id, network_id, address, names, address6)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                ep.id,
                ep.network_id,
                int(ep.address) if ep.address is not None else None,
                json.dumps(list(ep.names)),
                str(ep.address6) if ep.address6 is not None else None,
            ),
        )

    def delete_remote_endpoint(self, endpoint_id: str) -> None:
        self._q("DELETE FROM remote_endpoints WHERE id=?", (endpoint_id,))

    def replace_remote_endpoints(self, eps: Iterable[RemoteEndpoint]) -> None:
        """The whole copy at once (after a resync), in one transaction."""
        with self.transaction():
            self._q("DELETE FROM remote_endpoints")
            for ep in eps:
                self.put_remote_endpoint(ep)

    def remote_endpoints(self, network_id: str | None = None) -> list[RemoteEndpoint]:
        rows = self._q(
            "SELECT id, network_id, address, names, address6 FROM remote_endpoints"
            + (" WHERE network_id=?" if network_id is not None else "")
            + " ORDER BY address, address6",
            (network_id,) if network_id is not None else (),
        )
        return [
            RemoteEndpoint(
                r[0],
                r[1],
                ipaddress.IPv4Address(r[2]) if r[2] is not None else None,
                tuple(json.loads(r[3])),
                ipaddress.IPv6Address(r[4]) if r[4] else None,
            )
            for r in rows
        ]
