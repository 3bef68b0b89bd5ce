"""The API's socket: accepting, the connection cap, idle timeouts, worker threads.

Why not a thread per connection: a thread and a descriptor per idle client
is how 1,100 idle connections once ended the accept loop (EMFILE raised
out of it) and left every later command waiting. Here one thread, the
acceptor, owns the listening socket and every idle connection (one waiting
for its next request) in one epoll set: an idle connection costs a
descriptor, not a thread. A connection with something to read goes to a
worker thread, which reads the request, serves it (however long: a
foreground run's wait, `wait`, exec) and gives the connection back for
keep-alive. A connection is idle only while it is back with the acceptor:
a request being read, served or answered, or a deferred body being waited
for, is never timed out as idle.

Under pressure:
- At most `max_connections` are open. One more takes the place of the
  oldest idle one (closed; a keep-alive client reconnects); only when
  every open connection is busy is the newcomer answered 503, saying why.
- An idle connection is closed after `idle_timeout` (answers say so in
  `Keep-Alive: timeout=N`). A request that has begun must be whole within
  that time too, and an answer the client takes nothing of for that long
  is dropped.
- accept() failing for want of descriptors or memory (EMFILE, ENFILE,
  ENOBUFS, ENOMEM) lowers the cap below what the process could hold,
  leaving HEADROOM descriptors to the engine (for a minute, then the
  configured cap is tried again), and closes the oldest idle connections
  down to it; with none idle, the acceptor backs off (50 ms, doubling up
  to 1 s) and tries again. It is logged; it never ends the loop.
- A worker thread that cannot be started: that connection is answered 503.

How requests are served (routes, errors as JSON) is the handler's; one
connection's requests are http.py's, and their framing dockyard.wire.http's.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.daemon.api.http import Conn, Handler, Response, error_body, serve
from dockyard.wire.http import response_head

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_IDLE_TIMEOUT = 60.0
MIN_CONNECTIONS = 16
# Descriptors left to the rest of the daemon (database, netlink, namespaces, spawns)
# when accept() found none: the cap goes this far below what was open.
HEADROOM = 64
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0
ACCEPT_BURST = 64  # connections taken per wake-up before the others get a turn
PRESSURE_LOG_EVERY = 10.0  # seconds between two warnings of connections closed or refused
RESTORE_CAP_AFTER = 60.0  # seconds without running out of descriptors before the cap is restored
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def default_max_connections() -> int:
    """Half the descriptors the process may open, at most DEFAULT_MAX_CONNECTIONS."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(DEFAULT_MAX_CONNECTIONS, soft // 2))


@dataclass(frozen=True)
class Limits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT


