"""Containers: their rows, their config and process, and who joins whose namespace."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from dockyard.errors import Conflict, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
)
from dockyard.store.configs import config_from_json, config_to_json
from dockyard.store.database import Database, now


class ContainerRecords(Database):
    # -- containers ------------------------------------------------------

    _CT_COLS = "id, name, config, state, pid, exit_code, created, started_at, finished_at, error, netns_owner"

    def _container(self, row: sqlite3.Row | tuple[Any, ...]) -> Container:
        return Container(
            id=row[0],
            name=row[1],
            config=config_from_json(row[2]),
            state=ContainerState(row[3]),
            pid=int(row[4]),
            exit_code=int(row[5]),
            created=row[6],
            started_at=row[7],
            finished_at=row[8],
            error=row[9],
            netns_owner=row[10],
        )

    def add_container(self, c: Container) -> None:
        try:
            self._q(
                f"INSERT INTO containers({self._CT_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (
                    c.id,
                    c.name,
                    config_to_json(c.config),
                    str(c.state),
                    c.pid,
                    c.exit_code,
                    c.created or now(),
                    c.started_at,
                    c.finished_at,
                    c.error,
                    c.netns_owner,
                ),
            )
        except Conflict:
            raise Conflict(
                f'the container name "/{c.name}" is already in use; remove that container '
                "or choose another name"
            ) from None

    def find_container(self, ref: str) -> Container | None:
        rows = self._q(f"SELECT {self._CT_COLS} FROM containers WHERE id=? OR name=?", (ref, ref))
        if not rows and ref and all(ch in "0123456789abcdef" for ch in ref):
            # A range of the id's index (LIKE would read every row): ids are lowercase hex, below 'g'.
            rows = self._q(
                f"SELECT {self._CT_COLS} FROM containers WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g")
            )
            if len(rows) > 1:
                raise Conflict(f"container id prefix {ref!r} is ambiguous; give more characters")
        return self._container(rows[0]) if rows else None

    def get_container(self, ref: str) -> Container:
        c = self.find_container(ref)
        if c is None:
            raise NotFound(f"no such container: {ref} (see 'dockyard ps -a')")
        return c

    def containers(self) -> list[Container]:
        return list(self.iter_containers())

    def iter_containers(self) -> Iterator[Container]:
        """Every container, newest first, each made when it is taken (the rows are read at
        once): a listing of 1,000 holds one container's objects at a time, not 1,000."""
        for r in self._q(f"SELECT {self._CT_COLS} FROM containers ORDER BY created DESC"):
            yield self._container(r)

    def update_container(self, container_id: str, **fields: Any) -> None:
        allowed = {
            "state",
            "pid",
            "pid_start",
            "exit_code",
            "started_at",
            "finished_at",
            "error",
            "netns_owner",
        }
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k}=?" for k in fields)
        self._q(
            f"UPDATE containers SET {sets} WHERE id=?",
            (*[str(v) if isinstance(v, ContainerState) else v for v in fields.values()], container_id),
        )

    def pid_start(self, container_id: str) -> int:
        rows = self._q("SELECT pid_start FROM containers WHERE id=?", (container_id,))
        return int(rows[0][0]) if rows else 0

    def delete_container(self, container_id: str) -> None:
        self._q("DELETE FROM containers WHERE id=?", (container_id,))
        self._q("DELETE FROM container_restarts WHERE container_id=?", (container_id,))

    def update_config(self, container_id: str, config: ContainerConfig) -> None:
        self._q("UPDATE containers SET config=? WHERE id=?", (config_to_json(config), container_id))

    def rename_container(self, container_id: str, name: str) -> None:
        try:
            self._q("UPDATE containers SET name=? WHERE id=?", (name, container_id))
        except Conflict:
            raise Conflict(
                f'the container name "/{name}" is already in use; remove that container '
                "or choose another name"
            ) from None

    # -- restart bookkeeping (--restart) ---------------------------------

    def restart_state(self, container_id: str) -> tuple[int, bool]:
        """(restarts so far, stopped by a user) of a container; (0, False) when never set."""
        rows = self._q(
            "SELECT count, manually_stopped FROM container_restarts WHERE container_id=?", (container_id,)
        )
        return (int(rows[0][0]), bool(rows[0][1])) if rows else (0, False)

    def set_restart_state(self, container_id: str, count: int, manually_stopped: bool) -> None:
        self._q(
            "INSERT INTO container_restarts(container_id, count, manually_stopped) VALUES(?,?,?)"
            " ON CONFLICT(container_id) DO UPDATE SET count=excluded.count,"
            " manually_stopped=excluded.manually_stopped",
            (container_id, count, int(manually_stopped)),
        )

    def running_processes(self, after: int = 0, limit: int = -1) -> list[tuple[int, str, int, int]]:
        """(rowid, id, pid, pid start) of containers recorded running, by rowid after `after`,
        at most `limit` of them: what the engine's check reads, no config parsed."""
        rows = self._q(
            "SELECT rowid, id, pid, pid_start FROM containers"
            " WHERE rowid > ? AND state = 'running' ORDER BY rowid LIMIT ?",
            (after, limit),
        )
        return [(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows]
