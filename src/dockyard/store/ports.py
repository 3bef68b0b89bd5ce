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


def _values(b: PortBinding) -> tuple[str, int, str, int]:
    """A binding's columns after the owner's: host_ip, host_port, proto, container_port."""
    return str(b.host_ip or ""), b.host_port, str(b.proto), b.container_port


def _runs(bindings: tuple[PortBinding, ...]) -> list[tuple[PortBinding, int]]:
    """The bindings as runs, in order: (first, length) where each next binding is on the
    same address and protocol with its host and container ports one further."""
    runs: list[tuple[PortBinding, int]] = []
    first, count = bindings[0], 1
    for b in bindings[1:]:
        if (
            b.host_port == first.host_port + count
            and b.container_port == first.container_port + count
            and b.proto is first.proto
            and b.host_ip == first.host_ip
        ):
            count += 1
        else:
            runs.append((first, count))
            first, count = b, 1
    runs.append((first, count))
    return runs


class PortRecords(Database):
    # -- published ports -------------------------------------------------

    _ADD_PORT = (
        "INSERT INTO ports(container_id, endpoint_id, host_ip, host_port, proto, container_port)"
        " VALUES(?,?,?,?,?,?)"
    )

    # A run of ports (a range: host and container ports stepping by one together) is
    # one statement, its rows made by SQLite: a 1,000-port range binds 7 values, not 6,000.
    _ADD_RUN = (
        "WITH RECURSIVE run(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM run WHERE i < ?)"
        " INSERT INTO ports(container_id, endpoint_id, host_ip, host_port, proto, container_port)"
        " SELECT ?, ?, ?, ? + i, ?, ? + i FROM run"
    )

    def add_ports(self, container_id: str, endpoint_id: str, bindings: tuple[PortBinding, ...]) -> None:
        if not bindings:
            return
        # All rows in one transaction; on a conflict, back to where it started,
        # and row by row to name the port.
        runs = _runs(bindings)
        with self._lock:
            try:
                self._db.execute("SAVEPOINT add_ports")
                try:
                    for first, count in runs:
                        values = _values(first)
                        if count == 1:
                            self._db.execute(self._ADD_PORT, (container_id, endpoint_id, *values))
                        else:
                            self._db.execute(self._ADD_RUN, (count - 1, container_id, endpoint_id, *values))
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
        for b in bindings:
            try:
                self._q(self._ADD_PORT, (container_id, endpoint_id, *_values(b)))
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
