"""GET /events: `docker events`, Docker's JSON lines, with since, until and filters.

Past events (engine/events.py keeps the last ones) from `since`, then new
ones as they come until `until` (or until the client goes: a write to a
closed connection ends the stream). Filters: type, event (the action),
container (id or name), network (id or name), label, image, scope; any
other is refused by name.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.events import Events
from dockyard.errors import InvalidArgument
from dockyard.policy.container_filters import parse_filters, parse_timestamp

FILTERS = (
    "type",
    "event",
    "container",
    "network",
    "label",
    "image",
    "scope",
    "daemon",
    "volume",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
)
TYPES = ("container", "network", "image", "volume", "daemon", "plugin", "node", "service", "secret", "config")
Json = dict[str, Any]


def _matches(event: Json, values: dict[str, tuple[str, ...]]) -> bool:
    actor = event["Actor"]
    attrs = actor["Attributes"]

    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        return key not in values or any(test(v) for v in values[key])

    return (
        any_of("type", lambda v: v == event["Type"])
        and any_of("event", lambda v: event["Action"] == v or event["Action"].startswith(v + ":"))
        and any_of(
            "container",
            lambda v: (
                (event["Type"] == "container" and (actor["ID"].startswith(v) or attrs.get("name") == v))
                or attrs.get("container", "") == v
            ),
        )
        and any_of(
            "network",
            lambda v: event["Type"] == "network" and (actor["ID"].startswith(v) or attrs.get("name") == v),
        )
        and any_of("label", lambda v: _label_matches(attrs, v))
        and any_of("image", lambda v: attrs.get("image") in (v, v + ":latest"))
        and any_of("scope", lambda v: v == "local")
        # Kinds dockyard has no events of: a filter on them selects none.
        and all(
            k not in values for k in ("daemon", "volume", "plugin", "node", "service", "secret", "config")
        )
    )


class EventRoutes:
    def __init__(self, events: Events) -> None:
        self.events = events

    def register(self, r: Callable[[str, str, Callable[..., Response]], None]) -> None:
        r("GET", r"/events", self.stream)

    def stream(self, req: Request) -> Response:
        values = parse_filters(req.query.get("filters"), FILTERS)
        for kind in values.get("type", ()):
            if kind not in TYPES:
                raise InvalidArgument(f"invalid filter 'type={kind}'")
        now = time.time()
        since = parse_timestamp(req.query["since"], now) if req.query.get("since") else None
        until = parse_timestamp(req.query["until"], now) if req.query.get("until") else None
        if since is not None and until is not None and until < since:
            raise InvalidArgument("since must be before until")

        def wanted(event: Json) -> bool:
            t = event["timeNano"] / 1e9
            if since is not None and t < since:
                return False
            if until is not None and t > until:
                return False
            return _matches(event, values)

        def write_all(send: Callable[[bytes], None]) -> None:
            def write(line: bytes) -> None:
                # The sender holds back its last piece (streams.py): a blank after each
                # event lets the event itself go at once. JSON readers skip blanks.
                send(line)
                send(b" ")

            with self.events.listen() as (past, incoming):
                # Without since, Docker sends only what comes from now on.
                for event in past if since is not None else []:
                    if wanted(event):
                        write((json.dumps(event) + "\n").encode())
                while until is None or time.time() < until:
                    timeout = 1.0 if until is None else max(0.0, min(1.0, until - time.time()))
                    try:
                        event = incoming.get(timeout=timeout)
                    except queue.Empty:
                        continue
                    if wanted(event):
                        write((json.dumps(event) + "\n").encode())

        return Response(200, content_type="application/json", stream=write_all)


def _label_matches(attrs: dict[str, str], wanted: str) -> bool:
    """label=KEY or label=KEY=VALUE against an event's attributes."""
    key, sep, value = wanted.partition("=")
    return key in attrs and (not sep or attrs[key] == value)
