"""The daemon's metrics, in Prometheus' text format (0.0.4).

Served at `GET /metrics` on the API's socket, and, when daemon.json says
`"metrics-addr": "127.0.0.1:9323"` (Docker's key), over plain HTTP on that
address in the daemon's host namespace: nothing else is served there.

Kept here, between scrapes: API requests and their latency (the handler
the server calls is wrapped: one call site, no change to the server or
the wire), and reconciliation's repairs (the start-up reconciliation and
each `system gc`, as their reports say). Read at each scrape
(engine/gauges.py): containers, endpoints, published ports, nft elements,
and the resolver's queries and forwards.

Names follow Prometheus' conventions: the `dockyard_` prefix, base units
(`_seconds`), `_total` for counters, labels for dimensions with few
values (a request's route is its pattern, `/containers/{ref}/json`, never
its path).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine import gauges
from dockyard.errors import DockyardError

# Seconds: from a cached `ps` (a millisecond) to a slow `run` or `rm` (seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
Route = tuple[str, re.Pattern[str], Any]


def route_label(pattern: str) -> str:
    """`^(?:/v[0-9.]+)?/containers/(?P<ref>[^/]+)/json$` -> `/containers/{ref}/json`."""
    text = pattern.removeprefix("^").removesuffix("$").replace("(?:/v[0-9.]+)?", "")
    return _GROUP.sub(lambda m: "{" + m.group(1) + "}", text)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) and not v.is_integer() else str(int(v))


class Metrics:
    def __init__(self, engine: Any = None) -> None:
        self.engine = engine  # None: no gauges (tests of the text alone)
        self._routes: list[tuple[str, re.Pattern[str], str]] = []
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        # (method, route) -> bucket counts (one per BUCKETS, then +Inf), sum, count
        self._latency: dict[tuple[str, str], tuple[list[int], float, int]] = {}
        self._repairs: dict[str, int] = {"removed": 0, "restored": 0, "not_removed": 0}
        self._reconciles = 0

    def know(self, routes: list[Route]) -> None:
        """The API's routes, whose patterns label the requests."""
        self._routes = [(method, pattern, route_label(pattern.pattern)) for method, pattern, _fn in routes]

    # -- what is counted ------------------------------------------------------------

    def _route_of(self, req: Request) -> str:
        for method, pattern, label in self._routes:
            if method == req.method and pattern.match(req.path):
                return label
        return "other"

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            buckets, total, count = self._latency.get((method, route)) or ([0] * (len(BUCKETS) + 1), 0.0, 0)
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-1] += 1
            self._latency[(method, route)] = (buckets, total + seconds, count + 1)

    def repairs(self, removed: int, restored: int, not_removed: int) -> None:
        with self._lock:
            self._reconciles += 1
            self._repairs["removed"] += removed
            self._repairs["restored"] += restored
            self._repairs["not_removed"] += not_removed

    def wrap(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """The API's handler, timed: each request's route, status and latency (to its answer's
        headers: a deferred body, a foreground run's wait, is not in it)."""

        def timed(req: Request) -> Response:
            start = time.monotonic()
            route = self._route_of(req)
            status = 500
            try:
                resp = handler(req)
                status = resp.status
                if route == "/system/gc" and status == 200 and isinstance(resp.body, dict):
                    body = resp.body
                    self.repairs(
                        len(body.get("Removed") or ()),
                        len(body.get("Restored") or ()),
                        len(body.get("NotRemoved") or ()),
                    )
                return resp
            except DockyardError as e:
                status = e.http_status
                raise
            finally:
                self.observe(req.method, route, status, time.monotonic() - start)

        return timed

    # -- the text ---------------------------------------------------------------------

    def text(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, helptext: str, samples: Iterable[tuple[str, Any, float]]) -> None:
            out.append(f"# HELP {name} {helptext}")
            out.append(f"# TYPE {name} {kind}")
            for suffix, labels, value in samples:
                out.append(f"{name}{suffix}{_labels(labels)} {_number(value)}")

        g = gauges.read(self.engine) if self.engine is not None else gauges.Gauges()
        family(
            "dockyard_containers",
            "gauge",
            "Containers of this root, by state.",
            [("", [("state", s)], n) for s, n in sorted(g.containers.items())],
        )
        family(
            "dockyard_endpoints",
            "gauge",
            "Endpoints (a container on a network), by network.",
            [("", [("network", s)], n) for s, n in sorted(g.endpoints.items())],
        )
        family(
            "dockyard_published_ports",
            "gauge",
            "Published host ports, by protocol.",
            [("", [("protocol", s)], n) for s, n in sorted(g.published_ports.items())],
        )
        family(
            "dockyard_nft_elements",
            "gauge",
            "This root's elements in dockyard's nftables sets and maps, read from the kernel.",
            [("", [("table", t), ("set", s)], n) for (t, s), n in sorted(g.elements.items())],
        )
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, (list(b), t, c)) for k, (b, t, c) in self._latency.items())
            repairs = sorted(self._repairs.items())
            reconciles = self._reconciles
        family(
            "dockyard_api_requests_total",
            "counter",
            "API requests served, by method, route and HTTP status.",
            [("", [("method", m), ("route", r), ("code", c)], n) for (m, r, c), n in requests],
        )
        samples: list[tuple[str, Any, float]] = []
        for (m, r), (buckets, total, count) in latency:
            base = [("method", m), ("route", r)]
            for bound, n in zip([*BUCKETS, float("inf")], buckets, strict=True):
                samples.append(
                    ("_bucket", [*base, ("le", _number(bound) if bound != float("inf") else "+Inf")], n)
                )
            samples.append(("_sum", base, total))
            samples.append(("_count", base, count))
        family(
            "dockyard_api_request_duration_seconds",
            "histogram",
            "Time to answer an API request (to its headers), by method and route.",
            samples,
        )
        family(
            "dockyard_reconcile_runs_total",
            "counter",
            "Full reconciliations run (at daemon start and by `system gc`).",
            [("", [], reconciles)],
        )
        family(
            "dockyard_reconcile_repairs_total",
            "counter",
            "What full reconciliations repaired: objects removed, put back, or not removable yet.",
            [("", [("kind", k)], n) for k, n in repairs],
        )
        family(
            "dockyard_dns_queries_total",
            "counter",
            "DNS queries the resolver received, by network, protocol and outcome "
            "(answered, forwarded, refused, dropped); 0 again after the resolver restarts.",
            [
                ("", [("network", n), ("protocol", p), ("outcome", o)], c)
                for (n, p, o), c in sorted(g.dns_queries.items())
            ],
        )
        family(
            "dockyard_dns_forwards_total",
            "counter",
            "Queries the resolver forwarded upstream, by result (answered, failed).",
            [("", [("result", k)], n) for k, n in sorted(g.dns_forwards.items())],
        )
        return "\n".join(out) + "\n"


class MetricsListener:
    """`metrics-addr`: GET /metrics over plain HTTP on one TCP address, and nothing else."""

    def __init__(self, address: tuple[str, int], text: Callable[[], str]) -> None:
        import http.server  # only with metrics-addr: it brings email, html, mimetypes (daemon memory)

        content_type = "text/plain; version=0.0.4; charset=utf-8"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    body = text().encode()
                except Exception as e:
                    self.send_error(500, f"cannot read the metrics: {e}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is no news for the daemon's log

        try:
            self.server = http.server.ThreadingHTTPServer(address, Handler)
        except OSError as e:
            host, port = address
            raise DockyardError(f"cannot serve metrics on {host}:{port} (metrics-addr): {e.strerror}") from e
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
        self.server.server_close()
