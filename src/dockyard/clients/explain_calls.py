"""The API client's calls for explain, trace, graph and metrics (dockyard's own paths).

Stdlib only, like the rest of the client. `trace` reads a stream of JSON
lines: a status once the flow is traced (the caller says "send a packet
now"), then the report, or an error.
"""

from __future__ import annotations

import io
import json

from dockyard.clients.wire import quote
from dockyard.errors import DaemonUnavailable, from_wire

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class ExplainCalls:
    def explain(self, ref: str, port: str = "", source: str = "") -> dict[str, Any]:
        query = {"port": port or None, "from": source or None}
        return self.request("GET", f"/dockyard/explain/{quote(ref)}", query=query)  # type: ignore[attr-defined]

    def graph(self, network: str = "") -> dict[str, Any]:
        return self.request("GET", "/dockyard/graph", query={"network": network or None})  # type: ignore[attr-defined]

    def metrics(self) -> str:
        data = self.request("GET", "/metrics")  # type: ignore[attr-defined]
        return data.decode() if isinstance(data, bytes) else str(data)

    def trace(
        self,
        source: str,
        target: str,
        probe: bool = False,
        timeout: float = 10.0,
        on_ready: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        body = json.dumps({"from": source, "to": target, "probe": probe, "timeout": timeout}).encode()
        conn = self._open(  # type: ignore[attr-defined]
            "POST", "/dockyard/trace", {"Content-Type": "application/json"}, io.BytesIO(body)
        )
        try:
            conn.sock.settimeout(None)  # the daemon bounds the wait (timeout, and each probe)
            pending = b""
            for piece in self._pieces(conn):  # type: ignore[attr-defined]  # the answer as it comes
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise from_wire(str(message.get("kind", "DockyardError")), str(message["error"]))
                    if "report" in message:
                        return dict(message["report"])
                    if on_ready is not None:
                        on_ready(message)
        finally:
            conn.close()
        raise DaemonUnavailable("the daemon ended the trace without a report (see its log)")
