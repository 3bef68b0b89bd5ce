"""Endpoints: a container's interface on a network, with its address (UNIQUE per network)."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from typing import Any

from dockyard.errors import Conflict
from dockyard.model import Endpoint, EndpointOwner, OwnerKind
from dockyard.store.configs import addr6_or_none, addr_or_none, text_or_none
from dockyard.store.database import Database


class EndpointRecords(Database):
    # -- endpoints -------------------------------------------------------

    _EP_COLS = (
        "id, container_id, network_id, ifname, address, prefixlen, gateway, mac, host_ifname, aliases,"
        " owner_kind, address6, prefixlen6, gateway6"
    )

    def _endpoint(self, row: sqlite3.Row | tuple[Any, ...]) -> Endpoint:
        return Endpoint(
            id=row[0],
            owner=EndpointOwner(OwnerKind(row[10]), row[1]),
            network_id=row[2],
            ifname=row[3],
            address=ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(row[4])}/{row[5]}")
            if row[4] is not None
            else None,
            gateway=addr_or_none(row[6]),
            mac=row[7],
            host_ifname=row[8],
            aliases=tuple(json.loads(row[9])),
            address6=ipaddress.IPv6Interface(f"{row[11]}/{row[12]}") if row[11] else None,
            gateway6=addr6_or_none(row[13]),
        )

    def add_endpoint(self, e: Endpoint) -> None:
        try:
            self._q(
                f"INSERT INTO endpoints({self._EP_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    e.id,
                    e.owner.key,
                    e.network_id,
                    e.ifname,
                    int(e.address.ip) if e.address is not None else None,
                    e.address.network.prefixlen if e.address is not None else None,
                    str(e.gateway or "") or None,
                    e.mac,
                    e.host_ifname,
                    json.dumps(list(e.aliases)),
                    str(e.owner.kind),
                    text_or_none(e.address6.ip if e.address6 else None),
                    e.address6.network.prefixlen if e.address6 else None,
                    text_or_none(e.gateway6),
                ),
            )
        except Conflict:
            if e.address6 is not None and self.address6_used(e.network_id, e.address6.ip):
                raise Conflict(f"address {e.address6.ip} is already in use") from None
            if e.address is not None:
                raise Conflict(f"address {e.address.ip} is already in use") from None
            raise

    def endpoints(
        self, container_id: str | None = None, network_id: str | None = None, state: str | None = "active"
    ) -> list[Endpoint]:
        where, args = [], []
        if container_id is not None:
            where.append("container_id=?")
            args.append(container_id)
        if network_id is not None:
            where.append("network_id=?")
            args.append(network_id)
        if state is not None:
            where.append("state=?")
            args.append(state)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._q(f"SELECT {self._EP_COLS} FROM endpoints {clause} ORDER BY rowid", tuple(args))
        return [self._endpoint(r) for r in rows]

    def address_used(self, network_id: str, address: ipaddress.IPv4Address) -> bool:
        return bool(
            self._q("SELECT 1 FROM endpoints WHERE network_id=? AND address=?", (network_id, int(address)))
        )

    def address6_used(self, network_id: str, address: ipaddress.IPv6Address) -> bool:
        return bool(
            self._q("SELECT 1 FROM endpoints WHERE network_id=? AND address6=?", (network_id, str(address)))
        )

    def set_endpoint_state(self, endpoint_id: str, state: str) -> None:
        self._q("UPDATE endpoints SET state=? WHERE id=?", (state, endpoint_id))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._q("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    def endpoint_count(self, network_id: str) -> int:
        """Endpoints of a network in any state; one row read, whatever their number."""
        rows = self._q("SELECT n FROM endpoint_counts WHERE network_id=?", (network_id,))
        return int(rows[0][0]) if rows else 0

    def set_endpoint_mac(self, endpoint_id: str, mac: str) -> None:
        """A MAC the runtime asked for (CNI's `mac` capability) instead of the derived one."""
        self._q("UPDATE endpoints SET mac=? WHERE id=?", (mac, endpoint_id))
