"""--restart and the verbs around it: restart policies, `docker restart`, `docker rename`.

A RestartPolicies belongs to the Engine. When a container's process exits
(not when a start fails), its policy decides: `no` never, `on-failure[:N]`
on a non-zero status (at most N times), `always` and `unless-stopped`
whenever it was not stopped by a user (stop or kill). The start comes after
Docker's back-off: 100 ms, doubled on each restart in a row, at most a
minute, back to 100 ms once a run lasted 10 s. When the daemon starts, what
should run does: `always` containers, `unless-stopped` ones no user
stopped, `on-failure` ones that failed with retries left (Docker's restore,
which also covers a reboot: every container was found ended then).

The count and the stopped-by-a-user mark are the store's (container_restarts);
a user's start clears both, as Docker's does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model import Container, ContainerState, RestartName, check_name
from dockyard.policy.container_filters import created_epoch

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
# A run this long resets the back-off (Docker's restartmanager).
STEADY_RUN = 10.0


def should_restart(c: Container, status: int, count: int, manually_stopped: bool) -> bool:
    """Docker's rule for one exit with this status."""
    policy = c.config.restart
    if manually_stopped or policy.name is RestartName.NO:
        return False
    if policy.name is RestartName.ON_FAILURE:
        return status != 0 and (policy.max_retries == 0 or count < policy.max_retries)
    return True


def delay(count: int, ran_for: float) -> float:
    if ran_for >= STEADY_RUN:
        return FIRST_DELAY
    return float(min(FIRST_DELAY * 2**count, MAX_DELAY))


class RestartPolicies:
    def __init__(self, engine: Any) -> None:
        self.e = engine
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- what users do ---------------------------------------------------------

    def started_by_user(self, ref: str) -> None:
        c = self.e.store.find_container(ref)
        if c is not None:
            self._cancel(c.id)
            self.e.store.set_restart_state(c.id, 0, False)

    def stopped_by_user(self, container_id: str) -> None:
        self._cancel(container_id)
        count, _ = self.e.store.restart_state(container_id)
        self.e.store.set_restart_state(container_id, count, True)

    def restarting(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._timers

    # -- what the engine does --------------------------------------------------

    def exited(self, c: Container, status: int) -> None:
        """The container's process ended with status (the exit is recorded already)."""
        count, manual = self.e.store.restart_state(c.id)
        if not should_restart(c, status, count, manual):
            return
        ran_for = time.time() - created_epoch(c.started_at) if c.started_at else 0.0
        self._schedule(c.id, delay(count, ran_for))

    def startup(self) -> None:
        """The daemon started: start what its policy says should run (a thread of its own)."""
        for c in self.e.store.containers():
            if c.running or c.state is ContainerState.REMOVING:
                continue
            count, manual = self.e.store.restart_state(c.id)
            policy = c.config.restart.name
            if policy is RestartName.ALWAYS:
                wanted = True  # Docker: even one a user stopped, when the daemon starts
            elif policy is RestartName.UNLESS_STOPPED:
                wanted = not manual
            elif policy is RestartName.ON_FAILURE:
                wanted = c.state is ContainerState.EXITED and should_restart(c, c.exit_code, count, manual)
            else:
                wanted = False
            if wanted and c.state is not ContainerState.CREATED:
                self._schedule(c.id, 0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers.values())
            self._timers.clear()
        for t in timers:
            t.cancel()

    # -- timers ----------------------------------------------------------------

    def _schedule(self, container_id: str, after: float) -> None:
        with self._lock:
            if self._closed or container_id in self._timers:
                return
            timer = threading.Timer(after, self._restart, args=(container_id,))
            timer.daemon = True
            timer.name = f"restart-{container_id[:12]}"
            self._timers[container_id] = timer
        timer.start()

    def _cancel(self, container_id: str) -> None:
        with self._lock:
            timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()

    def _restart(self, container_id: str) -> None:
        with self._lock:
            if self._timers.pop(container_id, None) is None or self._closed:
                return
        try:
            # Under the engine's lock: a stop or rm marks the container before it acts,
            # so a restart either starts before it (and is stopped by it) or not at all.
            with self.e.lock:
                c = self.e.store.find_container(container_id)
                if c is None or c.running:
                    return
                count, manual = self.e.store.restart_state(container_id)
                if manual:
                    return
                self.e.store.set_restart_state(container_id, count + 1, False)
                self.e.start(container_id)
        except NotFound:
            return
        except DockyardError as e:
            log.warning("container %s: a restart by its policy failed: %s", container_id[:12], e)
            # A start that fails is not an exit: Docker tries again on the policy's terms.
            again = self.e.store.find_container(container_id)
            if again is not None and not again.running:
                self.exited(again, again.exit_code or 1)


def restart(engine: Any, ref: str, timeout: int | None) -> Container:
    """docker restart: stop (the grace period given, or the container's), then start."""
    c = engine.store.get_container(ref)
    if c.running:
        engine.stop(c.id, timeout)
    engine.restart_policies.started_by_user(c.id)
    started: Container = engine.start(c.id)
    engine.events.container("restart", started)
    return started


def rename(engine: Any, ref: str, new_name: str) -> Container:
    """docker rename: the name changes; running or not, its DNS names follow."""
    if not new_name:
        raise InvalidArgument("give the container's new name")
    name = check_name(new_name.lstrip("/"), "container")
    with engine.lock:
        c = engine.store.get_container(ref)
        if c.name == name:
            raise InvalidArgument(f"renaming a container with the same name as its current name: {name}")
        # The resolver reads names from the store: it answers to the new one at once.
        engine.store.rename_container(c.id, name)
    renamed: Container = engine.store.get_container(c.id)
    engine.events.container("rename", renamed, oldName="/" + c.name)
    return renamed
