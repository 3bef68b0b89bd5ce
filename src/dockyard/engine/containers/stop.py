"""Stop, kill and remove a container: ContainerStop.

This module owns signalling a container's process (only while its recorded
pid is the one that started), stop's grace period before SIGKILL (Docker's
10 s unless given), and rm: refused while running unless forced, then the
record removed (containers/exits.py's remove_record).

What follows the process's exit (teardown, the exited state) is
containers/exits.py's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from dockyard.engine.containers.exits import ContainerExits
from dockyard.engine.containers.restarts import RestartPolicies
from dockyard.engine.coordination import Changes, Intents
from dockyard.engine.events import Events
from dockyard.engine.steps import step
from dockyard.errors import Conflict
from dockyard.kernel import procs
from dockyard.model import Container
from dockyard.store import Store

STOP_TIMEOUT = 10


def stop_signal(text: str) -> int:
    """--stop-signal as recorded (a name or a number); SIGTERM when none was given."""
    if not text:
        return int(signal.SIGTERM)
    return int(text) if text.isdigit() else int(signal.Signals[text])


class ContainerStop:
    """stop, kill, rm."""

    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        intents: Intents,
        changes: Changes,
        exits: ContainerExits,
        events: Events,
        restarts: RestartPolicies,
    ) -> None:
        self.store = store
        self.lock = lock
        self.intents = intents
        self.changes = changes
        self.exits = exits
        self.events = events
        self.restarts = restarts

    def send(self, c: Container, sig: int) -> None:
        if procs.alive(c.pid, self.store.pid_start(c.id)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, sig)

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            raise Conflict(f"container {c.name} is not running")
        self.restarts.stopped_by_user(c.id)
        self.events.container("kill", c, signal=str(int(sig)))
        self.send(c, sig)
        return c

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.store.get_container(ref)
        # Also one waiting for its policy's restart: it stays stopped.
        self.restarts.stopped_by_user(c.id)
        with self.lock:  # a restart under way has finished: c is as it now is
            c = self.store.get_container(c.id)
        if not c.running:
            return c
        if timeout is None:
            timeout = c.config.stop_timeout
        grace = STOP_TIMEOUT if timeout is None or timeout < 0 else timeout
        step("stop.sigterm")
        self.send(c, stop_signal(c.config.stop_signal))
        if grace > 0 and self.exits.wait_exit(c.id, grace):
            self.events.container("stop", c)
            return self.store.find_container(c.id) or c
        step("stop.sigkill")
        self.send(c, signal.SIGKILL)
        self.exits.wait_exit(c.id, None)
        self.events.container("stop", c)
        return self.store.find_container(c.id) or c

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.store.get_container(ref)
        if c.running and not force:
            raise Conflict(
                f"you cannot remove a running container {c.short_id}; stop the container "
                "before attempting removal or force remove (rm -f)"
            )
        # No restart policy brings it back meanwhile (rm -f of an --restart always container).
        self.restarts.stopped_by_user(c.id)
        with self.lock:  # a restart under way has finished: c is as it now is
            c = self.store.get_container(c.id)
        with self.intents.under("rm", c.id):
            if c.running:
                step("rm.kill")
                self.send(c, signal.SIGKILL)
                self.exits.wait_exit(c.id, None)
            with self.lock:
                if self.store.find_container(c.id) is not None:
                    step("rm.records")
                    self.exits.remove_record(c.id, None)
        self.changes.notify()
        self.exits.wait_cluster_released(c.id)
