"""The one client of etcd: its v3 JSON gateway (HTTP/1.1, base64 keys), on the stdlib.

Why not etcd3gw: its watch dies silently when its member dies, it knows one
endpoint, and it brings requests, futurist and pbr along; what dockyard needs
is a dozen calls, several endpoints with failover, a socket timeout it
controls (to see a dead member) and sockets it can make in a given network
namespace (tests). http.client does the unary calls; stream.py the watch.

Failover: a request goes to the member that last answered; on a connection
error, a timeout or an etcd "unavailable" answer (no leader, leader changed,
request timed out) it goes to the next one, round and round with a short
backoff until the config's deadline, then ClusterUnavailable names every
endpoint tried and why. A request may therefore be applied twice (sent,
applied, the answer lost): every write dockyard makes is idempotent or
checks, on failure, whether its own earlier attempt is what is there.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence

from dockyard.cluster.config import StoreConfig
from dockyard.cluster.wire import (
    KV,
    Compare,
    Delete,
    Op,
    Put,
    RangeResult,
    TxnResult,
    b64,
    prefix_end,
)
from dockyard.errors import ClusterUnavailable, DockyardError

# How a socket to (host, port) is made; tests give one that makes it in a host's namespace.
Dial = Callable[[tuple[str, int], "float | None"], socket.socket]

# gRPC codes etcd answers with, through the gateway.
UNAVAILABLE = 14
RESOURCE_EXHAUSTED = 8  # "too many requests"
OUT_OF_RANGE = 11  # "required revision has been compacted"
UNAUTHENTICATED = 16  # "invalid auth token": ours expired, or another member's


class EtcdError(DockyardError):
    """etcd refused a request (not a member down: that is retried, then ClusterUnavailable)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"the cluster store refused a request: {message}")
        self.code = code
        self.reason = message


class Compacted(EtcdError):
    """The revision asked for is older than the last compaction."""


class _Retry(Exception):
    """This member cannot answer now; the next one may."""


# -- the client ----------------------------------------------------------------------------


