"""The API of explain, trace, graph and metrics: dockyard's own paths, no Docker shape.

    GET  /dockyard/explain/{ref}?port=8080/tcp&from=ADDRESS    a Report as JSON
    GET  /dockyard/graph?network=NAME                          the graph as JSON, with its DOT text
    POST /dockyard/trace  {"from", "to", "probe", "timeout"}   a stream of JSON lines:
         {"status": "tracing", "tables": ...} once the flow is traced (send a packet now),
         then {"report": {...}}, or {"error": "..."} if it failed on the way
    GET  /metrics                                              Prometheus' text format

Parses and formats; the reading and reasoning are engine/explain.py's and
policy/explain's, loaded with the first of these requests (as the parsing here).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.explain import Explainer
from dockyard.errors import DockyardError, InvalidArgument

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TRACE_TIMEOUT = 10.0


def _json(obj: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


class ExplainRoutes:
    def __init__(self, explainer: Explainer, metrics_text: Callable[[], str] | None = None) -> None:
        self.x = explainer
        self.metrics_text = metrics_text

    def register(self, r: Callable[..., None]) -> None:
        r("GET", r"/dockyard/explain/(?P<ref>[^/]+)", self.explain)
        r("GET", r"/dockyard/graph", self.graph)
        r("POST", r"/dockyard/trace", self.trace)
        r("GET", r"/metrics", self.metrics)

    def explain(self, req: Request, ref: str) -> Response:
        from dockyard.policy.explain.args import parse_port

        port = parse_port(req.query["port"]) if req.query.get("port") else None
        report = self.x.explain(ref, port, req.query.get("from", ""))
        body = _json(report)
        body["mismatches"] = report.mismatches
        return Response(200, body)

    def graph(self, req: Request) -> Response:
        from dockyard.policy.graph import to_dot

        ref = req.query.get("network", "")
        g = self.x.graph(ref)
        title = f"dockyard: network {ref}" if ref else "dockyard: host topology"
        body = _json(g)
        body["dot"] = to_dot(g, title)
        return Response(200, body)

    def trace(self, req: Request) -> Response:
        from dockyard.policy.explain.args import parse_flow

        body = req.json()
        if not isinstance(body, dict):
            raise InvalidArgument("the trace request must be a JSON object")
        unknown = sorted(set(body) - {"from", "to", "probe", "timeout"})
        if unknown:
            raise InvalidArgument(f"unknown trace field {unknown[0]!r}")
        flow = parse_flow(str(body.get("from") or ""), str(body.get("to") or ""))
        timeout = body.get("timeout", DEFAULT_TRACE_TIMEOUT)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise InvalidArgument("invalid timeout: give a number of seconds")
        probe = bool(body.get("probe"))

        def run(write: Callable[[bytes], None]) -> None:
            def ready(tables: str) -> None:
                write(
                    (json.dumps({"status": "tracing", "flow": str(flow), "tables": tables}) + "\n").encode()
                )
                write(b"\n")  # the sender holds its last piece back: this lets the line above go

            try:
                report = self.x.trace(flow, probe, float(timeout), ready)
            except DockyardError as e:
                write((json.dumps({"error": e.message, "kind": e.kind}) + "\n").encode())
                return
            write((json.dumps({"report": _json(report)}) + "\n").encode())

        return Response(200, content_type="application/json", stream=run)

    def metrics(self, req: Request) -> Response:
        if self.metrics_text is None:
            return Response(404, {"message": "metrics are not served by this daemon", "kind": "NotFound"})
        return Response(200, self.metrics_text().encode(), PROMETHEUS_TEXT)
