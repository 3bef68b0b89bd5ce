"""A container's log read back (`docker logs`): streams, tail, since/until, timestamps, follow.

The shim writes the log (kernel/logfile.py, Docker's json-file format),
one entry per line of output with its stream and time. Reading follows
Docker's json-file driver: `tail` counts entries from the end of the
whole log, then since/until and the streams asked for select among them;
`follow` goes on with what is written until the container is not running
(its output is whole in the log before its exit is recorded, so the last
read after that misses nothing), the client goes away, or `until` passes.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dockyard.engine.coordination import Changes
from dockyard.kernel import logfile
from dockyard.model import Container
from dockyard.settings import Paths
from dockyard.store import Store

# How often a followed log is looked at for new lines (an exit wakes it at once).
FOLLOW_POLL = 0.1


@dataclass(frozen=True)
class LogQuery:
    stdout: bool = True
    stderr: bool = True
    follow: bool = False
    tail: int | None = None  # None: all
    since_ns: int = 0
    until_ns: int = 0  # 0: no limit
    timestamps: bool = False
    # Docker's `details`: each line after the log driver's extra attributes (key=value,...)
    # and a space; dockyard's json-file log records none (no --log-opt labels/env), so the
    # prefix is the space alone, exactly as Docker prints for a container with none.
    details: bool = False

    def wants(self, entry: logfile.Entry) -> bool:
        if (entry.stream == 1 and not self.stdout) or (entry.stream == 2 and not self.stderr):
            return False
        if self.since_ns and entry.time_ns < self.since_ns:
            return False
        return not (self.until_ns and entry.time_ns > self.until_ns)

    def render(self, entry: logfile.Entry) -> bytes:
        data = b" " + entry.data if self.details else entry.data
        if self.timestamps:
            return logfile.timestamp(entry.time_ns).encode() + b" " + data
        return data


Write = Callable[[int, bytes], None]  # stream number, bytes


class Logs:
    def __init__(self, store: Store, paths: Paths, changes: Changes) -> None:
        self.store = store
        self.paths = paths
        self.changes = changes

    def read(
        self,
        c: Container,
        q: LogQuery,
        write: Write,
        gone: Callable[[], bool] = lambda: False,
        flush: Callable[[], None] = lambda: None,
    ) -> None:
        """Write what the query selects; `flush` after each batch, `gone` ends a follow."""
        reader = logfile.Reader(str(self.paths.container_log(c.id)))
        running = self._running(c)
        first: Iterable[logfile.Entry] = reader.read() if running or q.follow else reader.read_end()
        if q.tail is not None:
            first = collections.deque(first, maxlen=max(q.tail, 0))
        self._send(first, q, write)
        flush()
        if not q.follow:
            return
        while running:
            self.changes.wait(self.changes.generation(), FOLLOW_POLL)
            running = self._running(c)  # before the read: the last read after the exit is whole
            self._send(reader.read() if running else reader.read_end(), q, write)
            flush()
            if gone() or (q.until_ns and time.time_ns() > q.until_ns):
                return

    def _running(self, c: Container) -> bool:
        now = self.store.find_container(c.id)
        return now is not None and now.running and now.started_at == c.started_at

    @staticmethod
    def _send(entries: object, q: LogQuery, write: Write) -> None:
        for entry in entries:  # type: ignore[attr-defined]
            if q.wants(entry):
                write(entry.stream, q.render(entry))