class _Conn(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: float, dial: Dial) -> None:
        super().__init__(host, port, timeout=timeout)
        self._dial = dial

    def connect(self) -> None:
        self.sock = self._dial((self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TLSConn(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, timeout: float, dial: Dial, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._dial = dial
        self._tls = context

    def connect(self) -> None:
        raw = self._dial((self.host, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _default_dial(address: tuple[str, int], timeout: float | None) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


class EtcdClient:
    """Thread-safe: connections are pooled per member, one request per connection at a time."""

    def __init__(self, config: StoreConfig, dial: Dial | None = None) -> None:
        self.config = config
        self.dial: Dial = dial or _default_dial
        self._tls = _tls_context(config) if config.tls else None
        self._lock = threading.Lock()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {
            i: [] for i in range(len(config.endpoints))
        }
        self._tokens: dict[int, str] = {}
        self._preferred = 0

    # -- endpoints -------------------------------------------------------------------------

    def name(self, index: int) -> str:
        host, port = self.config.endpoints[index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def order(self, start: int | None = None) -> list[int]:
        """Every member's index, starting with the one that answered last (or start)."""
        first = self._preferred if start is None else start
        n = len(self.config.endpoints)
        return [(first + k) % n for k in range(n)]

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            for idle in self._idle.values():
                idle.clear()
        for c in conns:
            c.close()

    # -- the call, with failover ---------------------------------------------------------

    def call(self, path: str, body: dict, *, only: int | None = None, timeout: float | None = None) -> dict:
        """POST body to path on a member that answers; the answer's JSON.

        only: that member alone, one attempt (the watch asks its own member).
        """
        if only is not None:
            try:
                return self._attempt(only, path, body, timeout or self.config.attempt_timeout)
            except _Retry as e:
                raise ClusterUnavailable(f"cluster store unreachable: {self.name(only)} ({e})") from None
        total = timeout or self.config.deadline
        deadline = time.monotonic() + total
        # One member that hangs must not eat the whole deadline: each gets its share at most.
        attempt = min(self.config.attempt_timeout, max(total / len(self.config.endpoints), 0.2))
        tried: dict[str, str] = {}
        pause = 0.05
        while True:
            for index in self.order():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    answer = self._attempt(index, path, body, min(attempt, left))
                except _Retry as e:
                    tried[self.name(index)] = str(e)
                    continue
                self._preferred = index
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                reasons = ", ".join(f"{name} ({why})" for name, why in tried.items())
                raise ClusterUnavailable(f"cluster store unreachable: {reasons or self.config.describe()}")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    def _attempt(self, index: int, path: str, body: dict, timeout: float) -> dict:
        payload = json.dumps(body).encode()
        for fresh in (False, True):
            conn, reused = self._take(index, timeout, fresh)
            try:
                headers = {"Content-Type": "application/json"}
                token = self._token(index, timeout)
                if token:
                    headers["Authorization"] = token
                conn.request("POST", path, payload, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and not isinstance(e, TimeoutError):
                    continue  # a kept-alive connection the member had closed: once more, afresh
                raise _Retry(_why(e)) from None
            self._give(index, conn)
            if resp.status == 200:
                return json.loads(data or b"{}")
            code, message = _error(data, resp.status)
            if code == UNAUTHENTICATED and self.config.username:
                with self._lock:
                    self._tokens.pop(index, None)
                if not fresh:
                    continue
            if code in (UNAVAILABLE, RESOURCE_EXHAUSTED, UNAUTHENTICATED):
                raise _Retry(message)
            if code == OUT_OF_RANGE and "compacted" in message:
                raise Compacted(code, message)
            raise EtcdError(code, message)
        raise _Retry("no answer")

    def _take(self, index: int, timeout: float, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._lock:
                idle = self._idle[index]
                conn = idle.pop() if idle else None
            if conn is not None:
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn, True
        host, port = self.config.endpoints[index]
        if self._tls is not None:
            return _TLSConn(host, port, timeout, self.dial, self._tls), False
        return _Conn(host, port, timeout, self.dial), False

    def _give(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[index]
            if len(idle) < 8:
                idle.append(conn)
                return
        conn.close()

    def _token(self, index: int, timeout: float) -> str | None:
        """etcd's auth token for this member (a simple token is only valid where it was issued)."""
        if not self.config.username:
            return None
        with self._lock:
            token = self._tokens.get(index)
        if token:
            return token
        host, port = self.config.endpoints[index]
        conn = (
            _TLSConn(host, port, timeout, self.dial, self._tls)
            if self._tls is not None
            else _Conn(host, port, timeout, self.dial)
        )
        try:
            body = json.dumps({"name": self.config.username, "password": self.config.password or ""})
            conn.request("POST", "/v3/auth/authenticate", body.encode(), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            code, message = _error(data, resp.status)
            if code in (UNAVAILABLE, RESOURCE_EXHAUSTED):
                raise _Retry(message)
            raise ClusterUnavailable(
                f"cluster store {self.name(index)} refused user {self.config.username!r}: {message}"
            )
        token = json.loads(data)["token"]
        with self._lock:
            self._tokens[index] = token
        return token

    # -- what the watch needs of the transport ----------------------------------------------

    def forget_token(self, index: int) -> None:
        """The member refused our token (it expired, or the member restarted): get a new one."""
        with self._lock:
            self._tokens.pop(index, None)

    def connect_raw(self, index: int, timeout: float) -> tuple[socket.socket, dict[str, str]]:
        """A socket to one member (TLS-wrapped when configured) and the headers a request needs."""
        host, port = self.config.endpoints[index]
        headers = {"Host": f"{host}:{port}"}
        try:
            token = self._token(index, timeout)
        except (_Retry, http.client.HTTPException) as e:
            raise ConnectionError(f"cannot authenticate: {e}") from None
        if token:
            headers["Authorization"] = token
        sock = self.dial((host, port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=host)
        return sock, headers

    # -- the calls -------------------------------------------------------------------------------

    def range(
        self,
        key: str,
        range_end: str | None = None,
        *,
        revision: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        limit: int = 0,
        min_mod_revision: int = 0,
        sort_by_mod: bool = False,
        only: int | None = None,
        timeout: float | None = None,
    ) -> RangeResult:
        body: dict = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if count_only:
            body["count_only"] = True
        if keys_only:
            body["keys_only"] = True
        if limit:
            body["limit"] = str(limit)
        if min_mod_revision:
            body["min_mod_revision"] = str(min_mod_revision)
        if sort_by_mod:
            body["sort_target"] = "MOD"
            body["sort_order"] = "ASCEND"
        d = self.call("/v3/kv/range", body, only=only, timeout=timeout)
        return RangeResult(
            revision=_revision(d),
            kvs=[KV.wire(kv) for kv in d.get("kvs", [])],
            count=int(d.get("count", 0)),
            more=bool(d.get("more", False)),
        )

    def prefix(self, prefix: str, *, revision: int = 0) -> RangeResult:
        return self.range(prefix, prefix_end(prefix), revision=revision)

    def get(self, key: str) -> KV | None:
        kvs = self.range(key).kvs
        return kvs[0] if kvs else None

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        return _revision(self.call("/v3/kv/put", Put(key, value, lease).wire()["request_put"]))

    def delete(self, key: str, range_end: str | None = None) -> int:
        """Delete key (or the range); the number of keys deleted."""
        d = self.call("/v3/kv/deleterange", Delete(key, range_end).wire()["request_delete_range"])
        return int(d.get("deleted", 0))

    def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        d = self.call(
            "/v3/kv/txn",
            {
                "compare": [c.wire() for c in compare],
                "success": [op.wire() for op in success],
                "failure": [op.wire() for op in failure],
            },
        )
        ranges = [
            [KV.wire(kv) for kv in r["response_range"].get("kvs", [])]
            for r in d.get("responses", [])
            if "response_range" in r
        ]
        return TxnResult(bool(d.get("succeeded", False)), _revision(d), ranges)

    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        d = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if d.get("error"):
            raise EtcdError(0, d["error"])
        return int(d["ID"]), int(d.get("TTL", ttl))

    def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Refresh a lease; its TTL now, 0 when it has expired (or never was)."""
        d = self.call("/v3/lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int(d.get("result", d).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        with contextlib.suppress(EtcdError):  # already gone: what revoke wants
            self.call("/v3/lease/revoke", {"ID": str(lease)})

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})


def _revision(d: dict) -> int:
    return int(d.get("header", {}).get("revision", 0))


def _error(data: bytes, status: int) -> tuple[int, str]:
    try:
        d = json.loads(data)
    except ValueError:
        text = data[:120].decode("utf-8", "replace").strip()
        return UNAVAILABLE if status >= 500 else 0, f"HTTP {status}" + (f": {text}" if text else "")
    if isinstance(d.get("error"), dict):  # a stream's error shape
        d = d["error"]
        return int(d.get("grpc_code", 0)), str(d.get("message", status))
    return int(d.get("code", 0)), str(d.get("message") or d.get("error") or f"HTTP {status}")


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _tls_context(config: StoreConfig) -> ssl.SSLContext:
    assert config.tls is not None
    try:
        ctx = ssl.create_default_context(cafile=str(config.tls.ca) if config.tls.ca else None)
        if config.tls.cert:
            ctx.load_cert_chain(str(config.tls.cert), str(config.tls.key) if config.tls.key else None)
    except (OSError, ssl.SSLError) as e:
        raise DockyardError(f"cannot load the cluster store's TLS files: {e}") from None
    return ctx
