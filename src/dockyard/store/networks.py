"""Networks: their rows, and the cursor of the addresses they hand out."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from typing import Any

from dockyard.errors import Conflict, NotFound
from dockyard.model import (
    DriverName,
    Network,
    SubnetConfig,
)
from dockyard.store.configs import addr6_or_none, addr_or_none, net6_or_none, net_or_none, text_or_none
from dockyard.store.database import Database, now


class NetworkRecords(Database):
    # -- networks --------------------------------------------------------

    _NET_COLS = (
        "id, name, driver, subnet, gateway, ip_range, bridge, internal, icc, masquerade, mtu, "
        "host_binding, options, labels, aux, created, enable_ipv6, subnet6, gateway6, ip_range6, more_subnets"
    )

    def _network(self, row: sqlite3.Row | tuple[Any, ...]) -> Network:
        return Network(
            id=row[0],
            name=row[1],
            driver=DriverName(row[2]),
            subnet=net_or_none(row[3]),
            gateway=addr_or_none(row[4]),
            ip_range=net_or_none(row[5]),
            bridge=row[6] or "",
            internal=bool(row[7]),
            icc=bool(row[8]),
            masquerade=bool(row[9]),
            mtu=int(row[10]),
            host_binding=addr_or_none(row[11]),
            options=tuple(tuple(x) for x in json.loads(row[12])),  # type: ignore[misc]
            labels=tuple(tuple(x) for x in json.loads(row[13])),  # type: ignore[misc]
            aux_addresses=tuple((k, ipaddress.ip_address(v)) for k, v in json.loads(row[14])),
            created=row[15],
            enable_ipv6=bool(row[16]),
            subnet6=net6_or_none(row[17]),
            gateway6=addr6_or_none(row[18]),
            ip_range6=net6_or_none(row[19]),
            more_subnets=tuple(
                SubnetConfig(
                    ipaddress.ip_network(subnet),
                    ipaddress.ip_address(gateway) if gateway else None,
                    ipaddress.ip_network(ip_range) if ip_range else None,
                )
                for subnet, gateway, ip_range in json.loads(row[20])
            ),
        )

    def add_network(self, n: Network) -> None:
        try:
            self._q(
                f"INSERT INTO networks({self._NET_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    n.id,
                    n.name,
                    str(n.driver),
                    str(n.subnet or "") or None,
                    str(n.gateway or "") or None,
                    str(n.ip_range or "") or None,
                    n.bridge,
                    int(n.internal),
                    int(n.icc),
                    int(n.masquerade),
                    n.mtu,
                    str(n.host_binding or "") or None,
                    json.dumps(n.options),
                    json.dumps(n.labels),
                    json.dumps([(k, str(v)) for k, v in n.aux_addresses]),
                    n.created or now(),
                    int(n.enable_ipv6),
                    text_or_none(n.subnet6),
                    text_or_none(n.gateway6),
                    text_or_none(n.ip_range6),
                    json.dumps(
                        [
                            [str(c.subnet), text_or_none(c.gateway), text_or_none(c.ip_range)]
                            for c in n.more_subnets
                        ]
                    ),
                ),
            )
        except Conflict:
            if self.find_network(n.name):
                raise Conflict(f"network with name {n.name} already exists") from None
            raise Conflict(f"bridge {n.bridge} is already used by another network") from None

    def replace_network(self, n: Network) -> None:
        self._q("DELETE FROM networks WHERE id=?", (n.id,))
        self.add_network(n)

    def network_named(self, name: str) -> Network | None:
        """The network of this exact name: a name is taken only by a name, never by an id prefix."""
        rows = self._q(f"SELECT {self._NET_COLS} FROM networks WHERE name=?", (name,))
        return self._network(rows[0]) if rows else None

    def find_network(self, ref: str) -> Network | None:
        """By name or id, then by id prefix (ids are lowercase hex)."""
        rows = self._q(f"SELECT {self._NET_COLS} FROM networks WHERE name=? OR id=?", (ref, ref))
        if not rows and ref and all(ch in "0123456789abcdef" for ch in ref):
            rows = self._q(f"SELECT {self._NET_COLS} FROM networks WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise Conflict(f"network id prefix {ref!r} is ambiguous")
        return self._network(rows[0]) if rows else None

    def get_network(self, ref: str) -> Network:
        n = self.find_network(ref)
        if n is None:
            raise NotFound(f"network {ref} not found (see 'dockyard network ls')")
        return n

    def networks(self) -> list[Network]:
        return [
            self._network(r) for r in self._q(f"SELECT {self._NET_COLS} FROM networks ORDER BY created, name")
        ]

    def delete_network(self, network_id: str) -> None:
        self._q("DELETE FROM networks WHERE id=?", (network_id,))

    def ip_cursor(self, network_id: str) -> ipaddress.IPv4Address | None:
        rows = self._q("SELECT ip_cursor FROM networks WHERE id=?", (network_id,))
        return ipaddress.IPv4Address(rows[0][0]) if rows and rows[0][0] is not None else None

    def set_ip_cursor(self, network_id: str, address: ipaddress.IPv4Address) -> None:
        self._q("UPDATE networks SET ip_cursor=? WHERE id=?", (int(address), network_id))

    def ip6_cursor(self, network_id: str) -> ipaddress.IPv6Address | None:
        rows = self._q("SELECT ip6_cursor FROM networks WHERE id=?", (network_id,))
        return addr6_or_none(rows[0][0]) if rows else None

    def set_ip6_cursor(self, network_id: str, address: ipaddress.IPv6Address) -> None:
        self._q("UPDATE networks SET ip6_cursor=? WHERE id=?", (str(address), network_id))
