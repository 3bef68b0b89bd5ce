"""The containers API beyond create/start/stop: list with filters, prune, restart, rename, top,
and the clear refusals (pause, unpause, stats, update, system df).

Parses and formats; the use cases are engine/containers' (prune.py,
restarts.py), the filters' rules policy/container_filters.py's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api import docker
from dockyard.daemon.api.http import Request, Response
from dockyard.engine.containers import prune, restarts, top
from dockyard.errors import InvalidArgument
from dockyard.model import Container, Endpoint, Network
from dockyard.policy.container_filters import ContainerFilter, PruneFilter

Json = dict[str, Any]

# Endpoints Docker has and dockyard does not: a clear answer, never a 404 "page not found".
REFUSED = (
    (
        "POST",
        r"/containers/(?P<ref>[^/]+)/pause",
        "pause needs the cgroup freezer, which dockyard does not use",
    ),
    ("POST", r"/containers/(?P<ref>[^/]+)/unpause", "unpause: dockyard does not pause containers"),
    ("GET", r"/containers/(?P<ref>[^/]+)/stats", "stats: dockyard does not account containers' resources"),
    (
        "POST",
        r"/containers/(?P<ref>[^/]+)/update",
        "update: dockyard sets no resource limits but --pids-limit",
    ),
    ("GET", r"/system/df", "system df: dockyard does not account disk use by object"),
)


def _refusal(message: str) -> Callable[..., Response]:
    def refuse(req: Request, **_: str) -> Response:
        raise InvalidArgument(f"{message} (not supported by dockyard)")

    return refuse


def refuse_query(req: Request, name: str, why: str) -> None:
    """A query parameter Docker has and dockyard does not honour: refused by name when it asks
    for something (Docker's booleans: anything but "", 0, no, false, none)."""
    value = req.query.get(name)
    if value is not None and value.lower() not in ("", "0", "no", "false", "none"):
        raise InvalidArgument(f"{name} is not supported by dockyard: {why}")


SIZE_REFUSED = "it does not account a container's disk use (docker ps -s, inspect -s)"
SIGNAL_REFUSED = "the stop signal is the container's StopSignal (set it at create)"


def _int_query(req: Request, name: str, default: int) -> int:
    text = req.query.get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"invalid {name} {text!r}: give a whole number") from None


class ContainerRoutes:
    """Handlers over the engine; `endpoints` and `mode_network` are the Api's views of a container."""

    def __init__(
        self,
        engine: Any,
        endpoints: Callable[[Container], list[tuple[Endpoint, Network]]],
        mode_network: Callable[[Container], Network | None],
    ) -> None:
        self.e = engine
        self.endpoints = endpoints
        self.mode_network = mode_network

    def register(self, r: Callable[[str, str, Callable[..., Response]], None]) -> None:
        r("GET", r"/containers/json", self.ps)
        r("POST", r"/containers/prune", self.prune)
        r("POST", r"/containers/(?P<ref>[^/]+)/restart", self.restart)
        r("POST", r"/containers/(?P<ref>[^/]+)/rename", self.rename)
        r("GET", r"/containers/(?P<ref>[^/]+)/top", self.top)
        for method, pattern, message in REFUSED:
            r(method, pattern, _refusal(message))

    def ps(self, req: Request) -> Response:
        wanted = ContainerFilter.parse(req.query.get("filters"))
        refuse_query(req, "size", SIZE_REFUSED)
        limit = _int_query(req, "limit", -1)
        # Each summary becomes JSON text as it is made: the objects of one container are
        # alive at a time. A list of 1,000 summaries held some 7 MB for a moment, and
        # Python's allocator kept several MB of it in the idle daemon (issue 19).
        out = []
        for c in prune.select(self.e, wanted, req.flag("all"), limit):
            bindings = self.e.views.ports(c)
            summary = docker.container_summary(
                c,
                self.endpoints(c),
                bindings,
                self.mode_network(c),
                configured_networks(self.e, c),
                image_id(self.e, c),
            )
            out.append(json.dumps(summary))
        # What json.dumps(list) writes, joined from the parts.
        return Response(200, f"[{', '.join(out)}]\n".encode())

    def prune(self, req: Request) -> Response:
        wanted = PruneFilter.parse(req.query.get("filters"))
        return Response(200, {"ContainersDeleted": prune.prune(self.e, wanted) or None, "SpaceReclaimed": 0})

    def restart(self, req: Request, ref: str) -> Response:
        refuse_query(req, "signal", SIGNAL_REFUSED)
        timeout = _int_query(req, "t", -1)
        restarts.restart(self.e, ref, None if timeout < 0 else timeout)
        return Response(204)

    def rename(self, req: Request, ref: str) -> Response:
        restarts.rename(self.e, ref, req.query.get("name") or "")
        return Response(204)

    def top(self, req: Request, ref: str) -> Response:
        titles, rows = top.top(self.e, ref, req.query.get("ps_args") or "")
        return Response(200, {"Titles": titles, "Processes": rows})


def configured_networks(engine: Any, c: Container) -> dict[str, Network | None]:
    """The networks c's config names (shown for a container not running), by name."""
    return {name: engine.views.network_named(name) for name in prune.configured_networks(c)}


def image_id(engine: Any, c: Container) -> str:
    """The id of c's image when the store has it, else ""."""
    return prune.facts(engine, c, with_image=True).image_id
