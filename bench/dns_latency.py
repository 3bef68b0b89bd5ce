"""DNS answer latency of dockyard's resolver (dockyard.dns), in throwaway namespaces.

A local name (answered from the store) and a forwarded one (relayed to an
upstream resolver of our own), asked N times each from a member of a user
network; prints the median and 90th percentile per kind.

    upstream U: dnslib server 198.51.100.2  <->  host H: dockyard.dns on 10.89.1.1  <->  member M 10.89.1.5

Run as root: `python bench/dns_latency.py [--queries N] [--smoke]`. Nothing
touches the root namespace; everything made is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from dockyard.kernel import netns
from dockyard.model import Container, ContainerConfig, DriverName, Endpoint, Network
from dockyard.settings import Paths
from dockyard.store import Store

GATEWAY, CLIENT, SERVER, UPSTREAM = "10.89.1.1", "10.89.1.5", "10.89.1.2", "198.51.100.2"
LOCAL_NAME, FORWARDED_NAME = "web", "ext.example.org"


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=30)


def ns_socket(ns: str) -> socket.socket:
    with netns.entered(f"/run/netns/{ns}"):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def serve_upstream(sock: socket.socket, stop: threading.Event) -> None:
    """FORWARDED_NAME has an address; anything else is NXDOMAIN."""
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(4096)
        except TimeoutError:
            continue
        except OSError:
            return
        query = DNSRecord.parse(data)
        reply = query.reply()
        if str(query.q.qname).rstrip(".") == FORWARDED_NAME:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("203.0.113.10"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        sock.sendto(reply.pack(), peer)


def record(store: Store) -> None:
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
    for name, address, dns in ((LOCAL_NAME, SERVER, ()), ("client", CLIENT, (UPSTREAM,))):
        c = Container(
            id=secrets.token_hex(32),
            name=name,
            config=ContainerConfig(cmd=("true",), dns=tuple(ipaddress.IPv4Address(x) for x in dns)),
        )
        store.add_container(c)
        store.add_endpoint(
            Endpoint(
                id=secrets.token_hex(32),
                container_id=c.id,
                network_id=nid,
                ifname="eth0",
                address=ipaddress.IPv4Interface(f"{address}/24"),
                gateway=net.gateway,
                mac="02:42:0a:59:01:02",
                host_ifname=f"veth{secrets.token_hex(4)[:7]}",
            )
        )


def measure(sock: socket.socket, name: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        query = DNSRecord.question(name)
        started = time.perf_counter()
        sock.sendto(query.pack(), (GATEWAY, 53))
        reply = DNSRecord.parse(sock.recv(4096))
        times.append((time.perf_counter() - started) * 1000)
        if reply.header.id != query.header.id or not reply.rr:
            raise SystemExit(f"bad answer for {name}: {reply}")
    return times


def p90(times: list[float]) -> float:
    return statistics.quantiles(times, n=10, method="inclusive")[8] if len(times) > 1 else times[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000, help="queries per kind (default 1000)")
    parser.add_argument("--smoke", action="store_true", help="5 queries per kind")
    parser.add_argument("--json", metavar="PATH", help="also write the raw times (ms) as JSON to PATH")
    args = parser.parse_args()
    count = 5 if args.smoke else args.queries
    if os.geteuid() != 0:
        print("dns_latency: run as root (it makes network namespaces)", file=sys.stderr)
        return 1
    tag = secrets.token_hex(3)
    host, up, member = f"dyt-bh-{tag}", f"dyt-bu-{tag}", f"dyt-bm-{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="dyt-dns-bench-"))
    made: list[str] = []
    resolver: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    upstream_sock: socket.socket | None = None
    thread: threading.Thread | None = None
    try:
        for ns in (host, up, member):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for ns_a, a, addr_a, ns_b, b, addr_b in (
            (host, "up0", "198.51.100.1/24", up, "eth0", f"{UPSTREAM}/24"),
            (host, "g1", f"{GATEWAY}/24", member, "eth0", f"{CLIENT}/24"),
        ):
            sh("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
            sh("ip", "-n", ns_a, "addr", "add", addr_a, "dev", a)
            sh("ip", "-n", ns_b, "addr", "add", addr_b, "dev", b, "nodad")
            sh("ip", "-n", ns_a, "link", "set", a, "up")
            sh("ip", "-n", ns_b, "link", "set", b, "up")
        upstream_sock = ns_socket(up)
        upstream_sock.bind((UPSTREAM, 53))
        thread = threading.Thread(target=serve_upstream, args=(upstream_sock, stop), daemon=True)
        thread.start()

        root = tmp / "root"
        root.mkdir()
        store = Store(Paths(root).database)
        record(store)
        store.close()
        empty = tmp / "resolv.conf"
        empty.write_text("")
        resolver = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{host}",
                *(sys.executable, "-m", "dockyard.dns", "--root", str(root), "--resolv-conf", str(empty)),
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (root / "dns.pid").exists():
            if resolver.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the resolver did not start")
            time.sleep(0.01)

        with ns_socket(member) as sock:
            sock.bind((CLIENT, 0))
            sock.settimeout(5)
            measure(sock, LOCAL_NAME, 3)  # warm up
            results = [
                (f"local name ({LOCAL_NAME})", measure(sock, LOCAL_NAME, count)),
                (f"forwarded ({FORWARDED_NAME})", measure(sock, FORWARDED_NAME, count)),
            ]
        print(f"DNS answer latency over UDP, {count} queries each")
        print(f"{'query':34} {'median ms':>10} {'p90 ms':>10}")
        for label, times in results:
            print(f"{label:34} {statistics.median(times):10.3f} {p90(times):10.3f}")
        if args.json:
            raw = {
                label: {"median_ms": statistics.median(times), "p90_ms": p90(times), "times_ms": times}
                for label, times in results
            }
            Path(args.json).write_text(json.dumps({"queries": count, "results": raw}, indent=2) + "\n")
            print(f"raw results written to {args.json}")
        return 0
    finally:
        if resolver is not None:
            if resolver.poll() is None:
                resolver.send_signal(signal.SIGTERM)
            try:
                resolver.wait(timeout=5)
            except subprocess.TimeoutExpired:
                resolver.kill()
                resolver.wait(timeout=5)
        stop.set()
        if thread is not None:
            thread.join(timeout=5)
        if upstream_sock is not None:
            upstream_sock.close()
        for ns in made:
            with contextlib.suppress(subprocess.CalledProcessError):
                sh("ip", "netns", "del", ns)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
