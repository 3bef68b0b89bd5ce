"""Docker's plugin protocol on its own socket: libnetwork's remote network and IPAM drivers.

dockerd finds the socket in /run/docker/plugins (settings.py's
docker-plugin-socket), activates the plugin, then POSTs one JSON object per
call to /<Interface>.<Method>. This module owns that wire: it reads each
request, asks engine/docker_plugin.py, and answers with Docker's shapes;
every failure is {"Err": "<message>"}, the shape Docker shows its user.
The HTTP framing and the server are the API's (api/http.py, api/server.py).

A plugin has one scope, so the overlay driver (where the daemon is in a
cluster) is a plugin of its own on a second socket, `dockyard-overlay`: a
NetworkDriver of scope global, whose networks are dockyard overlay
networks and whose addresses are Docker's default IPAM's (its global
address space, kept in dockerd's cluster store).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.daemon.api.http import Request, Response
from dockyard.engine.docker_plugin import (
    GLOBAL_SPACE,
    LOCAL_SPACE,
    MAC_OPTION,
    NUMBERS,
    PORTMAP,
    DockerPlugin,
)
from dockyard.errors import DockyardError
from dockyard.model import DriverName

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


def overlay_socket(path: Path) -> Path:
    """The overlay driver's socket beside the plugin's: Docker names a plugin by its socket,
    so /run/docker/plugins/dockyard-overlay.sock is the driver `dockyard-overlay`."""
    return path.with_name(f"{path.stem}-overlay{path.suffix}")


class PluginApi:
    """One handler for every call dockerd makes; the engine's DockerPlugin does the work."""

    def __init__(self, plugin: DockerPlugin, overlay: bool = False) -> None:
        self.plugin = plugin
        self.driver = DriverName.OVERLAY if overlay else DriverName.BRIDGE
        scope = "global" if overlay else "local"
        implements = ["NetworkDriver"] if overlay else ["NetworkDriver", "IpamDriver"]
        self.calls: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/Plugin.Activate": lambda _: {"Implements": implements},
            "/NetworkDriver.GetCapabilities": lambda _: {"Scope": scope, "ConnectivityScope": scope},
            "/NetworkDriver.CreateNetwork": self.create_network,
            "/NetworkDriver.DeleteNetwork": self.delete_network,
            "/NetworkDriver.CreateEndpoint": self.create_endpoint,
            "/NetworkDriver.EndpointOperInfo": self.oper_info,
            "/NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "/NetworkDriver.Join": self.join,
            "/NetworkDriver.Leave": self.leave,
            "/NetworkDriver.ProgramExternalConnectivity": self.program_external,
            "/NetworkDriver.RevokeExternalConnectivity": self.revoke_external,
            # Discovery (other nodes: dockyard's cluster knows its hosts) and swarm's network
            # allocation (classic --cluster-store networks are made by CreateNetwork): nothing to do.
            "/NetworkDriver.DiscoverNew": lambda _: {},
            "/NetworkDriver.DiscoverDelete": lambda _: {},
            "/NetworkDriver.AllocateNetwork": lambda _: {},
            "/NetworkDriver.FreeNetwork": lambda _: {},
        }
        if overlay:
            return  # a global network's addresses are Docker's default IPAM's
        self.calls |= {
            "/IpamDriver.GetCapabilities": lambda _: {"RequiresMACAddress": False},
            "/IpamDriver.GetDefaultAddressSpaces": lambda _: {
                "LocalDefaultAddressSpace": LOCAL_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_SPACE,
            },
            "/IpamDriver.RequestPool": self.request_pool,
            "/IpamDriver.ReleasePool": self.release_pool,
            "/IpamDriver.RequestAddress": self.request_address,
            "/IpamDriver.ReleaseAddress": self.release_address,
        }

    def handle(self, req: Request) -> Response:
        call = self.calls.get(req.path)
        if call is None or req.method != "POST":
            return self._err(404, f"{req.method} {req.path} is not a call of dockyard's Docker plugin")
        try:
            body = json.loads(req.body) if req.body.strip() else {}
        except ValueError:
            return self._err(400, f"{req.path}: the request is not JSON")
        if not isinstance(body, dict):
            return self._err(400, f"{req.path}: the request must be a JSON object")
        log.debug("docker plugin: %s %s", req.path, body)
        return Response(200, call(body), CONTENT_TYPE)

    def error(self, e: BaseException) -> Response:
        if isinstance(e, DockyardError):
            return self._err(400, str(e))
        if isinstance(e, (KeyError, TypeError, ValueError)):
            return self._err(400, f"malformed request: {e}")
        log.error("docker plugin call failed", exc_info=e)
        return self._err(500, f"internal error in dockyard: {e}")

    @staticmethod
    def _err(status: int, message: str) -> Response:
        return Response(status, {"Err": message}, CONTENT_TYPE)

    # -- NetworkDriver ---------------------------------------------------------

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.create_network(
            body["NetworkID"],
            body.get("Options") or {},
            body.get("IPv4Data") or [],
            body.get("IPv6Data") or [],
            self.driver,
        )
        return {}

    def delete_network(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.delete_network(body["NetworkID"], self.driver)
        return {}

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        iface = body.get("Interface") or {}
        endpoint = self.plugin.create_endpoint(
            body["NetworkID"],
            body["EndpointID"],
            iface.get("Address") or "",
            iface.get("MacAddress") or "",
            body.get("Options") or {},
            iface.get("AddressIPv6") or "",
        )
        # Docker set what it gave; the MAC (and an IPv6 address leased here) are ours to tell.
        told: dict[str, str] = {}
        if not iface.get("MacAddress"):
            told["MacAddress"] = endpoint.mac
        if not iface.get("AddressIPv6") and endpoint.address6 is not None:
            told["AddressIPv6"] = str(endpoint.address6)
        return {"Interface": told} if told else {}

    def delete_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.delete_endpoint(body["NetworkID"], body["EndpointID"])
        return {}

    def oper_info(self, body: dict[str, Any]) -> dict[str, Any]:
        endpoint, bindings = self.plugin.oper_info(body["NetworkID"], body["EndpointID"])
        ports = [
            {
                "Proto": NUMBERS[b.proto],
                "IP": str(endpoint.address.ip if endpoint.address else ""),
                "Port": b.container_port,
                "HostIP": b.host_ip_text,
                "HostPort": b.host_port,
                "HostPortEnd": b.host_port,
            }
            for b in bindings
        ]
        return {"Value": {PORTMAP: ports, MAC_OPTION: endpoint.mac}}

    def join(self, body: dict[str, Any]) -> dict[str, Any]:
        joined = self.plugin.join(body["NetworkID"], body["EndpointID"])
        out: dict[str, Any] = {"InterfaceName": {"SrcName": joined.src_name, "DstPrefix": "eth"}}
        if joined.gateway is not None:
            out["Gateway"] = str(joined.gateway)
        if joined.gateway6 is not None:
            out["GatewayIPv6"] = str(joined.gateway6)
        return out

    def leave(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.leave(body["NetworkID"], body["EndpointID"])
        return {}

    def program_external(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.program_external(body["NetworkID"], body["EndpointID"], body.get("Options") or {})
        return {}

    def revoke_external(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.revoke_external(body["NetworkID"], body["EndpointID"])
        return {}

    # -- IpamDriver ------------------------------------------------------------

    def request_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        subnet = self.plugin.request_pool(
            body.get("AddressSpace") or "",
            body.get("Pool") or "",
            body.get("SubPool") or "",
            body.get("Options") or {},
            bool(body.get("V6")),
        )
        return {"PoolID": str(subnet), "Pool": str(subnet), "Data": {}}

    def release_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.release_pool(body["PoolID"])
        return {}

    def request_address(self, body: dict[str, Any]) -> dict[str, Any]:
        address = self.plugin.request_address(
            body["PoolID"], body.get("Address") or "", body.get("Options") or {}
        )
        return {"Address": str(address), "Data": {}}

    def release_address(self, body: dict[str, Any]) -> dict[str, Any]:
        self.plugin.release_address(body["PoolID"], body["Address"])
        return {}
