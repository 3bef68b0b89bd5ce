"""All of dockyard's SQL: the state database under $ROOT.

The database is the intent; the kernel is made to match it. An operation
records what it is about to do (a container, an endpoint with its address,
its host ports) in one transaction before the kernel work, so that after a
crash the records say what may exist in the kernel and gc can finish or
undo it. UNIQUE constraints make double-booking of names, addresses and
host ports impossible even if two requests race.

One connection, WAL mode, used under a lock; every statement is short.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerState,
    DriverName,
    Endpoint,
    Network,
    NetworkMode,
    PortBinding,
    PortRequest,
    Protocol,
)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    subnet TEXT,
    gateway TEXT,
    ip_range TEXT,
    bridge TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    icc INTEGER NOT NULL DEFAULT 1,
    masquerade INTEGER NOT NULL DEFAULT 1,
    mtu INTEGER NOT NULL DEFAULT 1500,
    host_binding TEXT,
    options TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]',
    aux TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    ip_cursor INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS networks_bridge ON networks(bridge) WHERE bridge != '';
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    pid_start INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    netns_owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    address INTEGER NOT NULL,
    prefixlen INTEGER NOT NULL,
    gateway TEXT,
    mac TEXT NOT NULL,
    host_ifname TEXT NOT NULL UNIQUE,
    aliases TEXT NOT NULL DEFAULT '[]',
    -- 'active', or 'releasing': the container is gone, the kernel side not yet.
    state TEXT NOT NULL DEFAULT 'active',
    UNIQUE (network_id, address)
);
CREATE INDEX IF NOT EXISTS endpoints_container ON endpoints(container_id);
-- Endpoints per network (every state), kept by the two triggers: a lease checks
-- its network's count, and COUNT(*) would read the network's whole index each
-- time, pushing the pages the lease needs out of the cache (bench/networks.py).
CREATE TABLE IF NOT EXISTS endpoint_counts (
    network_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS endpoints_counted AFTER INSERT ON endpoints BEGIN
    INSERT INTO endpoint_counts(network_id, n) VALUES (NEW.network_id, 1)
        ON CONFLICT(network_id) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_uncounted AFTER DELETE ON endpoints BEGIN
    UPDATE endpoint_counts SET n = n - 1 WHERE network_id = OLD.network_id;
    DELETE FROM endpoint_counts WHERE network_id = OLD.network_id AND n <= 0;
END;
CREATE TABLE IF NOT EXISTS ports (
    container_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    host_ip TEXT NOT NULL,  -- '' for every address
    host_port INTEGER NOT NULL,
    proto TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (host_ip, host_port, proto)
);
CREATE INDEX IF NOT EXISTS ports_container ON ports(container_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Operations under way: written with the operation's first records, deleted
-- with its last. One left behind means the daemon died in the middle, and
-- gc finishes or undoes that operation.
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    subject TEXT NOT NULL,
    created TEXT NOT NULL
);
-- CNI attachments (attachments.py): one per (network, CNI_CONTAINERID, CNI_IFNAME).
-- Their endpoints and ports are recorded under `owner` (endpoints.container_id).
-- state 'adding' until the kernel work is done: one left after a crash is undone.
CREATE TABLE IF NOT EXISTS attachments (
    owner TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    network TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    netns TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'adding',
    created TEXT NOT NULL,
    UNIQUE (network, container_id, ifname)
);
"""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _net_or_none(text: str | None) -> ipaddress.IPv4Network | None:
    return ipaddress.IPv4Network(text) if text else None


def _addr_or_none(text: str | None) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(text) if text else None


def config_to_json(cfg: ContainerConfig) -> str:
    return json.dumps(
        {
            "cmd": list(cfg.cmd),
            "env": list(cfg.env),
            "workdir": cfg.workdir,
            "hostname": cfg.hostname,
            "auto_remove": cfg.auto_remove,
            "network_mode": str(cfg.network_mode),
            "ports": [
                [p.container_port, str(p.proto), p.host_port, str(p.host_ip or ""), p.host_port_end]
                for p in cfg.ports
            ],
            "ip": str(cfg.ip or ""),
            "detach": cfg.detach,
            "aliases": list(cfg.aliases),
            "dns": [str(x) for x in cfg.dns],
            "dns_search": list(cfg.dns_search),
            "dns_options": list(cfg.dns_options),
        }
    )


_PROTOCOLS = {str(p): p for p in Protocol}
# Configs parsed lately, by their text: one operation reads its container
# several times, and a 1,000-port config takes milliseconds to parse. The
# values are frozen, so they can be shared; a few are kept, whatever their size.
_CONFIGS: OrderedDict[str, ContainerConfig] = OrderedDict()
_CONFIGS_KEPT = 8
_configs_lock = threading.Lock()


def _protocol(text: str) -> Protocol:
    return _PROTOCOLS.get(text) or Protocol(text)


