"""Each call of Docker's plugin protocol, timed at dockyardd's socket, with no dockerd.

    .venv/bin/python bench/docker_plugin_calls.py [--runs N] [--warmup N] [--json PATH]
    .venv/bin/python bench/docker_plugin_calls.py --smoke

Issue 17's bench, finer than bench/docker_plugin.py: that one times the
whole `docker run --rm`, where Docker's own work and the machine's load
hide dockyard's share. Here one lab's dockyardd serves the plugin protocol
and this script plays dockerd: one keep-alive connection to the socket, as
Docker's plugin client holds, and for every round the calls `docker run
--rm` makes on a `-d dockyard --ipam-driver dockyard` network, in Docker's
order (RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity
with no ports, then RevokeExternalConnectivity, Leave, DeleteEndpoint,
ReleaseAddress), each timed from its request sent to its answer read. The
veth Join makes stays in the lab's host namespace (Docker would move it
into the container and back before Leave). Rounds follow each other at
once unless --pause spaces them (a container's life; back to back, a Join
shares the kernel with the removal of the veth before it). Reported: each
call's median and p10-p90, and a round's total; never asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from _common import summary
from _report import Report, Table, spread
from _script import BenchError, Run, main, options

NETWORK_ID = "b" * 64
ROUND = (
    "IpamDriver.RequestAddress",
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.Join",
    "NetworkDriver.ProgramExternalConnectivity",
    "NetworkDriver.RevokeExternalConnectivity",
    "NetworkDriver.Leave",
    "NetworkDriver.DeleteEndpoint",
    "IpamDriver.ReleaseAddress",
)


class PluginClient(http.client.HTTPConnection):
    """dockerd's side of the socket: one connection kept alive."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(str(self.path))
        self.sock = sock

    def call(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        data = json.dumps(body).encode()
        started = time.perf_counter()
        self.request("POST", f"/{name}", data, {"Content-Type": "application/json"})
        resp = self.getresponse()
        answer = json.loads(resp.read() or b"{}")
        ms = (time.perf_counter() - started) * 1000
        if resp.status != 200 or answer.get("Err"):
            raise RuntimeError(f"{name}: {resp.status} {answer}")
        return answer, ms


def one_round(client: PluginClient, pool: str) -> dict[str, float]:
    endpoint = secrets.token_hex(32)  # random, as Docker's: the names of the veth come from it
    took: dict[str, float] = {}

    def call(name: str, body: dict[str, Any]) -> dict[str, Any]:
        answer, took[name] = client.call(name, body)
        return answer

    address = call("IpamDriver.RequestAddress", {"PoolID": pool, "Address": "", "Options": {}})["Address"]
    ep = {"NetworkID": NETWORK_ID, "EndpointID": endpoint}
    call("NetworkDriver.CreateEndpoint", {**ep, "Interface": {"Address": address}, "Options": {}})
    call("NetworkDriver.Join", {**ep, "SandboxKey": "/var/run/docker/netns/x", "Options": {}})
    call("NetworkDriver.ProgramExternalConnectivity", {**ep, "Options": {}})
    call("NetworkDriver.RevokeExternalConnectivity", ep)
    call("NetworkDriver.Leave", ep)
    call("NetworkDriver.DeleteEndpoint", ep)
    call("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": address.split("/")[0]})
    return took


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    lab = run.lab()
    plugins = run.work / "plugins"
    plugins.mkdir(parents=True)
    lab.root.mkdir(parents=True, exist_ok=True)
    settings = {"docker-plugin": True, "docker-plugin-socket": str(plugins / "dockyard.sock")}
    (lab.root / "daemon.json").write_text(json.dumps(settings))
    lab.start_daemon()
    deadline = time.monotonic() + 60
    while not (plugins / "dockyard.sock").exists():  # bound once the daemon has started
        if time.monotonic() > deadline:
            raise BenchError("dockyardd did not serve the plugin socket within 60 s")
        time.sleep(0.05)
    client = PluginClient(plugins / "dockyard.sock")
    client.call("Plugin.Activate", {})
    pool = client.call(
        "IpamDriver.RequestPool",
        {"AddressSpace": "dockyard-local", "Pool": "", "SubPool": "", "Options": {}, "V6": False},
    )[0]["PoolID"]
    gateway = client.call(
        "IpamDriver.RequestAddress",
        {"PoolID": pool, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}},
    )[0]["Address"]
    client.call(
        "NetworkDriver.CreateNetwork",
        {
            "NetworkID": NETWORK_ID,
            "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "dockyard-local", "Pool": pool, "Gateway": gateway}],
            "IPv6Data": [],
        },
    )
    print(f"the calls of docker run --rm: {args.warmup} warm-up and {args.runs} timed round(s) ...")
    samples: dict[str, list[float]] = {name: [] for name in ROUND}
    totals: list[float] = []
    for r in range(-args.warmup, args.runs):
        took = one_round(client, pool)
        if r >= 0:
            for name, ms in took.items():
                samples[name].append(ms)
            totals.append(sum(took.values()))
        if args.pause:
            time.sleep(args.pause)
    client.call("NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK_ID})
    client.call("IpamDriver.ReleasePool", {"PoolID": pool})
    client.close()
    rows = [[name, spread(v, 1), str(len(v))] for name, v in samples.items()]
    rows.append(["a round's calls, summed", spread(totals, 1), str(len(totals))])
    table = Table(
        "each call at the plugin socket (ms, median and p10-p90)", ["call", "ms (p10-p90)", "runs"], rows
    )
    raw = {name: {"samples": v, **summary(v)} for name, v in samples.items()}
    report = Report(
        key="docker_plugin_calls",
        title="Docker's plugin protocol, call by call",
        method=(
            "dockyardd serving the plugin protocol in a lab, this script as dockerd on one keep-alive "
            f"connection; {args.runs} round(s) of the calls docker run --rm makes, after {args.warmup} "
            "warm-up, each timed from request to answer."
        ),
        tables=[table],
    )
    return report, {"calls": raw, "round_ms": totals}


def parse(argv: list[str]) -> argparse.Namespace:
    p = options(__doc__ or "", "3 rounds: for the test suite")
    p.add_argument("--runs", type=int, default=50, help="timed rounds (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    p.add_argument("--pause", type=float, default=0.0, help="seconds between rounds (default 0)")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.warmup = 3, 1
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be at least 1")
    return args


if __name__ == "__main__":
    parsed = parse(sys.argv[1:])
    sys.exit(main("docker_plugin_calls", parsed, lambda run: measure(run, parsed)))
