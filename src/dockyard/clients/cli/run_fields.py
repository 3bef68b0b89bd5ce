"""run's flags for issue 13's fields: --label, -v, --mount, --restart, --add-host, --sysctl,
--mac-address, a second --network, --stop-signal, --stop-timeout.

Each becomes the Engine API field Docker's CLI sends; the daemon checks
them (create_fields.py), so a value the daemon refuses is refused the same
way from dockyard's CLI and from Docker's.
"""

from __future__ import annotations

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: clients start faster
if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY[=VALUE]", help="set a label")
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="bind mount a host path into the container",
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=bind,source=..,target=..[,readonly]",
        help="attach a bind mount",
    )
    p.add_argument(
        "--restart",
        default="no",
        metavar="POLICY",
        help="no, on-failure[:max-retries], always or unless-stopped",
    )
    p.add_argument(
        "--add-host", action="append", default=[], metavar="HOST:IP", help="add a line to /etc/hosts"
    )
    p.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE", help="a net.* sysctl")
    p.add_argument("--mac-address", default="", metavar="MAC", help="the container's MAC address")
    p.add_argument(
        "--stop-signal", default="", metavar="SIGNAL", help="the signal stop sends (default SIGTERM)"
    )
    p.add_argument("--stop-timeout", type=int, default=None, metavar="SECONDS", help="stop's grace period")


def _restart(text: str) -> dict[str, Any]:
    name, _, retries = text.partition(":")
    if retries and not retries.isdigit():
        raise InvalidArgument(f"invalid restart policy {text!r}: maximum retry count must be a number")
    return {"Name": name, "MaximumRetryCount": int(retries or 0)}


def _mount(spec: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"Type": "bind"}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key == "type":
            fields["Type"] = value
        elif key in ("source", "src"):
            fields["Source"] = value
        elif key in ("target", "destination", "dst"):
            fields["Target"] = value
        elif key in ("readonly", "ro"):
            fields["ReadOnly"] = not sep or value in ("1", "true")
        else:
            raise InvalidArgument(f"invalid --mount {spec!r}: unknown field {key!r}")
    return fields


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {item!r}: the key is empty")
        out[key] = value
    return out


def apply(body: dict[str, Any], args: argparse.Namespace, networks: list[str]) -> None:
    """Put the flags' fields in a containers/create body; networks: every --network given."""
    host = body["HostConfig"]
    body["Labels"] = _pairs(args.label, "--label")
    if args.mac_address:
        body["MacAddress"] = args.mac_address
    if args.stop_signal:
        body["StopSignal"] = args.stop_signal
    if args.stop_timeout is not None:
        body["StopTimeout"] = args.stop_timeout
    host["Binds"] = args.volume
    host["Mounts"] = [_mount(spec) for spec in args.mount]
    host["RestartPolicy"] = _restart(args.restart)
    host["ExtraHosts"] = args.add_host
    host["Sysctls"] = {k: v for k, v in _pairs(args.sysctl, "--sysctl").items()}
    if len(networks) > 1:
        endpoints = body.setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {})
        for name in networks[1:]:
            endpoints.setdefault(name, {})
