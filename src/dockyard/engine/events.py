"""What happened, for `docker events`: container and network events in Docker's shape.

The engine and the API publish; GET /events (api/events.py) replays the
recent ones (since/until) and follows new ones. Events live in memory, the
last MAX_KEPT of them, as Docker keeps its last 256: a daemon restart
forgets them, as Docker's does.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dockyard.model import Container, Network

MAX_KEPT = 1024
Json = dict[str, Any]


def container_attributes(c: Container, **more: str) -> dict[str, str]:
    """Docker's Actor.Attributes of a container event: its labels, image and name."""
    return {**dict(c.config.labels), "image": c.config.image, "name": c.name, **more}


class Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: collections.deque[Json] = collections.deque(maxlen=MAX_KEPT)
        self._listeners: list[queue.Queue[Json]] = []

    def publish(self, kind: str, action: str, actor_id: str, attributes: dict[str, str]) -> Json:
        now = time.time_ns()
        event: Json = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": attributes},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if kind == "container":  # the fields of Docker's older event shape, still sent
            event |= {"status": action, "id": actor_id, "from": attributes.get("image", "")}
        with self._lock:
            self._kept.append(event)
            for q in self._listeners:
                q.put(event)
        return event

    def container(self, action: str, c: Container, **more: str) -> None:
        self.publish("container", action, c.id, container_attributes(c, **more))

    def network(self, action: str, n: Network, container_id: str = "") -> None:
        attributes = {"name": n.name, "type": n.driver.value if n.driver.value != "null" else "null"}
        if container_id:
            attributes["container"] = container_id
        self.publish("network", action, n.id, attributes)

    @contextmanager
    def listen(self) -> Iterator[tuple[list[Json], queue.Queue[Json]]]:
        """The events kept so far and a queue of those to come, taken at one instant."""
        q: queue.Queue[Json] = queue.Queue()
        with self._lock:
            past = list(self._kept)
            self._listeners.append(q)
        try:
            yield past, q
        finally:
            with self._lock:
                self._listeners.remove(q)
