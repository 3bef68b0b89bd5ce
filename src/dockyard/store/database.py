"""The connection to the state database: WAL, one lock, transactions, the schema applied.

The database and its -wal and -shm files are root's alone (0600), also in a
root where an older dockyard (or a hand) made them with looser modes:
SQLite makes the -wal and -shm with the database's mode, and those already
there are restricted before the first read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError
from dockyard.store.schema import (
    COLUMNS_3,
    COLUMNS_5,
    COLUMNS_7,
    ENDPOINTS_TABLE,
    REMOTE_ENDPOINTS_TABLE,
    SCHEMA,
    SCHEMA_VERSION,
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _make_private(path: Path) -> None:
    """Create the database file 0600 (or make it so), never through a link; the same for -wal, -shm."""
    flags = os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    for name, create in ((str(path), True), (f"{path}-wal", False), (f"{path}-shm", False)):
        try:
            fd = os.open(name, flags | (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY), 0o600)
        except FileNotFoundError:
            continue
        except OSError as e:
            why = "a symbolic link, which dockyard does not follow" if e.errno == errno.ELOOP else e.strerror
            raise _unusable_file(path, name, str(why)) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _unusable_file(path, name, "not a regular file")
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _unusable_file(path: Path, name: str, why: str) -> DockyardError:
    what = "" if name == str(path) else f"{name} is "
    return DockyardError(
        f"state database {path} cannot be used ({what}{why}); move it away to start from empty "
        "state (containers and networks recorded in it will be forgotten)"
    )


class Database:
    """The connection, its transactions and the few rows of bookkeeping (meta, intents)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        _make_private(path)
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DockyardError(
                    f"state database {path} was written by a newer dockyard (schema {version}); "
                    "upgrade dockyard"
                )
            uncounted = not self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='endpoint_counts'"
            ).fetchone()
            self._add_owner_kind()
            self._add_columns(COLUMNS_3)
            self._nullable_address("endpoints", ENDPOINTS_TABLE)
            self._add_columns(COLUMNS_5)
            self._nullable_address("remote_endpoints", REMOTE_ENDPOINTS_TABLE)
            self._add_columns(COLUMNS_7)
            self._db.executescript(SCHEMA)
            if uncounted:  # a database from before the counts: count what it holds, once
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM endpoint_counts")
                self._db.execute(
                    "INSERT INTO endpoint_counts(network_id, n)"
                    " SELECT network_id, COUNT(*) FROM endpoints GROUP BY network_id"
                )
                self._db.execute("COMMIT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise DockyardError(
                f"state database {path} cannot be used ({e}); move it away to start "
                "from empty state (containers and networks recorded in it will be forgotten)"
            ) from None
        self._in_tx = threading.local()

    def _add_owner_kind(self) -> None:
        """Schema 1 to 2: endpoints say whether their owner is a container or a CNI attachment.

        Schema 1 filed a CNI attachment's endpoint under its owner key in the
        containers' column; the key ("cni-" and 60 hex digits, engine/cni)
        cannot be a container's id (64 hex digits), and the attachments table
        names every one still recorded: either marks it 'cni'.
        """
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(endpoints)")}
        if not columns or "owner_kind" in columns:
            return  # a new database (SCHEMA makes the column), or one migrated already
        has_attachments = bool(
            self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='attachments'"
            ).fetchone()
        )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE endpoints ADD COLUMN owner_kind TEXT NOT NULL DEFAULT 'container'")
            attached = " OR container_id IN (SELECT owner FROM attachments)" if has_attachments else ""
            self._db.execute(
                f"UPDATE endpoints SET owner_kind='cni' WHERE container_id LIKE 'cni-%'{attached}"
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _add_columns(self, columns: dict[str, tuple[tuple[str, str], ...]]) -> None:
        """Add what a newer schema's tables have and an older database's lack, in one transaction.

        Schema 2 to 3 (IPv6): the new columns' defaults say "no IPv6", which is
        what every network and endpoint of an older database was. Schema 4 to 5:
        other hosts' IPv6 addresses, empty until the next resync of the cluster's copy.
        Schema 6 to 7: no network had a later subnet."""
        missing = []
        for table, wanted in columns.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if not have:
                continue  # a new database: SCHEMA makes the table whole
            missing += [(table, name, decl) for name, decl in wanted if name not in have]
        if not missing:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, name, decl in missing:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _nullable_address(self, table: str, definition: str) -> None:
        """Schema 3 to 4 (endpoints) and 5 to 6 (remote_endpoints): an endpoint of an IPv6-only
        network has no IPv4 address.

        SQLite cannot drop a column's NOT NULL, so the table is rebuilt in one
        transaction: a copy made with the new definition, every row copied,
        the old table dropped (its triggers and indexes with it, without
        firing: the counts stay) and the copy renamed; SCHEMA then makes the
        indexes and triggers again."""
        notnull = {row[1]: row[3] for row in self._db.execute(f"PRAGMA table_info({table})")}
        if not notnull.get("address"):
            return  # a new database (SCHEMA makes the table), or one migrated already
        listed = ", ".join(notnull)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(definition.replace(f"IF NOT EXISTS {table} (", f"{table}_new ("))
            self._db.execute(f"INSERT INTO {table}_new({listed}) SELECT {listed} FROM {table}")
            self._db.execute(f"DROP TABLE {table}")
            self._db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def release_memory(self) -> bool:
        """Free SQLite's cache of the pages no statement holds (PRAGMA shrink_memory): a scan of
        every row (ps -a of 1,000 containers) fills it up to its 2 MB, kept after the scan.
        The pages are read again (from the kernel's page cache) when next needed. Skipped,
        returning False, while another thread uses the connection: never wait for a write."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._db.execute("PRAGMA shrink_memory")
        except sqlite3.Error:
            return False
        finally:
            self._lock.release()
        return True

    # -- plumbing --------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one."""
        with self._lock:
            if getattr(self._in_tx, "active", False):
                yield
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise self._unusable(e) from e
            self._in_tx.active = True
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException as e:
                # Nothing of a failed transaction is kept (a full disk included).
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.IntegrityError):
                    raise self._unusable(e) from e
                raise
            finally:
                self._in_tx.active = False

    def _unusable(self, e: sqlite3.Error) -> DockyardError:
        return DockyardError(
            f"cannot write the state database {self.path}: {e}; the state before this change is kept"
        )

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._db.execute(sql, args)
                return cur.fetchall()
            except sqlite3.IntegrityError as e:
                raise Conflict(str(e)) from e
            except sqlite3.Error as e:
                raise self._unusable(e) from e

    # -- intents ---------------------------------------------------------

    def meta_value(self, key: str, make: str) -> str:
        """The meta row `key`, written as `make` the first time it is asked for (and kept)."""
        with self.transaction():
            self._q("INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)", (key, make))
            return str(self._q("SELECT value FROM meta WHERE key=?", (key,))[0][0])

    def add_intent(self, op: str, subject: str) -> int:
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT INTO intents(op, subject, created) VALUES(?, ?, ?)", (op, subject, now())
                )
            except sqlite3.Error as e:
                raise self._unusable(e) from e
            return int(cur.lastrowid or 0)

    def done_intent(self, intent_id: int) -> None:
        self._q("DELETE FROM intents WHERE id=?", (intent_id,))

    def intents(self) -> list[tuple[int, str, str]]:
        return [(int(r[0]), r[1], r[2]) for r in self._q("SELECT id, op, subject FROM intents ORDER BY id")]
