"""What the use cases share, made explicit: the change notification and the intents.

Every service gets the engine's write lock (a threading.RLock) and these in
its constructor; none reaches for another's attributes.

- Changes: a generation counter under a condition; a container's state
  changed when it moves, and waiters (`docker wait`, stop's grace) sleep on it.
- Intents: an operation under way recorded in the store; a crash leaves the
  record for gc (engine/reconcile.py), which finishes or undoes it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from dockyard.store import Store


class Changes:
    """Wake the waiters when a container's state changed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, since: int, timeout: float) -> None:
        """Sleep until something changed after generation `since`, at most timeout seconds."""
        with self._cond:
            if self._generation == since:
                self._cond.wait(timeout)


class Intents:
    """Operations under way, recorded so that a crash leaves them for gc."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.contextmanager
    def under(self, op: str, subject: str) -> Iterator[None]:
        intent_id = self.store.add_intent(op, subject)
        try:
            yield
        finally:
            # Reached on success and on a handled failure (its undo has run);
            # a crash (SIGKILL) never gets here.
            self.store.done_intent(intent_id)
