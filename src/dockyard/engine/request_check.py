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
from dockyard.store import Store

# The cheap part of reconciliation runs with requests, at most this often
# (seconds); DOCKYARD_CHECK_INTERVAL changes it, for tests.
CHECK_INTERVAL = float(os.environ.get("DOCKYARD_CHECK_INTERVAL") or 1.0)


class RequestCheck:
    """check and on_request."""

    def __init__(
        self, store: Store, lock: threading.RLock, endpoints: Endpoints, exits: ContainerExits
    ) -> None:
        self.store = store
        self.lock = lock
        self.endpoints = endpoints
        self.exits = exits
        self._check_lock = threading.Lock()
        self._last_check = float("-inf")

    def check(self) -> bool:
        """What every command does on its way (the full part is gc): record the
        exits nobody reported (the shim died), retry endpoints whose release
        failed. Skipped, returning False, while a mutation holds the lock: a
        read must never wait for a slow run."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            for c in self.store.containers():
                if c.running:
                    self.exits.check_alive(c.id)
            self.endpoints.retry_releasing()
        finally:
            self.lock.release()
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