class UnixHTTPServer:
    def __init__(
        self,
        path: Path,
        handler: Handler,
        error_handler: Callable[[BaseException], Response],
        limits: Limits | None = None,
        after_request: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self.error_handler = error_handler
        # Called by a worker once its request is answered (the daemon gives memory back).
        self.after_request = after_request
        self.limits = limits or Limits(default_max_connections())
        self.cap = self.limits.max_connections
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o177)
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        # The kernel caps it at net.core.somaxconn; a burst waits there while the acceptor works.
        self.sock.listen(socket.SOMAXCONN)
        self.sock.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Connections workers gave back for keep-alive. Appended by workers, taken by the acceptor.
        self._returned: collections.deque[Conn] = collections.deque()
        # Open and busy connections: counted up by the acceptor, down by whoever closes or
        # finishes one. A worker counts its connection out before the last answer goes out,
        # so a client that has it can count on the room it leaves.
        self._counts = threading.Lock()
        self._open = 0
        self._busy = 0
        # The acceptor's alone from here on.
        self._idle: collections.OrderedDict[Conn, float] = collections.OrderedDict()  # -> deadline
        self._resume_at: float | None = None
        self._backoff = BACKOFF_FIRST
        self._short_since: float | None = None
        self._pressure = collections.Counter[str]()
        self._pressure_logged = 0.0
        self._lowered_at = 0.0
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._started = False

    # -- the acceptor ------------------------------------------------------------

    def serve_forever(self) -> None:
        self._started = True
        self._sel.register(self.sock, selectors.EVENT_READ, self._on_listener)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        try:
            while not self._stopping.is_set():
                try:
                    self._round()
                except Exception:  # a bug here must not end the API: say it, go on
                    log.exception("the API's event loop failed a round")
                    time.sleep(0.1)
        finally:
            for conn in list(self._idle):
                self._close(conn)
            with contextlib.suppress(OSError):
                self.sock.close()
            self._sel.close()
            self._done.set()

    def _round(self) -> None:
        for key, _events in self._sel.select(self._next_timeout()):
            if isinstance(key.data, Conn):
                if key.data in self._idle:  # not closed by this round's accepts
                    self._dispatch(key.data)
            else:
                key.data()
        now = time.monotonic()
        while self._idle:
            conn, deadline = next(iter(self._idle.items()))
            if deadline > now:
                break
            self._close(conn)  # its keep-alive time is over: normal, not pressure
        if self._resume_at is not None and now >= self._resume_at and not self._stopping.is_set():
            self._resume_at = None
            self._sel.register(self.sock, selectors.EVENT_READ, self._on_listener)
        self._log_pressure(now)

    def _next_timeout(self) -> float | None:
        times = [d for d in (self._resume_at, next(iter(self._idle.values()), None)) if d is not None]
        if self._pressure:
            times.append(self._pressure_logged + PRESSURE_LOG_EVERY)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _on_listener(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                break
            except OSError as e:
                if self._stopping.is_set():
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if e.errno in OUT_OF_RESOURCES and self._make_room(e):
                    continue
                self._pause(e)
                return
            self._admit(sock)
        if self._short_since is not None:
            log.warning(
                "accepting API connections again after %.1f s; at most %d open now",
                time.monotonic() - self._short_since,
                self.cap,
            )
            self._short_since = None
            self._backoff = BACKOFF_FIRST

    def _make_room(self, e: OSError) -> bool:
        """After accept() found no descriptor: lower the cap, close idle connections; False if none."""
        lowered = max(MIN_CONNECTIONS, self._open - HEADROOM)
        if lowered < self.cap:
            log.warning(
                "cannot accept an API connection: %s with %d open (limit of descriptors %s); "
                "closing idle connections, at most %d open from now on",
                e.strerror,
                self._open,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                lowered,
            )
            self.cap = lowered
        self._lowered_at = time.monotonic()
        freed = False
        while (self._open > self.cap or not freed) and self._evict("closed idle for room"):
            freed = True
        return freed

    def _pause(self, e: OSError) -> None:
        if self._short_since is None:  # said once; the retries of this spell stay silent
            self._short_since = time.monotonic()
            log.warning(
                "cannot accept an API connection: %s (%d open, %d idle); trying again from "
                "%.2f s on, backing off up to %.0f s",
                e.strerror or e,
                self._open,
                len(self._idle),
                self._backoff,
                BACKOFF_MAX,
            )
        self._sel.unregister(self.sock)
        self._resume_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _count_in(self, conn: Conn, busy: bool = False) -> None:
        with self._counts:
            if busy:
                conn.busy = True
                self._busy += 1
            else:
                conn.counted = True
                self._open += 1

    def _count_out(self, conn: Conn, closing: bool) -> None:
        """Out of busy, and of open when it closes; each once, whoever comes first."""
        with self._counts:
            if conn.busy:
                conn.busy = False
                self._busy -= 1
            if closing and conn.counted:
                conn.counted = False
                self._open -= 1

    def _admit(self, sock: socket.socket) -> None:
        conn = Conn(sock)
        self._count_in(conn)
        if self._open > self.cap:
            self._take_returned()  # workers may have just finished with some
        if self._open > self.cap and not self._evict("closed idle at the cap"):
            self._refuse(
                conn,
                f"the daemon is busy: it is serving {self._busy} requests, its limit of open "
                "connections (api-max-connections in daemon.json); try again",
            )
            return
        self._watch(conn)

    def _evict(self, why: str) -> bool:
        """Close the oldest connection that is truly idle, to make room; False when none is.

        One whose request has come meanwhile (the acceptor has not seen it yet)
        is not idle: it goes to a worker instead, and the next one is looked at.
        """
        while self._idle:
            conn = next(iter(self._idle))
            try:
                waiting = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                waiting = False
            except OSError:
                self._close(conn)  # gone already: room all the same
                return True
            if waiting:
                self._dispatch(conn)
                continue
            self._close(conn)
            self._pressure[why] += 1
            return True
        return False

    def _watch(self, conn: Conn) -> None:
        try:
            conn.sock.setblocking(False)
            self._sel.register(conn.sock, selectors.EVENT_READ, conn)
        except (OSError, ValueError):  # closed meanwhile
            self._count_out(conn, closing=True)
            conn.close()
            return
        self._idle[conn] = time.monotonic() + self.limits.idle_timeout

    def _close(self, conn: Conn) -> None:
        if self._idle.pop(conn, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(conn.sock)
        self._count_out(conn, closing=True)
        conn.close()

    def _refuse(self, conn: Conn, message: str) -> None:
        """503 and close; the client reads it even after its send failed (unix sockets keep it)."""
        body = error_body(message, "DaemonUnavailable")
        fields = {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Retry-After": "1",
            "Connection": "close",
        }
        with contextlib.suppress(OSError):
            conn.sock.setblocking(False)
            conn.sock.send(response_head(503, fields) + body)
        self._count_out(conn, closing=True)
        conn.close()
        self._pressure["refused"] += 1

    def _dispatch(self, conn: Conn) -> None:
        """A connection has something to read: a worker takes it (none for a client gone)."""
        try:
            ended = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return
        except OSError:
            ended = True
        if ended:
            self._close(conn)
            return
        del self._idle[conn]
        self._sel.unregister(conn.sock)
        self._count_in(conn, busy=True)
        try:
            threading.Thread(target=self._work, args=(conn,), name="api", daemon=True).start()
        except RuntimeError as e:  # can't start new thread
            self._count_out(conn, closing=False)
            self._refuse(conn, f"the daemon cannot start a thread to serve this request ({e}); try again")

    def _on_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        self._take_returned()
        while self._open > self.cap and self._evict("closed idle at the cap"):
            pass

    def _take_returned(self) -> None:
        while self._returned:
            conn = self._returned.popleft()
            if self._stopping.is_set():
                self._count_out(conn, closing=True)
                conn.close()
            else:
                self._watch(conn)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
            self._wake_w.send(b"\0")

    def _log_pressure(self, now: float) -> None:
        if self.cap < self.limits.max_connections and now - self._lowered_at > RESTORE_CAP_AFTER:
            # Whatever took the descriptors may have let them go: try the configured cap again.
            self.cap = self.limits.max_connections
        if not self._pressure or now < self._pressure_logged + PRESSURE_LOG_EVERY:
            return
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self._pressure.items()))
        log.warning(
            "API connections under pressure: %s (%d open, %d busy, at most %d open)",
            counts,
            self._open,
            self._busy,
            self.cap,
        )
        self._pressure.clear()
        self._pressure_logged = now

    def shutdown(self) -> None:
        self._stopping.set()
        self._wake()
        if self._started:
            self._done.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- a worker ----------------------------------------------------------------

    def _work(self, conn: Conn) -> None:
        kept = False
        try:
            kept = self._serve(conn)
        except (OSError, ValueError, UnicodeError):
            pass  # gone, too slow (TimeoutError), or not HTTP: the connection closes
        except Exception:  # a bug serving one connection must not end its worker
            log.exception("serving an API connection failed")
        finally:
            self._count_out(conn, closing=not kept)
            if kept:
                self._returned.append(conn)
                self._wake()
            else:
                conn.close()
        if self.after_request is not None:
            try:
                self.after_request()
            except Exception:  # the answer went out; what follows it must not end the worker
                log.exception("after an API request")

    def _serve(self, conn: Conn) -> bool:
        return serve(
            conn,
            self.handler,
            self.error_handler,
            self.limits.idle_timeout,
            lambda: self._count_out(conn, closing=True),
        )
