"""Docker's IPAM plugin records (engine/docker_plugin.py): the pools and addresses handed to dockerd.

A pool is a subnet Docker asked for (RequestPool), kept until ReleasePool;
an address is one Docker asked for in a pool (RequestAddress), the gateway
among them; both are of either family (`--ipv6`'s pools too). UNIQUE
constraints keep two pools off one subnet and one address from being given
twice.
"""

from __future__ import annotations

import ipaddress

from dockyard.errors import Conflict
from dockyard.store.database import Database, now

AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network
AnyAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class DockerIpamRecords(Database):
    def add_docker_pool(self, pool_id: str, subnet: AnyNet) -> None:
        try:
            self._q(
                "INSERT INTO docker_pools(id, subnet, created) VALUES(?,?,?)", (pool_id, str(subnet), now())
            )
        except Conflict:
            raise Conflict(f"pool {subnet} is already given to Docker") from None

    def docker_pools(self) -> dict[str, AnyNet]:
        rows = self._q("SELECT id, subnet FROM docker_pools ORDER BY rowid")
        return {str(r[0]): ipaddress.ip_network(str(r[1])) for r in rows}

    def delete_docker_pool(self, pool_id: str) -> None:
        self._q("DELETE FROM docker_pool_addresses WHERE pool_id=?", (pool_id,))
        self._q("DELETE FROM docker_pools WHERE id=?", (pool_id,))

    def docker_pool_addresses(self, pool_id: str) -> set[AnyAddr]:
        rows = self._q("SELECT address FROM docker_pool_addresses WHERE pool_id=?", (pool_id,))
        return {ipaddress.ip_address(str(r[0])) for r in rows}

    def add_docker_pool_address(self, pool_id: str, address: AnyAddr) -> None:
        try:
            self._q(
                "INSERT INTO docker_pool_addresses(pool_id, address) VALUES(?,?)", (pool_id, str(address))
            )
        except Conflict:
            raise Conflict(f"address {address} is already in use") from None

    def delete_docker_pool_address(self, pool_id: str, address: AnyAddr) -> None:
        self._q("DELETE FROM docker_pool_addresses WHERE pool_id=? AND address=?", (pool_id, str(address)))
