"""How a container ends, mixed into the Engine: exits, teardown, waiting.

This module owns what happens when a container's process exits: the shim's
exit reports, handled on a worker thread of their own (a start holding the
lock may be waiting on the shim's reader for its reply), the teardown of
what start made, the exited state and the auto-removal of --rm; an exit the
shim could not report, caught by a pid check; and waiting until a
container is not running, removed or exited again.

Sending signals and rm are container_stop.py's; releasing endpoints is
endpoints.py's; the exits of execs are execs.py's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from dockyard.engine.containers.execs import KEY_PREFIX
from dockyard.engine.steps import step
from dockyard.kernel import files, procs
from dockyard.model import Container, ContainerState
from dockyard.store import now

EXIT_UNKNOWN = 137


class ContainerExits:
    """Exits, teardown and waits; uses the Engine's store, lock, paths,
    endpoints, sandboxes, execs, exit queue and change notification, and
    container_stop's remove_record."""

    # -- exits and teardown --------------------------------------------------

    def _on_shim_exit(self, key: str, pid: int, status: int) -> None:
        if key.startswith(KEY_PREFIX):
            # At once, in the shim's order: an exec's inspect after its stream ended
            # (shim.barrier) finds its exit code.
            self.execs.exited(key, status)
            return
        self._exit_queue.put((key, pid, status))

    def _exit_loop(self) -> None:
        while (item := self._exit_queue.get()) is not None:
            key, pid, status = item
            try:
                if key.startswith(KEY_PREFIX):
                    self.execs.exited(key, status)
                else:
                    self.container_exited(key, pid, status)
            except Exception as e:  # one bad exit must not stop the others
                print(f"dockyardd: handling the exit of {key} failed: {e!r}", file=sys.stderr, flush=True)

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
                self.finish(c, status)

    def finish(self, c: Container, status: int, error: str = "") -> None:
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
            self.remove_record(c.id, status)
        self.notify()

    def teardown(self, c: Container) -> None:
        """Undo everything start made for c; idempotent."""
        self.endpoints.release(c.id)
        if not c.netns_owner:
            step("teardown.sandbox")
            self.sandboxes.remove(c.id)
        # Its processes are gone with its PID namespace; a cgroup still busy is gc's.
        self.cgroups.remove(c.id)

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
            with self.changed:
                generation = self._generation
            if done(self.store.find_container(container_id)):
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            with self.changed:
                if self._generation == generation:
                    self.changed.wait(min(left, 1.0) if left is not None else 1.0)
            self.check_alive(container_id)

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Wait until the container is not running; True when it is not."""
        return self._wait_until(container_id, lambda c: c is None or not c.running, timeout)

    def wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's wait: block until the condition, return the exit code."""
        c = self.store.get_container(ref)
        if condition == "removed":
            self._wait_until(c.id, lambda x: x is None, None)
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
