"""Published ports: each host IP:port/proto held by one container (UNIQUE)."""

from __future__ import annotations

import ipaddress
import sqlite3

from dockyard.errors import Conflict
from dockyard.model import (
    PortBinding,
    Protocol,
)
from dockyard.store.configs import protocol_of
from dockyard.store.database import Database

HostIp = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host_ip(text: str) -> HostIp | None:
    """A stored host_ip: '' for every address, else an address of either family."""
    return ipaddress.ip_address(text) if text else None


class PortRecords(Database):
    # -- published ports -------------------------------------------------

    _ADD_PORT = (
        "INSERT INTO ports(container_id, endpoint_id, host_ip, host_port, proto, container_port)"
        " VALUES(?,?,?,?,?,?)"
    )

    def add_ports(self, container_id: str, endpoint_id: str, bindings: tuple[PortBinding, ...]) -> None:
        rows = [
            (container_id, endpoint_id, str(b.host_ip or ""), b.host_port, str(b.proto), b.container_port)
            for b in bindings
        ]
        if not rows:
            return
        # All rows in one statement (a 1,000-port range is 1,000 rows); on a
        # conflict, back to where it started, and row by row to name the port.
        with self._lock:
            try:
                self._db.execute("SAVEPOINT add_ports")
                try:
                    self._db.executemany(self._ADD_PORT, rows)
                except BaseException:
                    self._db.execute("ROLLBACK TO add_ports")
                    self._db.execute("RELEASE add_ports")
                    raise
                self._db.execute("RELEASE add_ports")
                return
            except sqlite3.IntegrityError:
                pass
            except sqlite3.Error as e:
                raise self._unusable(e) from e
        for b, row in zip(bindings, rows, strict=True):
            try:
                self._q(self._ADD_PORT, row)
            except Conflict:
                raise Conflict(
                    f"Bind for {b.host_text}/{b.proto} failed: port is already allocated"
                ) from None

    def ports(self, container_id: str | None = None) -> list[tuple[str, PortBinding]]:
        """(endpoint id, binding) pairs, of one container or of all."""
        sql = "SELECT endpoint_id, host_ip, host_port, proto, container_port FROM ports"
        rows = (
            self._q(sql + " ORDER BY rowid")
            if container_id is None
            else self._q(sql + " WHERE container_id=? ORDER BY rowid", (container_id,))
        )
        return [(r[0], PortBinding(int(r[4]), protocol_of(r[3]), int(r[2]), _host_ip(r[1]))) for r in rows]

    def port_holders(self, lo: int, hi: int | None = None) -> dict[tuple[int, Protocol], list[HostIp | None]]:
        """The host addresses publishing each (port, proto) of ports lo to hi (None: every address)."""
        rows = self._q(
            "SELECT host_port, proto, host_ip FROM ports WHERE host_port BETWEEN ? AND ?",
            (lo, lo if hi is None else hi),
        )
        out: dict[tuple[int, Protocol], list[HostIp | None]] = {}
        for r in rows:
            out.setdefault((int(r[0]), protocol_of(r[1])), []).append(_host_ip(r[2]))
        return out

    def delete_ports(self, container_id: str, endpoint_id: str | None = None) -> None:
        if endpoint_id is None:
            self._q("DELETE FROM ports WHERE container_id=?", (container_id,))
        else:
            self._q("DELETE FROM ports WHERE container_id=? AND endpoint_id=?", (container_id, endpoint_id))
