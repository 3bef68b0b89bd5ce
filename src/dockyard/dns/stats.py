"""The resolver's counts, for the daemon's metrics: a small JSON file it rewrites.

The resolver is a process of its own; the daemon serves the metrics. The
counts cross over as `$ROOT/dns-stats.json`, rewritten (a temporary file
renamed over it, so a reader never sees half of one) at most once every
FLUSH_EVERY seconds while they change, and once more at exit. The daemon
reads it when it is scraped: its DNS counts lag by up to FLUSH_EVERY, and
start again from 0 when the resolver restarts (a counter reset, which
Prometheus' rate() takes in its stride; `started` says when).

    {"pid": 123, "started": 1733000000.0,
     "queries": [{"network": "front", "protocol": "udp", "outcome": "answered", "count": 4}, ...],
     "forwards": {"answered": 2, "failed": 0}}

Outcomes of a query: answered (from the records, NXDOMAIN and errors
included), forwarded (sent upstream), refused (from outside the network,
or while every worker was busy), dropped (not a query: unparsable, a
response). Forwards: answered by an upstream, or failed (none answered).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
from pathlib import Path

FILE = "dns-stats.json"
FLUSH_EVERY = 1.0


class Stats:
    def __init__(self, root: Path | None) -> None:
        self.path = root / FILE if root is not None else None
        self.started = time.time()
        self._lock = threading.Lock()
        self._queries: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._forwards: collections.Counter[str] = collections.Counter()
        self._dirty = False
        self._flushed = 0.0

    def query(self, network: str, protocol: str, outcome: str) -> None:
        with self._lock:
            self._queries[(network, protocol, outcome)] += 1
            self._dirty = True

    def forward(self, answered: bool) -> None:
        with self._lock:
            self._forwards["answered" if answered else "failed"] += 1
            self._dirty = True

    def due(self) -> float | None:
        """When the next write is due (monotonic), None when nothing changed."""
        return self._flushed + FLUSH_EVERY if self._dirty else None

    def flush(self, now: float | None = None, force: bool = False) -> None:
        now = time.monotonic() if now is None else now
        if self.path is None or not self._dirty or (not force and now < self._flushed + FLUSH_EVERY):
            return
        with self._lock:
            data = {
                "pid": os.getpid(),
                "started": self.started,
                "queries": [
                    {"network": n, "protocol": p, "outcome": o, "count": c}
                    for (n, p, o), c in sorted(self._queries.items())
                ],
                "forwards": {"answered": self._forwards["answered"], "failed": self._forwards["failed"]},
            }
            self._dirty = False
        self._flushed = now
        tmp = self.path.with_name(FILE + ".tmp")
        with contextlib.suppress(OSError):  # counts are worth less than the resolver's loop
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(data).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
