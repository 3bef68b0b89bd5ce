"""The cheap part of reconciliation, run with API requests, mixed into the Engine.

This module owns check (record the exits nobody reported, retry endpoints
whose release failed; skipped while a mutation holds the lock) and its
pacing with requests, at most once per CHECK_INTERVAL.

The full part (gc, restore) is reconcile.py's; catching one exit is
container_exits.py's check_alive.
"""

from __future__ import annotations

import os
import time

from dockyard.kernel import procs

# The cheap part of reconciliation runs with requests, at most this often
# (seconds); DOCKYARD_CHECK_INTERVAL changes it, for tests.
CHECK_INTERVAL = float(os.environ.get("DOCKYARD_CHECK_INTERVAL") or 1.0)
# Running containers whose process one check reads, while the shim reports
# exits: a check costs the same with 10 containers or 1,000, and an exit the
# shim missed is still found within N / CHECK_BATCH checks.
CHECK_BATCH = 64


class RequestCheck:
    """check and on_request; uses the Engine's lock, store, shim, endpoints and check_alive."""

    # -- the cheap part of reconciliation ------------------------------------

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
                self.check_alive(cid)
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
