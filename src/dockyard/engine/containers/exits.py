"""How a container ends: exits, teardown, the end of its record, waiting.

This module owns what happens when a container's process exits: the shim's
exit reports, handled on a worker thread of their own (a start holding the
lock may be waiting on the shim's reader for its reply), the teardown of
what start made, the exited state and the auto-removal of --rm (the record
and the container's directory removed, its exit code kept for late
waiters); an exit the shim could not report, caught by a pid check; and
waiting until a container is not running, removed or exited again.

Sending signals and rm are containers/stop.py's; releasing endpoints is
endpoints.py's; the exits of execs are execs.py's.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable

from dockyard.engine.containers.attach import Attaching
from dockyard.engine.containers.execs import KEY_PREFIX, Execs
from dockyard.engine.containers.restarts import RestartPolicies
from dockyard.engine.coordination import Changes
from dockyard.engine.endpoints import Endpoints
from dockyard.engine.events import Events
from dockyard.engine.sandbox import Sandboxes
from dockyard.engine.steps import step
from dockyard.kernel import files, procs
from dockyard.kernel.cgroups import Cgroups
from dockyard.model import Container, ContainerState, EndpointOwner
from dockyard.settings import Paths
from dockyard.store import Store, now

log = logging.getLogger(__name__)

EXIT_UNKNOWN = 137


class ContainerExits:
    """Exits, teardown, the end of a record, and waits."""

    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        paths: Paths,
        endpoints: Endpoints,
        sandboxes: Sandboxes,
        cgroups: Cgroups,
        changes: Changes,
        events: Events,
        restarts: RestartPolicies,
    ) -> None:
        self.store = store
        self.lock = lock
        self.paths = paths
        self.endpoints = endpoints
        self.sandboxes = sandboxes
        self.cgroups = cgroups
        self.changes = changes
        self.events = events
        self.restarts = restarts
        # The exec instances and attached clients, once the shim is made (attach_stdio).
        self.execs: Execs | None = None
        self.attaching: Attaching | None = None
        # Exit codes of auto-removed containers, for waiters that come late.
        self._removed_exit: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, int, int] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._exit_loop, name="exits", daemon=True)
        self._worker.start()

    def attach_stdio(self, execs: Execs, attaching: Attaching) -> None:
        """The shim reports exits here, and execs and attached clients need the shim: they
        meet after all are made."""
        self.execs = execs
        self.attaching = attaching

    # -- exits and teardown --------------------------------------------------

    def on_shim_exit(self, key: str, pid: int, status: int) -> None:
        if key.startswith(KEY_PREFIX) and self.execs is not None:
            # At once, in the shim's order: an exec's inspect after its stream ended
            # (shim.barrier) finds its exit code.
            self.execs.exited(key, status)
            return
        self._queue.put((key, pid, status))

    def _exit_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            key, pid, status = item
            try:
                if key.startswith(KEY_PREFIX):
                    if self.execs is not None:
                        self.execs.exited(key, status)
                else:
                    self.container_exited(key, pid, status)
            except Exception:  # one bad exit must not stop the others
                log.exception("handling the exit of %s failed", key)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)

    def container_exited(self, container_id: str, pid: int, status: int) -> None:
        with self.lock:
            c = self.store.find_container(container_id)
            if c is None or c.state is not ContainerState.RUNNING or (pid and c.pid != pid):
                return
            step("exit.teardown")
            # The veth goes once the exit is recorded: whenever the daemon dies
            # while the reaper works, the container is known to have ended.
            with self.endpoints.reaping_after():
                self.teardown(c)
                self.finish(c, status, directory_now=False)
            if c.config.auto_remove:
                # After the waiters were told and the reaper let go (rm's answer and an
                # overlay's release need not wait for it), before the lock goes (gc finds
                # no directory without its record).
                self.remove_directory(c.id)
            self.events.container("die", c, exitCode=str(status))
            if not c.config.auto_remove:
                self.restarts.exited(c, status)

    def finish(self, c: Container, status: int, error: str = "", directory_now: bool = True) -> None:
        self.store.update_container(
            c.id,
            state=ContainerState.EXITED,
            exit_code=status,
            pid=0,
            pid_start=0,
            finished_at=now(),
            error=error,
        )
        if c.config.auto_remove:
            step("exit.remove")
            self.remove_record(c.id, status, directory_now)
        self.changes.notify()

    def teardown(self, c: Container) -> None:
        """Undo everything start made for c; idempotent."""
        self.endpoints.release(EndpointOwner.container(c.id))
        if not c.netns_owner:
            step("teardown.sandbox")
            self.sandboxes.remove(c.id)
        # Its processes are gone with its PID namespace; a cgroup still busy is gc's.
        self.cgroups.remove(c.id)

    def remove_record(self, container_id: str, exit_code: int | None, directory_now: bool = True) -> None:
        # Endpoints still recorded here belong to a start that never reached
        # the kernel; those of an ended container are with the reaper.
        self.endpoints.drop_records_active(EndpointOwner.container(container_id))
        c = self.store.find_container(container_id)
        self.store.delete_container(container_id)
        if c is not None:
            self.events.container("destroy", c)
        if exit_code is not None:
            self._removed_exit[container_id] = exit_code
            while len(self._removed_exit) > 1000:
                self._removed_exit.pop(next(iter(self._removed_exit)))
        if directory_now:
            self.remove_directory(container_id)
        if self.attaching is not None:
            self.attaching.forget(container_id)
        if self.execs is not None:
            self.execs.forget(container_id)

    def remove_directory(self, container_id: str) -> None:
        shutil.rmtree(self.paths.container_dir(container_id), ignore_errors=True)

    def exit_status_from_file(self, container_id: str) -> int:
        try:
            data = files.read(self.paths.root, self.paths.exit_file(container_id))
            return int(json.loads(data or b"")["status"])
        except (ValueError, KeyError, TypeError):
            return EXIT_UNKNOWN

    def check_alive(self, container_id: str) -> None:
        """Catch an exit the shim could not report (for instance after the shim died)."""
        c = self.store.find_container(container_id)
        if c is not None and c.running and not procs.alive(c.pid, self.store.pid_start(c.id)):
            self.container_exited(c.id, c.pid, self.exit_status_from_file(c.id))

    # -- waiting -------------------------------------------------------------

    def _wait_until(
        self, container_id: str, done: Callable[[Container | None], bool], timeout: float | None
    ) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = self.changes.generation()
            if done(self.store.find_container(container_id)):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self.changes.wait(generation, min(left, 1.0) if left is not None else 1.0)
            self.check_alive(container_id)

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Wait until the container is not running; True when it is not."""
        return self._wait_until(container_id, lambda c: c is None or not c.running, timeout)

    def wait_cluster_released(self, container_id: str) -> None:
        """Until the removed container's overlay addresses are free on every host."""
        self.endpoints.wait_cluster_released(EndpointOwner.container(container_id))

    def wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's wait: block until the condition, return the exit code."""
        c = self.store.get_container(ref)
        if condition == "removed":
            self._wait_until(c.id, lambda x: x is None, None)
            self.wait_cluster_released(c.id)
        elif condition == "next-exit":
            before = c.finished_at
            self._wait_until(
                c.id,
                lambda x: x is None or (x.state is ContainerState.EXITED and x.finished_at != before),
                None,
            )
        else:
            self.wait_exit(c.id, None)
        after = self.store.find_container(c.id)
        if after is None:
            return self._removed_exit.get(c.id, 0)
        return after.exit_code