def config_from_json(text: str) -> ContainerConfig:
    with _configs_lock:
        cfg = _CONFIGS.get(text)
        if cfg is not None:
            _CONFIGS.move_to_end(text)
            return cfg
    cfg = _parse_config(text)
    with _configs_lock:
        _CONFIGS[text] = cfg
        while len(_CONFIGS) > _CONFIGS_KEPT:
            _CONFIGS.popitem(last=False)
    return cfg


def _parse_config(text: str) -> ContainerConfig:
    d = json.loads(text)
    return ContainerConfig(
        cmd=tuple(d["cmd"]),
        env=tuple(d["env"]),
        workdir=d["workdir"],
        hostname=d["hostname"],
        auto_remove=d["auto_remove"],
        network_mode=NetworkMode.parse(d["network_mode"]),
        ports=tuple(
            PortRequest(int(c), _protocol(pr), int(h), _addr_or_none(ip), int(end))
            for c, pr, h, ip, end in d["ports"]
        ),
        ip=_addr_or_none(d["ip"]),
        detach=d.get("detach", False),
        aliases=tuple(d.get("aliases", ())),
        dns=tuple(ipaddress.IPv4Address(x) for x in d.get("dns", ())),
        dns_search=tuple(d.get("dns_search", ())),
        dns_options=tuple(d.get("dns_options", ())),
    )


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
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

    def close(self) -> None:
        with self._lock:
            self._db.close()

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

    # -- meta ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._q(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # -- intents ---------------------------------------------------------

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

    # -- networks --------------------------------------------------------

    _NET_COLS = (
        "id, name, driver, subnet, gateway, ip_range, bridge, internal, icc, masquerade, mtu, "
        "host_binding, options, labels, aux, created"
    )

    def _network(self, row: sqlite3.Row | tuple[Any, ...]) -> Network:
        return Network(
            id=row[0],
            name=row[1],
            driver=DriverName(row[2]),
            subnet=_net_or_none(row[3]),
            gateway=_addr_or_none(row[4]),
            ip_range=_net_or_none(row[5]),
            bridge=row[6] or "",
            internal=bool(row[7]),
            icc=bool(row[8]),
            masquerade=bool(row[9]),
            mtu=int(row[10]),
            host_binding=_addr_or_none(row[11]),
            options=tuple(tuple(x) for x in json.loads(row[12])),  # type: ignore[misc]
            labels=tuple(tuple(x) for x in json.loads(row[13])),  # type: ignore[misc]
            aux_addresses=tuple((k, ipaddress.IPv4Address(v)) for k, v in json.loads(row[14])),
            created=row[15],
        )

    def add_network(self, n: Network) -> None:
        try:
            self._q(
                f"INSERT INTO networks({self._NET_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                ),
            )
        except Conflict:
            if self.find_network(n.name):
                raise Conflict(f"network with name {n.name} already exists") from None
            raise Conflict(f"bridge {n.bridge} is already used by another network") from None

    def replace_network(self, n: Network) -> None:
        self._q("DELETE FROM networks WHERE id=?", (n.id,))
        self.add_network(n)

    def find_network(self, ref: str) -> Network | None:
        rows = self._q(f"SELECT {self._NET_COLS} FROM networks WHERE name=? OR id=?", (ref, ref))
        if not rows and len(ref) >= 1:
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
            rows = self._q(f"SELECT {self._CT_COLS} FROM containers WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise Conflict(f"container id prefix {ref!r} is ambiguous; give more characters")
        return self._container(rows[0]) if rows else None

    def get_container(self, ref: str) -> Container:
        c = self.find_container(ref)
        if c is None:
            raise NotFound(f"no such container: {ref} (see 'dockyard ps -a')")
        return c

    def containers(self) -> list[Container]:
        return [
            self._container(r)
            for r in self._q(f"SELECT {self._CT_COLS} FROM containers ORDER BY created DESC")
        ]

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

    def joined_to(self, container_id: str) -> list[Container]:
        rows = self._q(f"SELECT {self._CT_COLS} FROM containers WHERE netns_owner=?", (container_id,))
        return [self._container(r) for r in rows]

    # -- endpoints -------------------------------------------------------

    _EP_COLS = "id, container_id, network_id, ifname, address, prefixlen, gateway, mac, host_ifname, aliases"

    def _endpoint(self, row: sqlite3.Row | tuple[Any, ...]) -> Endpoint:
        return Endpoint(
            id=row[0],
            container_id=row[1],
            network_id=row[2],
            ifname=row[3],
            address=ipaddress.IPv4Interface(f"{ipaddress.IPv4Address(row[4])}/{row[5]}"),
            gateway=_addr_or_none(row[6]),
            mac=row[7],
            host_ifname=row[8],
            aliases=tuple(json.loads(row[9])),
        )

    def add_endpoint(self, e: Endpoint) -> None:
        try:
            self._q(
                f"INSERT INTO endpoints({self._EP_COLS}) VALUES(?,?,?,?,?,?,?,?,?,?)",
                (
                    e.id,
                    e.container_id,
                    e.network_id,
                    e.ifname,
                    int(e.address.ip),
                    e.address.network.prefixlen,
                    str(e.gateway or "") or None,
                    e.mac,
                    e.host_ifname,
                    json.dumps(list(e.aliases)),
                ),
            )
        except Conflict:
            raise Conflict(f"address {e.address.ip} is already in use") from None

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

    def set_endpoint_state(self, endpoint_id: str, state: str) -> None:
        self._q("UPDATE endpoints SET state=? WHERE id=?", (state, endpoint_id))

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._q("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    def endpoint_count(self, network_id: str) -> int:
        """Endpoints of a network in any state; one row read, whatever their number."""
        rows = self._q("SELECT n FROM endpoint_counts WHERE network_id=?", (network_id,))
        return int(rows[0][0]) if rows else 0

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
                    f"Bind for {b.host_ip_text}:{b.host_port}/{b.proto} failed: port is already allocated"
                ) from None

    def ports(self, container_id: str | None = None) -> list[tuple[str, PortBinding]]:
        """(endpoint id, binding) pairs, of one container or of all."""
        sql = "SELECT endpoint_id, host_ip, host_port, proto, container_port FROM ports"
        rows = (
            self._q(sql + " ORDER BY rowid")
            if container_id is None
            else self._q(sql + " WHERE container_id=? ORDER BY rowid", (container_id,))
        )
        return [(r[0], PortBinding(int(r[4]), _protocol(r[3]), int(r[2]), _addr_or_none(r[1]))) for r in rows]

    def delete_ports(self, container_id: str, endpoint_id: str | None = None) -> None:
        if endpoint_id is None:
            self._q("DELETE FROM ports WHERE container_id=?", (container_id,))
        else:
            self._q("DELETE FROM ports WHERE container_id=? AND endpoint_id=?", (container_id, endpoint_id))

    def port_count(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM ports")[0][0])

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

    def set_endpoint_mac(self, endpoint_id: str, mac: str) -> None:
        """A MAC the runtime asked for (CNI's `mac` capability) instead of the derived one."""
        self._q("UPDATE endpoints SET mac=? WHERE id=?", (mac, endpoint_id))

    # -- DNS lookups (dns/answers.py, dns/serving.py) --------------------
    # Read-only queries for the resolver process; each is one short statement so
    # an answer reflects the store as it is at the moment of the query.

    def dns_networks(self) -> list[Network]:
        """Networks that get DNS by name: user-defined bridge networks with a gateway.

        The default `bridge` network has none, as in Docker.
        """
        rows = self._q(
            f"SELECT {self._NET_COLS} FROM networks"
            " WHERE driver=? AND name!='bridge' AND gateway IS NOT NULL ORDER BY created, name",
            (str(DriverName.BRIDGE),),
        )
        return [self._network(r) for r in rows]

    def dns_addresses(self, network_id: str, name: str) -> list[ipaddress.IPv4Address]:
        """Addresses on a network of the containers that `name` designates there.

        A container matches by name, by an alias of its endpoint on that network,
        or by its 12-hex short id (a full id, 64 characters, cannot be one DNS
        label); names and aliases case-insensitively. Only active endpoints count.
        """
        key = name.lower()
        rows = self._q(
            "SELECT e.address FROM endpoints e JOIN containers c ON c.id = e.container_id"
            " WHERE e.network_id=? AND e.state='active' AND ("
            " lower(c.name)=? OR (length(?)=12 AND substr(c.id, 1, 12)=?)"
            " OR EXISTS (SELECT 1 FROM json_each(e.aliases) AS a WHERE lower(a.value)=?))"
            " ORDER BY e.rowid",
            (network_id, key, key, key, key),
        )
        return [ipaddress.IPv4Address(r[0]) for r in rows]

    def dns_networks_of(self, container_id: str) -> list[Network]:
        """The bridge networks (the default one too) where a container has an active endpoint.

        In the order it joined them (eth0's first), the order in which the
        resolver searches their names for it.
        """
        cols = ", ".join(f"n.{col.strip()}" for col in self._NET_COLS.split(","))
        rows = self._q(
            f"SELECT {cols} FROM networks n JOIN endpoints e ON e.network_id = n.id"
            " WHERE e.container_id=? AND e.state='active' AND n.driver=? ORDER BY e.rowid",
            (container_id, str(DriverName.BRIDGE)),
        )
        return [self._network(r) for r in rows]

    def dns_container_at(self, network_id: str, address: ipaddress.IPv4Address) -> Container | None:
        """The container with an active endpoint at `address` on a network, if any."""
        cols = ", ".join(f"c.{col.strip()}" for col in self._CT_COLS.split(","))
        rows = self._q(
            f"SELECT {cols} FROM containers c JOIN endpoints e ON e.container_id = c.id"
            " WHERE e.network_id=? AND e.address=? AND e.state='active'",
            (network_id, int(address)),
        )
        return self._container(rows[0]) if rows else None
