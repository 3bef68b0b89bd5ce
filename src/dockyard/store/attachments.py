"""CNI attachments (attachments.py): a runtime's container on a network."""

from __future__ import annotations

from dockyard.errors import Conflict
from dockyard.store.database import Database, now


class AttachmentRecords(Database):
    # -- CNI attachments (attachments.py) --------------------------------

    _AT_COLS = "owner, network_id, network, container_id, ifname, netns, state, created"

    def add_attachment(
        self, owner: str, network_id: str, network: str, container_id: str, ifname: str, netns: str
    ) -> None:
        try:
            self._q(
                f"INSERT INTO attachments({self._AT_COLS}) VALUES(?,?,?,?,?,?,'adding',?)",
                (owner, network_id, network, container_id, ifname, netns, now()),
            )
        except Conflict:
            raise Conflict(
                f"container {container_id} already has interface {ifname} on network {network}"
            ) from None

    def attachments(self, network: str | None = None) -> list[tuple[str, ...]]:
        """Rows as (owner, network_id, network, container_id, ifname, netns, state, created)."""
        sql = f"SELECT {self._AT_COLS} FROM attachments"
        rows = (
            self._q(sql + " ORDER BY rowid")
            if network is None
            else self._q(sql + " WHERE network=? ORDER BY rowid", (network,))
        )
        return [tuple(str(x) for x in r) for r in rows]

    def find_attachment(self, owner: str) -> tuple[str, ...] | None:
        rows = self._q(f"SELECT {self._AT_COLS} FROM attachments WHERE owner=?", (owner,))
        return tuple(str(x) for x in rows[0]) if rows else None

    def set_attachment_state(self, owner: str, state: str) -> None:
        self._q("UPDATE attachments SET state=? WHERE owner=?", (state, owner))

    def delete_attachment(self, owner: str) -> None:
        self._q("DELETE FROM attachments WHERE owner=?", (owner,))
