"""Stop, kill and remove a container, mixed into the Engine.

This module owns signalling a container's process (only while its recorded
pid is the one that started), stop's grace period before SIGKILL (Docker's
10 s unless given), and rm: refused while running unless forced, then the
records and the container's directory removed, and the exit code of an
auto-removed container kept for late waiters.

What follows the process's exit (teardown, the exited state) is
container_exits.py's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal

from dockyard.engine.steps import step
from dockyard.errors import Conflict
from dockyard.kernel import procs
from dockyard.model import Container

STOP_TIMEOUT = 10


class ContainerStop:
    """stop, kill, rm; uses the Engine's store, lock, paths, endpoints,
    intents and notify, and container_exits' wait_exit."""

    # -- stop, kill, remove --------------------------------------------------

    def _signal(self, c: Container, sig: int) -> None:
        if procs.alive(c.pid, self.store.pid_start(c.id)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, sig)

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            raise Conflict(f"container {c.name} is not running")
        self._signal(c, sig)
        return c

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.store.get_container(ref)
        if not c.running:
            return c
        grace = STOP_TIMEOUT if timeout is None else timeout
        step("stop.sigterm")
        self._signal(c, signal.SIGTERM)
        if grace > 0 and self.wait_exit(c.id, grace):
            return self.store.find_container(c.id) or c
        step("stop.sigkill")
        self._signal(c, signal.SIGKILL)
        self.wait_exit(c.id, None)
        return self.store.find_container(c.id) or c

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.store.get_container(ref)
        if c.running and not force:
            raise Conflict(
                f"you cannot remove a running container {c.short_id}; stop the container "
                "before attempting removal or force remove (rm -f)"
            )
        with self.intent("rm", c.id):
            if c.running:
                step("rm.kill")
                self._signal(c, signal.SIGKILL)
                self.wait_exit(c.id, None)
            with self.lock:
                if self.store.find_container(c.id) is not None:
                    step("rm.records")
                    self.remove_record(c.id, None)
        self.notify()

    def remove_record(self, container_id: str, exit_code: int | None) -> None:
        # Endpoints still recorded here belong to a start that never reached
        # the kernel; those of an ended container are with the reaper.
        self.endpoints.drop_records_active(container_id)
        self.store.delete_container(container_id)
        if exit_code is not None:
            self._removed_exit[container_id] = exit_code
            while len(self._removed_exit) > 1000:
                self._removed_exit.pop(next(iter(self._removed_exit)))
        shutil.rmtree(self.paths.container_dir(container_id), ignore_errors=True)
        self.attaching.forget(container_id)
        self.execs.forget(container_id)
