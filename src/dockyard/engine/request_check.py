"""The cheap part of reconciliation, run with API requests: RequestCheck.

This module owns check (record the exits nobody reported, retry endpoints
whose release failed; skipped while a mutation holds the lock) and its
pacing with requests, at most once per CHECK_INTERVAL.

The full part (gc, restore) is reconcile.py's; catching one exit is
containers/exits.py's check_alive.
"""

from __future__ import annotations

import os
import threading
import time

from dockyard.engine.containers.exits import ContainerExits
from dockyard.engine.endpoints import Endpoints
from dockyard.kernel import procs
from dockyard.kernel.shim_client import ShimClient
from dockyard.store import Store

# The cheap part of reconciliation runs with requests, at most this often
# (seconds); DOCKYARD_CHECK_INTERVAL changes it, for tests.
CHECK_INTERVAL = float(os.environ.get("DOCKYARD_CHECK_INTERVAL") or 1.0)
# Running containers whose process one check reads, while the shim reports
# exits: a check costs the same with 10 containers or 1,000, and an exit the
# shim missed is still found within N / CHECK_BATCH checks.
CHECK_BATCH = 64


class RequestCheck:
    """check and on_request."""

    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        endpoints: Endpoints,
        exits: ContainerExits,
        shim: ShimClient,
    ) -> None:
        self.store = store
        self.lock = lock
        self.endpoints = endpoints
        self.exits = exits
        self.shim = shim
        self._check_lock = threading.Lock()
        self._last_check = float("-inf")
        self._check_cursor = 0  # where the check's round of the containers is
        self._check_generation = -1  # the shim's connection the check last read every container under

    def check(self) -> bool:
        """What every command does on its way (the full part is gc): record the
        exits nobody reported (the shim died), retry endpoints whose release
        failed. Skipped, returning False, while a mutation holds the lock: a
        read must never wait for a slow run.

        Its cost does not follow the number of containers: the processes are
        read without the lock and without their configs, CHECK_BATCH of them
        a time, round the table; only when the shim's connection changed
        (exits may have gone unreported) are they all read at once."""
        generation = self.shim.generation
        full = generation != self._check_generation
        rows = self.store.running_processes(0 if full else self._check_cursor, -1 if full else CHECK_BATCH)
        gone = [cid for _, cid, pid, started in rows if not procs.alive(pid, started)]
        if not self.lock.acquire(blocking=False):
            return False
        try:
            for cid in gone:
                self.exits.check_alive(cid)
            self.endpoints.retry_releasing()
        finally:
            self.lock.release()
        if full:
            self._check_generation = generation
        self._check_cursor = rows[-1][0] if not full and len(rows) == CHECK_BATCH else 0
        return True

    def on_request(self) -> None:
        """Called with every API request: check(), at most once per CHECK_INTERVAL."""
        if time.monotonic() - self._last_check < CHECK_INTERVAL:
            return
        if not self._check_lock.acquire(blocking=False):
            return  # another request is checking right now
        try:
            if self.check():
                self._last_check = time.monotonic()
        finally:
            self._check_lock.release()
