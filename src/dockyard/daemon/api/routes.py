"""The daemon's HTTP API: Docker Engine paths where Docker has them.

Parses requests, calls the engine, formats with api/docker.py. No logic.
Errors travel as {"message": ..., "kind": ...} with the HTTP status of the
error class; the client rebuilds the same exception from `kind`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api import docker, endpoint_settings
from dockyard.daemon.api.archive import ArchiveRoutes
from dockyard.daemon.api.attach import AttachRoutes
from dockyard.daemon.api.cni import CniRoutes
from dockyard.daemon.api.containers import (
    SIGNAL_REFUSED,
    SIZE_REFUSED,
    ContainerRoutes,
    configured_networks,
    image_id,
    refuse_query,
)
from dockyard.daemon.api.create_fields import check_platform
from dockyard.daemon.api.events import EventRoutes
from dockyard.daemon.api.explain import ExplainRoutes
from dockyard.daemon.api.host_info import host_facts
from dockyard.daemon.api.http import Request, Response
from dockyard.daemon.api.images import ImageRoutes
from dockyard.daemon.api.versions import API_VERSION, MIN_API_VERSION, check_version
from dockyard.engine import Engine
from dockyard.engine.containers import requests
from dockyard.engine.explain import Explainer
from dockyard.engine.networks.service import NetworkFilter
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model import Network
from dockyard.policy.container_filters import PruneFilter
from dockyard.settings import parse_bip, parse_bridge_name

log = logging.getLogger(__name__)
# `docker version` shows Go's names for the architecture.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
Route = tuple[str, re.Pattern[str], Callable[..., Response]]


def _signal_number(text: str) -> int:
    if not text:
        return int(signal.SIGKILL)
    if text.isdigit():
        number = int(text)
        if not 0 < number < signal.NSIG:
            raise InvalidArgument(f"invalid signal: {text}")
        return number
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {text}") from None


class Api:
    def __init__(
        self,
        engine: Engine,
        shutdown: Callable[[], None],
        info: dict[str, Any],
        metrics_text: Callable[[], str] | None = None,
    ) -> None:
        self.e = engine
        self.shutdown = shutdown
        self.info_extra = info
        self.routes: list[Route] = []
        r = self._route
        r("GET", r"/_ping", self.ping)
        r("HEAD", r"/_ping", self.ping)
        r("GET", r"/version", self.version)
        r("GET", r"/info", self.info)
        r("POST", r"/containers/create", self.create)
        r("GET", r"/containers/(?P<ref>[^/]+)/json", self.inspect)
        r("POST", r"/containers/(?P<ref>[^/]+)/start", self.start)
        r("POST", r"/containers/(?P<ref>[^/]+)/wait", self.wait)
        r("POST", r"/containers/(?P<ref>[^/]+)/stop", self.stop)
        r("POST", r"/containers/(?P<ref>[^/]+)/kill", self.kill)
        r("DELETE", r"/containers/(?P<ref>[^/]+)", self.remove)
        r("GET", r"/networks", self.networks)
        r("POST", r"/networks/create", self.network_create)
        r("POST", r"/networks/prune", self.network_prune)
        r("GET", r"/networks/(?P<ref>[^/]+)", self.network_inspect)
        r("DELETE", r"/networks/(?P<ref>[^/]+)", self.network_remove)
        r("POST", r"/networks/(?P<ref>[^/]+)/connect", self.network_connect)
        r("POST", r"/networks/(?P<ref>[^/]+)/disconnect", self.network_disconnect)
        r("POST", r"/system/gc", self.gc)
        r("POST", r"/system/reset", self.reset)
        r("POST", r"/dockyard/default-bridge", self.default_bridge)
        r("POST", r"/dockyard/shutdown", self.stop_daemon)
        r("POST", r"/dockyard/settle", self.settle)
        # dockyard-cni's verbs (api/cni.py).
        cni = CniRoutes(engine.cni, engine.cni_checks)
        r("POST", r"/dockyard/cni/add", cni.add)
        r("POST", r"/dockyard/cni/del", cni.delete)
        r("POST", r"/dockyard/cni/check", cni.check)
        r("POST", r"/dockyard/cni/gc", cni.gc)
        r("POST", r"/dockyard/cni/status", cni.status)
        r("GET", r"/dockyard/cni/attachments", cni.listing)
        ImageRoutes(engine.images).register(r)
        ArchiveRoutes(engine.archive).register(r)
        AttachRoutes(engine).register(r)
        ContainerRoutes(engine, engine.views.endpoints, engine.views.mode_network).register(r)
        EventRoutes(engine.events).register(r)
        # explain, trace, graph and /metrics (api/explain.py).
        self.explainer = Explainer(engine)
        ExplainRoutes(self.explainer, metrics_text).register(r)

    def _route(self, method: str, pattern: str, fn: Callable[..., Response]) -> None:
        self.routes.append((method, re.compile(f"^(?:/v[0-9.]+)?{pattern}$"), fn))

    def handle(self, req: Request) -> Response:
        check_version(req.path)
        # Every command does the cheap part of reconciliation (throttled, in the engine).
        self.e.on_request()
        allowed = False
        for method, pattern, fn in self.routes:
            m = pattern.match(req.path)
            if m:
                allowed = True
                if method == req.method:
                    return fn(req, **m.groupdict())
        if allowed:
            raise InvalidArgument(f"method {req.method} not allowed on {req.path}")
        raise NotFound(f"page not found: {req.path}")

    @staticmethod
    def error(e: BaseException) -> Response:
        if isinstance(e, DockyardError):
            return Response(e.http_status, {"message": e.message, "kind": e.kind})
        if isinstance(e, json.JSONDecodeError):
            return Response(400, {"message": f"invalid JSON in request: {e}", "kind": "InvalidArgument"})
        log.error("internal error answering a request", exc_info=e)
        return Response(
            500, {"message": f"internal error: {e!r} (see the daemon's log)", "kind": "DockyardError"}
        )

    # -- system ------------------------------------------------------------

    def ping(self, req: Request) -> Response:
        # Docker's headers: the docker CLI negotiates its API version from Api-Version.
        headers = {"Api-Version": API_VERSION, "Ostype": "linux", "Cache-Control": "no-cache, no-store"}
        return Response(200, b"OK", "text/plain; charset=utf-8", headers=headers)

    def version(self, req: Request) -> Response:
        from dockyard import __version__

        machine = os.uname().machine
        return Response(
            200,
            {
                "Version": __version__,
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": GOARCH.get(machine, machine),
                "KernelVersion": os.uname().release,
            },
        )

    def info(self, req: Request) -> Response:
        containers = self.e.containers()
        return Response(
            200,
            {
                "Containers": len(containers),
                "ContainersRunning": sum(1 for c in containers if c.running),
                "ContainersStopped": sum(1 for c in containers if not c.running),
                "ContainersPaused": 0,
                "DockerRootDir": str(self.e.paths.root),
                "Name": "dockyard",
                **host_facts(),
                **self.info_extra,
            },
        )

    def gc(self, req: Request) -> Response:
        report = self.e.gc()
        report.removed += self.e.images.gc()
        report.removed += self.explainer.gc()
        return Response(
            200, {"Removed": report.removed, "NotRemoved": report.not_removed, "Restored": report.restored}
        )

    def reset(self, req: Request) -> Response:
        removed = self.e.reset()
        self.info_extra["reset"] = True
        self.shutdown()
        return Response(200, {"Removed": removed})

    def settle(self, req: Request) -> Response:
        self.e.settle()
        return Response(204)

    def default_bridge(self, req: Request) -> Response:
        body = req.json()
        bridge = parse_bridge_name(str(body.get("bridge") or self.e.settings.bridge))
        bip = parse_bip(str(body["bip"])) if body.get("bip") else None
        n = self.e.configure_default_bridge(bridge, bip)
        return Response(200, {"Bridge": n.bridge, "Subnet": str(n.subnet), "Gateway": str(n.gateway)})

    def stop_daemon(self, req: Request) -> Response:
        self.shutdown()
        return Response(204)

    # -- containers ----------------------------------------------------------

    def create(self, req: Request) -> Response:
        body = req.json()
        config, _aliases = docker.container_config(body)
        check_platform(req.query.get("platform") or "", self.e.images.platform)
        name = req.query.get("name") or None
        c, warnings = self.e.create(config, name, docker.image_run(body))
        return Response(201, {"Id": c.id, "Warnings": warnings})

    def inspect(self, req: Request, ref: str) -> Response:
        refuse_query(req, "size", SIZE_REFUSED)
        v = self.e.inspect(ref)
        c = v.container
        extra = {
            "ImageId": image_id(self.e, c),
            "RestartCount": self.e.views.restart_count(c),
            "Restarting": self.e.restart_policies.restarting(c.id),
            "Configured": configured_networks(self.e, c),
        }
        out = docker.container_inspect(
            c, v.endpoints, v.ports, v.sandbox_key, v.log_path, v.shared, v.mode_network, extra
        )
        out["GraphDriver"] = {"Name": "overlay", "Data": self.e.archive.layout(v.container)}
        return Response(200, out)

    def start(self, req: Request, ref: str) -> Response:
        fds = req.take_fds()
        try:
            refuse_query(req, "checkpoint", "checkpoints (CRIU)")
            refuse_query(req, "checkpoint-dir", "checkpoints (CRIU)")
            refuse_query(req, "detachKeys", "give detachKeys to attach, where they are read")
            if req.json():  # a HostConfig at start: Docker's own refusal, not a silent drop
                raise InvalidArgument(
                    "starting container with non-empty request body was deprecated since API v1.22 "
                    "and removed in v1.24"
                )
            self.e.restart_policies.started_by_user(ref)
            self.e.start(ref, fds or None)
        finally:
            for fd in fds:
                os.close(fd)
        return Response(204)

    def wait(self, req: Request, ref: str) -> Response:
        c = self.e.get(ref)
        condition = req.query.get("condition", "not-running")
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid wait condition {condition!r}")
        return Response(200, deferred=lambda: {"StatusCode": self.e.wait(c.id, condition), "Error": None})

    def stop(self, req: Request, ref: str) -> Response:
        refuse_query(req, "signal", SIGNAL_REFUSED)
        t = req.query.get("t")
        timeout = None
        if t not in (None, ""):
            try:
                timeout = int(t)
            except ValueError:
                raise InvalidArgument(f"invalid stop timeout {t!r}: give whole seconds") from None
        c = self.e.get(ref)
        if not c.running:
            return Response(304)
        self.e.stop(c.id, timeout)
        return Response(204)

    def kill(self, req: Request, ref: str) -> Response:
        self.e.kill(ref, _signal_number(req.query.get("signal", "")))
        return Response(204)

    def remove(self, req: Request, ref: str) -> Response:
        # v (anonymous volumes too) has nothing more to remove: dockyard makes none.
        refuse_query(req, "link", "--link (no container has links)")
        self.e.remove(ref, force=req.flag("force"))
        return Response(204)

    # -- networks ------------------------------------------------------------

    def _network(self, n: Network) -> dict[str, Any]:
        members, mode_members = self.e.network_members(n)
        return docker.network_inspect(n, members, mode_members)

    def networks(self, req: Request) -> Response:
        wanted = NetworkFilter.parse(req.query.get("filters"))
        return Response(200, [self._network(n) for n in self.e.network_list(wanted)])

    def network_inspect(self, req: Request, ref: str) -> Response:
        return Response(200, self._network(self.e.network(ref)))

    def network_create(self, req: Request) -> Response:
        spec = docker.network_spec(req.json())
        n = self.e.network_create(spec)
        self.e.events.network("create", n)
        return Response(201, {"Id": n.id, "Warning": ""})

    def network_remove(self, req: Request, ref: str) -> Response:
        n = self.e.networks.get(ref)
        self.e.network_remove(ref)
        self.e.events.network("destroy", n)
        return Response(204)

    def network_prune(self, req: Request) -> Response:
        wanted = PruneFilter.parse(req.query.get("filters"))
        before = {n.name: n for n in self.e.network_list()}
        removed = self.e.network_prune(wanted)
        for name in removed:
            self.e.events.network("destroy", before[name])
        return Response(200, {"NetworksDeleted": removed or None})

    def network_connect(self, req: Request, ref: str) -> Response:
        n = self.e.networks.get(ref)
        container, wanted = endpoint_settings.connect_body(req.json(), n.name)
        c = self.e.get(container)
        if not c.running:
            # Docker keeps it for the container's next start.
            requests.connect_later(self.e, c, n, wanted)
            return Response(200)
        self.e.connect(n.id, c.id, wanted.ip, wanted.aliases, wanted.mac, wanted.ip6)
        return Response(200)

    def network_disconnect(self, req: Request, ref: str) -> Response:
        n = self.e.networks.get(ref)
        container, force = endpoint_settings.disconnect_body(req.json())
        try:
            c = self.e.get(container)
        except NotFound:
            if not force:
                raise
            # Docker's -f: the endpoint a container left behind when it went, deleted.
            self.e.disconnect(n.id, container, True)
            return Response(200)
        if not c.running:
            requests.disconnect_later(self.e, c, n)
            return Response(200)
        self.e.disconnect(n.id, c.id, force)
        return Response(200)
