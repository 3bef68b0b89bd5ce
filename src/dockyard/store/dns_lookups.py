"""Read-only lookups for the resolver process (dns/answers.py, dns/serving.py)."""

from __future__ import annotations

import ipaddress

from dockyard.model import (
    Container,
    DriverName,
    Network,
)
from dockyard.store.containers import ContainerRecords
from dockyard.store.networks import NetworkRecords


class DnsLookups(NetworkRecords, ContainerRecords):
    # -- DNS lookups (dns/answers.py, dns/serving.py) --------------------
    # Read-only queries for the resolver process; each is one short statement so
    # an answer reflects the store as it is at the moment of the query.

    def dns_networks(self) -> list[Network]:
        """Networks that get DNS by name: user-defined bridge and overlay networks with a gateway.

        The default `bridge` network has none, as in Docker.
        """
        rows = self._q(
            f"SELECT {self._NET_COLS} FROM networks"
            " WHERE driver IN (?, ?) AND name!='bridge' AND (gateway IS NOT NULL OR gateway6 IS NOT NULL)"
            " ORDER BY created, name",
            (str(DriverName.BRIDGE), str(DriverName.OVERLAY)),
        )
        return [self._network(r) for r in rows]

    def dns_addresses(
        self, network_id: str, name: str
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Addresses on a network of the containers that `name` designates there: their
        IPv4 addresses, then their IPv6 ones (on a network with IPv6).

        A container matches by name, by an alias of its endpoint on that network,
        or by its 12-hex short id (a full id, 64 characters, cannot be one DNS
        label); names and aliases case-insensitively. Only active endpoints count.
        """
        key = name.lower()
        rows = self._q(
            "SELECT e.address, e.address6 FROM endpoints e JOIN containers c ON c.id = e.container_id"
            " WHERE e.network_id=? AND e.state='active' AND ("
            " lower(c.name)=? OR (length(?)=12 AND substr(c.id, 1, 12)=?)"
            " OR EXISTS (SELECT 1 FROM json_each(e.aliases) AS a WHERE lower(a.value)=?))"
            " ORDER BY e.rowid",
            (network_id, key, key, key, key),
        )
        # On an overlay network, other hosts' containers too (the watch's copy), after this host's.
        remote = self._q(
            "SELECT r.address, r.address6 FROM remote_endpoints r WHERE r.network_id=?"
            " AND EXISTS (SELECT 1 FROM json_each(r.names) AS n WHERE n.value=?) ORDER BY r.address",
            (network_id, key),
        )
        found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
            ipaddress.IPv4Address(r[0])
            for r in rows + remote
            if r[0] is not None  # None: IPv6-only
        ]
        return found + [ipaddress.IPv6Address(r[1]) for r in rows + remote if r[1]]

    def dns_networks_of(self, container_id: str) -> list[Network]:
        """The bridge networks (the default one too) where a container has an active endpoint.

        In the order it joined them (eth0's first), the order in which the
        resolver searches their names for it.
        """
        cols = ", ".join(f"n.{col.strip()}" for col in self._NET_COLS.split(","))
        rows = self._q(
            f"SELECT {cols} FROM networks n JOIN endpoints e ON e.network_id = n.id"
            " WHERE e.container_id=? AND e.state='active' AND n.driver IN (?, ?) ORDER BY e.rowid",
            (container_id, str(DriverName.BRIDGE), str(DriverName.OVERLAY)),
        )
        return [self._network(r) for r in rows]

    def dns_container_at(
        self, network_id: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Container | None:
        """The container with an active endpoint at `address` (either family) on a network, if any."""
        cols = ", ".join(f"c.{col.strip()}" for col in self._CT_COLS.split(","))
        column, value = ("address6", str(address)) if address.version == 6 else ("address", int(address))
        rows = self._q(
            f"SELECT {cols} FROM containers c JOIN endpoints e ON e.container_id = c.id"
            f" WHERE e.network_id=? AND e.{column}=? AND e.state='active'",
            (network_id, value),
        )
        return self._container(rows[0]) if rows else None
