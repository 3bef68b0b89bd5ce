"""DNS answer latency of dockyard's resolver (dockyard.dns), in throwaway namespaces.

    .venv/bin/python bench/dns_latency.py [--queries N] [--json PATH]
    .venv/bin/python bench/dns_latency.py --smoke     # 5 queries per kind: for the test suite

As root. A local name (answered from the store) and a forwarded one
(relayed to an upstream resolver of the lab's, tests/tools/upstream_dns.py),
asked N times each over UDP from a member of a user network, one query at a
time; prints the median and the 90th percentile per kind.

    upstream U                  host H                      member M
    upstream_dns.py on          dockyard.dns on
    198.51.100.2        <->     10.89.1.1 (g1)      <->     10.89.1.5 (eth0)

U and H are a lab's (tests/lab.py through demo/netlab.py); M hangs on H by a
veth of its own. The resolver runs alone (`python -m dockyard.dns`), on a
store that records the network and two containers, `web` and the client
(whose resolver is the upstream). Nothing touches the root namespace;
everything made is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import subprocess
import sys
import time
from typing import Any

from dnslib import DNSRecord

from _common import REPO, BenchError, summary
from _report import Report, Table
from _script import UP_ADDR, Run, ScriptLab, main, options
from dockyard.kernel import netns
from dockyard.model import Container, ContainerConfig, DriverName, Endpoint, EndpointOwner, Network
from dockyard.settings import Paths
from dockyard.store import Store
from netlab import run as sh
from netlab import wait_for_line

GATEWAY, CLIENT, SERVER = "10.89.1.1", "10.89.1.5", "10.89.1.2"
LOCAL_NAME, FORWARDED_NAME = "web", "ext.example.org"
UPSTREAM_DNS = str(REPO / "tests" / "tools" / "upstream_dns.py")


def record_network(store: Store) -> None:
    """The user network, `web` on it, and the client, whose resolver is the upstream."""
    nid = secrets.token_hex(32)
    net = Network(
        id=nid,
        name="benchnet",
        driver=DriverName.BRIDGE,
        subnet=ipaddress.IPv4Network("10.89.1.0/24"),
        gateway=ipaddress.IPv4Address(GATEWAY),
        bridge=f"dy-{nid[:12]}",
    )
    store.add_network(net)
    for name, address, dns in ((LOCAL_NAME, SERVER, ()), ("client", CLIENT, (UP_ADDR,))):
        c = Container(
            id=secrets.token_hex(32),
            name=name,
            config=ContainerConfig(cmd=("true",), dns=tuple(ipaddress.IPv4Address(x) for x in dns)),
        )
        store.add_container(c)
        store.add_endpoint(
            Endpoint(
                id=secrets.token_hex(32),
                owner=EndpointOwner.container(c.id),
                network_id=nid,
                ifname="eth0",
                address=ipaddress.IPv4Interface(f"{address}/24"),
                gateway=net.gateway,
                mac="02:42:0a:59:01:02",
                host_ifname=f"veth{secrets.token_hex(4)[:7]}",
            )
        )


def start_resolver(lab: ScriptLab) -> None:
    """dockyard.dns in the lab's host namespace, on a store of its own; back once it answers."""
    root = lab.tmp / "dns-root"  # not the lab's $ROOT: no daemon is to find this network
    root.mkdir()
    store = Store(Paths(root).database)
    record_network(store)
    store.close()
    (lab.tmp / "resolv.conf").write_text("")
    with open(lab.tmp / "resolver.log", "w") as log:
        resolver = subprocess.Popen(
            [
                *("nsenter", f"--net=/run/netns/{lab.host}", sys.executable, "-m", "dockyard.dns"),
                *("--root", str(root), "--resolv-conf", str(lab.tmp / "resolv.conf")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            text=True,
        )
    lab.procs.append(resolver)  # stopped by the lab's teardown
    lab.remember_pid(resolver.pid)
    with member_socket(lab) as sock:
        sock.settimeout(0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                ask(sock, LOCAL_NAME)
                return
            except TimeoutError:
                if resolver.poll() is not None or time.monotonic() > deadline:
                    said = (lab.tmp / "resolver.log").read_text().strip()[-300:]
                    raise BenchError(f"the resolver did not answer within 10 s: {said}") from None


def member(lab: ScriptLab) -> str:
    return lab.host.replace("-h-", "-m-")


def member_socket(lab: ScriptLab) -> socket.socket:
    with netns.entered(f"/run/netns/{member(lab)}"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((CLIENT, 0))
    return sock


def ask(sock: socket.socket, name: str) -> float:
    """One query and its answer; the time it took in ms."""
    query = DNSRecord.question(name)
    started = time.perf_counter()
    sock.sendto(query.pack(), (GATEWAY, 53))
    reply = DNSRecord.parse(sock.recv(4096))
    elapsed = (time.perf_counter() - started) * 1000
    if reply.header.id != query.header.id or not reply.rr:
        raise BenchError(f"bad answer for {name}: {reply}")
    return elapsed


def measure(run: Run, args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    lab = run.lab()
    lab.add_netns(member(lab))
    peer = ("peer", "name", "eth0", "netns", member(lab))
    sh(["ip", "link", "add", "g1", "netns", lab.host, "type", "veth", *peer])
    sh(["ip", "-n", lab.host, "addr", "add", f"{GATEWAY}/24", "dev", "g1"])
    sh(["ip", "-n", member(lab), "addr", "add", f"{CLIENT}/24", "dev", "eth0", "nodad"])
    for ns, link in ((lab.host, "g1"), (member(lab), "eth0"), (member(lab), "lo")):
        sh(["ip", "-n", ns, "link", "set", link, "up"])
    upstream = lab.spawn_in(lab.up, sys.executable, UPSTREAM_DNS, UP_ADDR, f"{FORWARDED_NAME}=203.0.113.10")
    wait_for_line(upstream, timeout=10)
    start_resolver(lab)
    with member_socket(lab) as sock:
        sock.settimeout(5)
        for _ in range(3):  # warm up
            ask(sock, LOCAL_NAME)
        results = {
            f"local name ({LOCAL_NAME})": [ask(sock, LOCAL_NAME) for _ in range(args.queries)],
            f"forwarded ({FORWARDED_NAME})": [ask(sock, FORWARDED_NAME) for _ in range(args.queries)],
        }
    stats = {label: summary(ms) for label, ms in results.items()}
    columns = ["median", "p10", "p90", "min", "max"]
    rows = [[label, *(f"{s[k]:.3f}" for k in columns)] for label, s in stats.items()]
    report = Report(
        key="dns_latency",
        title="DNS answer latency",
        method=(
            f"{args.queries} UDP queries of each kind, one at a time, from a member of a user network to "
            "dockyard's resolver on its gateway: a local name (answered from the store) and a forwarded one "
            "(relayed to an upstream resolver in the lab's upstream namespace)."
        ),
        tables=[Table("answer time (ms)", ["query", *columns], rows)],
    )
    raw = {
        "queries": args.queries,
        "results": {
            label: {"median_ms": stats[label]["median"], "p90_ms": stats[label]["p90"], "times_ms": ms}
            for label, ms in results.items()
        },
    }
    return report, raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = options(__doc__, "5 queries per kind")
    p.add_argument("--queries", type=int, default=1000, help="queries per kind (default 1000)")
    args = p.parse_args(argv)
    if args.smoke:
        args.queries = 5
    if args.queries < 1:
        p.error("--queries must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args(None)
    sys.exit(main("dns_latency", arguments, lambda run: measure(run, arguments)))
