"""The DNS resolver (dockyard.dns) as a real process in real namespaces, without the daemon.

Records go straight into a Store under a fresh $ROOT; the resolver runs in a
throwaway "host" namespace that holds the gateways; "members" namespaces play
the containers (one address per container, the client socket bound to it);
an "upstream" namespace holds resolvers of our own on TEST-NET addresses.

    upstream U                          host H: dockyard.dns              members M1, M2
      eth0 198.51.100.2/24, .3/24  <->  up0 198.51.100.1/24 (203.0.113.0/24 via .2)
      lo 203.0.113.53/24                g1 10.89.1.1/24 (net1)  <->  M1 eth0 10.89.1.2-.9/24
      (dnslib servers, threads)         g2 10.89.2.1/24 (net2)  <->  M2 eth0 10.89.2.2-.9/24
                                        lo 10.89.3.1/24 (the default bridge's gateway)

Nothing touches the root namespace; traffic stays between these namespaces
(the host has no default route: a query forwarded to a real resolver, such as
the one in the machine's /etc/resolv.conf, fails at once instead of leaving).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from dockyard import dns
from dockyard.kernel import dns_process, netns
from dockyard.kernel.dns_process import DnsProcess
from dockyard.model import Container, ContainerConfig, DriverName, Endpoint, EndpointOwner, Network
from dockyard.settings import Paths
from dockyard.store import Store

pytestmark = pytest.mark.integration

GW1, GW2, BRIDGE_GW = "10.89.1.1", "10.89.2.1", "10.89.3.1"
CONTAINER_DNS = "198.51.100.2"  # an upstream named by a container's --dns
DAEMON_DNS = "203.0.113.53"  # an upstream named by daemon.json's dns
HOST_DNS = "198.51.100.3"  # an upstream named by the host's resolv.conf
# What each upstream answers for EXT_NAME, so a test sees which one was asked.
EXT_NAME = "ext.example.org"
EXT_ANSWER = {CONTAINER_DNS: "203.0.113.10", DAEMON_DNS: "203.0.113.20", HOST_DNS: "203.0.113.30"}


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=30)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ns_socket(ns: str, kind: socket.SocketKind) -> socket.socket:
    """A socket of namespace ns (a socket stays in the namespace it was made in)."""
    with netns.entered(f"/run/netns/{ns}"):
        return socket.socket(socket.AF_INET, kind)


class Upstream:
    """A tiny resolver: EXT_NAME has one A record, every other name is NXDOMAIN."""

    def __init__(self, ns: str, address: str) -> None:
        self.answer = EXT_ANSWER[address]
        self.sock = ns_socket(ns, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.1)
        self.seen: list[tuple[int, str, str]] = []  # (query id, name, client address)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = DNSRecord.parse(data)
            name = str(query.q.qname).rstrip(".").lower()
            self.seen.append((query.header.id, name, peer[0]))
            reply = query.reply()
            if name == EXT_NAME and query.q.qtype == QTYPE.A:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.answer), ttl=42))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        self.sock.close()


class DnsLab:
    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.host, self.up = f"dyt-dh-{tag}", f"dyt-du-{tag}"
        self.m1, self.m2 = f"dyt-d1-{tag}", f"dyt-d2-{tag}"
        self.namespaces = [self.host, self.up, self.m1, self.m2]
        self.root = tmp / "root"
        self.root.mkdir()
        self.resolv_conf = tmp / "resolv.conf"
        self.resolv_conf.write_text("# no nameserver\n")
        self.log = tmp / "dns.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstreams: list[Upstream] = []
        self.store = Store(Paths(self.root).database)
        self.net1 = self.network("net1", "10.89.1.0/24", GW1)
        self.net2 = self.network("net2", "10.89.2.0/24", GW2)
        self.bridge = self.network("bridge", "10.89.3.0/24", BRIDGE_GW, bridge="dockyard0")

    # -- namespaces -------------------------------------------------------------

    def setup(self) -> None:
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.veth(
            self.host, "up0", "198.51.100.1/24", self.up, "eth0", ["198.51.100.2/24", "198.51.100.3/24"]
        )
        sh("ip", "-n", self.host, "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
        sh("ip", "-n", self.up, "addr", "add", "203.0.113.53/24", "dev", "lo")
        self.veth(self.host, "g1", f"{GW1}/24", self.m1, "eth0", [f"10.89.1.{i}/24" for i in range(2, 10)])
        self.veth(self.host, "g2", f"{GW2}/24", self.m2, "eth0", [f"10.89.2.{i}/24" for i in range(2, 10)])
        # A member of net2 could aim at net1's gateway: route it there (the host delivers it locally).
        sh("ip", "-n", self.m2, "route", "add", "default", "via", GW2)
        sh("ip", "-n", self.host, "addr", "add", f"{BRIDGE_GW}/24", "dev", "lo")

    def veth(self, ns_a: str, name_a: str, addr_a: str, ns_b: str, name_b: str, addrs_b: list[str]) -> None:
        sh("ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
        sh("ip", "-n", ns_a, "addr", "add", addr_a, "dev", name_a)
        for addr in addrs_b:
            sh("ip", "-n", ns_b, "addr", "add", addr, "dev", name_b, "nodad")
        sh("ip", "-n", ns_a, "link", "set", name_a, "up")
        sh("ip", "-n", ns_b, "link", "set", name_b, "up")

    def teardown(self) -> list[str]:
        """Stop and remove everything; return what was left behind."""
        leaks = []
        pids = {p.pid for p in self.procs}
        with contextlib.suppress(OSError, ValueError):
            pids.add(int((self.root / dns.PID_FILE).read_text()))
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    leaks.append(f"resolver {p.pid} ignored SIGTERM")
                    p.kill()
                    p.wait(timeout=5)
        for u in self.upstreams:
            u.close()
        self.store.close()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        leaks += [f"process {pid}" for pid in sorted(pids) if alive(pid)]
        present = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        leaks += [f"namespace {ns}" for ns in self.namespaces if ns in present]
        if (self.root / dns.PID_FILE).exists():
            leaks.append(str(self.root / dns.PID_FILE))
        return leaks

    # -- records ----------------------------------------------------------------

    def network(
        self, name: str, subnet: str, gateway: str, bridge: str = "", internal: bool = False
    ) -> Network:
        nid = secrets.token_hex(32)
        net = Network(
            id=nid,
            name=name,
            driver=DriverName.BRIDGE,
            subnet=ipaddress.IPv4Network(subnet),
            gateway=ipaddress.IPv4Address(gateway),
            bridge=bridge or f"dy-{nid[:12]}",
            internal=internal,
        )
        self.store.add_network(net)
        return net

    def container(
        self,
        name: str,
        *attach: tuple[Network, str, tuple[str, ...]],
        dns: tuple[str, ...] = (),
        dns_search: tuple[str, ...] = (),
    ) -> Container:
        """A container record with one active endpoint per (network, address, aliases)."""
        config = ContainerConfig(
            cmd=("sleep", "1"),
            dns=tuple(ipaddress.IPv4Address(x) for x in dns),
            dns_search=dns_search,
        )
        c = Container(id=secrets.token_hex(32), name=name, config=config)
        self.store.add_container(c)
        for i, (net, address, aliases) in enumerate(attach):
            assert net.subnet is not None
            self.store.add_endpoint(
                Endpoint(
                    id=secrets.token_hex(32),
                    owner=EndpointOwner.container(c.id),
                    network_id=net.id,
                    ifname=f"eth{i}",
                    address=ipaddress.IPv4Interface(f"{address}/{net.subnet.prefixlen}"),
                    gateway=net.gateway,
                    mac=f"02:42:0a:59:00:{secrets.randbelow(256):02x}",
                    host_ifname=f"veth{secrets.token_hex(4)[:7]}",
                    aliases=aliases,
                )
            )
        return c

    # -- the resolver -----------------------------------------------------------

    def start(
        self, expect_pid_file: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            p = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{self.host}",
                    sys.executable,
                    "-m",
                    "dockyard.dns",
                    "--root",
                    str(self.root),
                    "--resolv-conf",
                    str(self.resolv_conf),
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(p)
        if expect_pid_file:
            deadline = time.monotonic() + 10
            while self.pid_in_file() != p.pid:
                assert p.poll() is None, f"the resolver exited ({p.returncode}): {self.log.read_text()}"
                assert time.monotonic() < deadline, "the resolver did not write its pid"
                time.sleep(0.01)
        return p

    def pid_in_file(self) -> int | None:
        try:
            return int((self.root / dns.PID_FILE).read_text())
        except (OSError, ValueError):
            return None

    def upstream(self, address: str) -> Upstream:
        u = Upstream(self.up, address)
        self.upstreams.append(u)
        return u

    # -- asking -----------------------------------------------------------------

    def ask(
        self,
        ns: str,
        source: str,
        server: str,
        name: str,
        qtype: str = "A",
        tcp: bool = False,
        timeout: float = 5.0,
    ) -> DNSRecord:
        """Ask server from `source` (an address of ns); fail when no answer comes."""
        query = DNSRecord.question(name, qtype)
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        with ns_socket(ns, kind) as sock:
            sock.settimeout(timeout)
            sock.bind((source, 0))
            if tcp:
                sock.connect((server, 53))
                data = query.pack()
                sock.sendall(struct.pack("!H", len(data)) + data)
                size = struct.unpack("!H", sock.recv(2))[0]
                answer = b""
                while len(answer) < size:
                    answer += sock.recv(size - len(answer))
            else:
                sock.sendto(query.pack(), (server, 53))
                answer = sock.recv(65535)
        reply = DNSRecord.parse(answer)
        assert reply.header.id == query.header.id
        return reply

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        """Wait for the resolver's log to say `text` (its counts come at most every 10 s)."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert time.monotonic() < deadline, (
                f"the resolver's log never said {text!r}: {self.log.read_text()}"
            )
            time.sleep(0.05)

    def listening(self) -> set[str]:
        """What listens on port 53 in the host namespace, as {"udp 10.89.1.1", "tcp 10.89.1.1", ...}.

        Read from the kernel's socket table: a closed UDP port would show only
        through ICMP port unreachable, which the kernel rate-limits.
        """
        r = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.host}", "ss", "-Hlntu4", "sport = :53"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return {f"{line.split()[0]} {line.split()[4].rsplit(':', 1)[0]}" for line in r.stdout.splitlines()}

    def wait_listening(self, expected: set[str], what: str) -> None:
        deadline = time.monotonic() + 5
        while (now := self.listening()) != expected:
            assert time.monotonic() < deadline, f"{what}: listening on {now}, not {expected}"
            time.sleep(0.02)


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def connect_all(ns: str, source: str, server: str, count: int) -> tuple[list[socket.socket], int]:
    """`count` TCP connections to server:53 from ns (from `source`, or the kernel's choice):
    the connected sockets and how many attempts failed."""
    socks, failed = [], 0
    for _ in range(count):
        sock = ns_socket(ns, socket.SOCK_STREAM)
        sock.settimeout(10)  # a burst may overflow the backlog: SYNs are sent again
        if source:
            sock.bind((source, 0))
        try:
            sock.connect((server, 53))
            socks.append(sock)
        except OSError:
            sock.close()
            failed += 1
    return socks, failed


def closed_by_resolver(sock: socket.socket) -> bool:
    """Whether the resolver closed this connection (end of stream or reset), without waiting."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def wait_closed_by_resolver(socks: list[socket.socket], count: int, timeout: float = 10.0) -> None:
    """Wait until the resolver has closed `count` of these connections (never more)."""
    deadline = time.monotonic() + timeout
    while (closed := sum(closed_by_resolver(s) for s in socks)) < count:
        assert time.monotonic() < deadline, f"the resolver closed {closed} connections, not {count}"
        time.sleep(0.05)
    assert closed == count, f"the resolver closed {closed} connections, not {count}"


def ask_on(sock: socket.socket, name: str) -> DNSRecord:
    """One query on an open TCP connection."""
    query = DNSRecord.question(name)
    data = query.pack()
    sock.settimeout(5)
    sock.sendall(struct.pack("!H", len(data)) + data)
    size = struct.unpack("!H", sock.recv(2))[0]
    answer = b""
    while len(answer) < size:
        answer += sock.recv(size - len(answer))
    reply = DNSRecord.parse(answer)
    assert reply.header.id == query.header.id
    return reply


@pytest.fixture
def dl(tmp_path: Path) -> Iterator[DnsLab]:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces); run them as root")
    lab = DnsLab(tmp_path)
    try:
        lab.setup()
        yield lab
    finally:
        leaks = lab.teardown()
    assert not leaks, f"left behind: {leaks}"


# -- local names ---------------------------------------------------------------------


def test_name_alias_and_ids_resolve_on_the_network(dl: DnsLab) -> None:
    web = dl.container("web", (dl.net1, "10.89.1.2", ("www",)))
    dl.container("db1", (dl.net1, "10.89.1.3", ("db",)))
    dl.container("db2", (dl.net1, "10.89.1.4", ("db", "replica")))
    dl.container("client", (dl.net1, "10.89.1.5", ()), dns_search=("corp.example",))
    dl.start()
    ask = lambda name, qtype="A": dl.ask(dl.m1, "10.89.1.5", GW1, name, qtype)  # noqa: E731

    reply = ask("web")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert addresses(reply) == ["10.89.1.2"]
    assert reply.rr[0].ttl == 600
    assert addresses(ask("WEB.")) == ["10.89.1.2"]  # any case
    assert addresses(ask("www")) == ["10.89.1.2"]  # an alias
    assert addresses(ask("db")) == ["10.89.1.3", "10.89.1.4"]  # a shared alias: every address
    assert addresses(ask("replica")) == ["10.89.1.4"]
    assert addresses(ask(web.short_id)) == ["10.89.1.2"]
    assert addresses(ask("web.net1")) == ["10.89.1.2"]  # name.<network>, as Docker
    assert addresses(ask("web.corp.example")) == ["10.89.1.2"]  # name.<the asker's search domain>
    # No IPv6: an empty answer, not an error.
    aaaa = ask("web", "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and aaaa.rr == []
    # Over TCP too.
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "db", tcp=True)) == ["10.89.1.3", "10.89.1.4"]


def test_an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(dl: DnsLab) -> None:
    many = [f"10.89.1.{i}" for i in range(100, 140)]
    for i, address in enumerate(many):
        dl.container(f"worker{i}", (dl.net1, address, ("pool",)))
    dl.start()
    udp = dl.ask(dl.m1, "10.89.1.5", GW1, "pool")
    assert udp.header.tc and udp.rr == []
    tcp = dl.ask(dl.m1, "10.89.1.5", GW1, "pool", tcp=True)
    assert not tcp.header.tc and addresses(tcp) == sorted(many)


def test_names_of_another_network_do_not_resolve(dl: DnsLab) -> None:
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.container("api", (dl.net2, "10.89.2.2", ("backend",)))
    dl.container("both", (dl.net1, "10.89.1.3", ()), (dl.net2, "10.89.2.3", ()))
    dl.start()

    for name in ("api", "backend"):
        assert dl.ask(dl.m1, "10.89.1.5", GW1, name).header.rcode == RCODE.NXDOMAIN
    assert dl.ask(dl.m2, "10.89.2.5", GW2, "web").header.rcode == RCODE.NXDOMAIN
    assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "api")) == ["10.89.2.2"]
    # A container on both networks has one address on each.
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "both")) == ["10.89.1.3"]
    assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "both")) == ["10.89.2.3"]
    # A member of net2 aiming at net1's gateway is not net1's business: no answer at all
    # (not even REFUSED: a forged source must not make the resolver a reflector) ...
    with pytest.raises(TimeoutError):
        dl.ask(dl.m2, "10.89.2.5", GW1, "web", timeout=1.0)
    # ... and over TCP, its connection is closed as soon as it is accepted.
    (crossing,), refused = connect_all(dl.m2, "10.89.2.5", GW1, 1)
    assert refused == 0  # the attempt was made: the connection was opened
    wait_closed_by_resolver([crossing], 1)
    crossing.close()
    dl.wait_log("1 UDP queries from outside their network (dropped)")  # it came, and was dropped


def test_a_container_on_two_networks_resolves_the_names_of_both(dl: DnsLab) -> None:
    """Docker's rule: the asker sees the names of every network it is on, whichever gateway it asks."""
    net3 = dl.network("net3", "10.89.4.0/24", "10.89.4.1")
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.container("api", (dl.net2, "10.89.2.2", ("backend",)))
    dl.container("hidden", (net3, "10.89.4.2", ()))
    both = dl.container("both", (dl.net1, "10.89.1.3", ()), (dl.net2, "10.89.2.3", ()), dns_search=("corp",))
    dl.start()
    ask = lambda name, qtype="A": dl.ask(dl.m1, "10.89.1.3", GW1, name, qtype)  # noqa: E731

    assert addresses(ask("web")) == ["10.89.1.2"]  # the arrival network's names
    assert addresses(ask("api")) == ["10.89.2.2"]  # and those of its other network
    assert addresses(ask("backend")) == ["10.89.2.2"]
    assert addresses(ask("api.net2")) == ["10.89.2.2"]  # name.<network>, of its other network
    # ... but on that network only (not ours, so forwarded: with no upstream here, SERVFAIL).
    assert ask("web.net2").header.rcode == RCODE.SERVFAIL
    assert addresses(ask("api.corp")) == ["10.89.2.2"]  # name.<search domain>, on every network
    assert addresses(dl.ask(dl.m1, "10.89.1.3", GW1, "api", tcp=True)) == ["10.89.2.2"]
    # Its own name: the address on the network the query came in on, first.
    assert addresses(ask("both")) == ["10.89.1.3"]
    assert addresses(dl.ask(dl.m2, "10.89.2.3", GW2, "both")) == ["10.89.2.3"]
    assert addresses(dl.ask(dl.m2, "10.89.2.3", GW2, "web")) == ["10.89.1.2"]
    # PTR on either network.
    ptr = ask("2.2.89.10.in-addr.arpa", "PTR")
    assert [(rr.rtype, str(rr.rdata)) for rr in ptr.rr] == [(QTYPE.PTR, "api.")]
    assert ask("9.2.89.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    # A network it is not on stays out of sight, by name and by address.
    assert ask("hidden").header.rcode == RCODE.NXDOMAIN
    assert ask("hidden.net3").header.rcode == RCODE.SERVFAIL
    assert ask("2.4.89.10.in-addr.arpa", "PTR").header.rcode == RCODE.SERVFAIL
    # An asker known to be on net1 only does not see net2, and nor does an address no container has.
    assert dl.ask(dl.m1, "10.89.1.2", GW1, "api").header.rcode == RCODE.NXDOMAIN
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "api").header.rcode == RCODE.NXDOMAIN
    # Leaving net2 (its endpoint no longer active): net2's names go at once.
    (on_net2,) = [ep for ep in dl.store.endpoints(container_id=both.id) if ep.network_id == dl.net2.id]
    dl.store.set_endpoint_state(on_net2.id, "releasing")
    assert ask("api").header.rcode == RCODE.NXDOMAIN
    assert addresses(ask("web")) == ["10.89.1.2"]


def test_default_bridge_has_no_dns(dl: DnsLab) -> None:
    dl.container("old", (dl.bridge, "10.89.3.2", ()))
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.start()
    assert dl.listening() == {f"{proto} {gw}" for proto in ("udp", "tcp") for gw in (GW1, GW2)}
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "web")) == ["10.89.1.2"]


def test_ptr_gives_the_container_name(dl: DnsLab) -> None:
    dl.container("web", (dl.net1, "10.89.1.2", ("www",)))
    dl.start()
    reply = dl.ask(dl.m1, "10.89.1.5", GW1, "2.1.89.10.in-addr.arpa", "PTR")
    assert reply.header.rcode == RCODE.NOERROR
    assert [(rr.rtype, str(rr.rdata)) for rr in reply.rr] == [(QTYPE.PTR, "web.")]
    # An address of the network with no container: no such name.
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "9.1.89.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN


def test_join_and_leave_take_effect_at_once(dl: DnsLab) -> None:
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.start()
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "late").header.rcode == RCODE.NXDOMAIN

    late = dl.container("late", (dl.net1, "10.89.1.6", ("shared",)))
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "late")) == ["10.89.1.6"]
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "shared")) == ["10.89.1.6"]

    (endpoint,) = dl.store.endpoints(container_id=late.id)
    dl.store.set_endpoint_state(endpoint.id, "releasing")  # leaving: no longer counts
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "late").header.rcode == RCODE.NXDOMAIN
    dl.store.set_endpoint_state(endpoint.id, "active")
    assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "late")) == ["10.89.1.6"]
    dl.store.delete_endpoint(endpoint.id)
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "late").header.rcode == RCODE.NXDOMAIN
    assert dl.ask(dl.m1, "10.89.1.5", GW1, "shared").header.rcode == RCODE.NXDOMAIN


# -- forwarding ----------------------------------------------------------------------


def test_forwards_to_the_containers_own_dns(dl: DnsLab) -> None:
    mine, daemons = dl.upstream(CONTAINER_DNS), dl.upstream(DAEMON_DNS)
    (dl.root / "daemon.json").write_text(json.dumps({"dns": [DAEMON_DNS]}))
    dl.container("client", (dl.net1, "10.89.1.2", ()), dns=(CONTAINER_DNS,))
    dl.start()

    reply = dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME)
    assert addresses(reply) == [EXT_ANSWER[CONTAINER_DNS]]
    assert reply.rr[0].ttl == 42  # relayed unchanged, not re-made
    assert [(name, peer) for _id, name, peer in mine.seen] == [(EXT_NAME, "198.51.100.1")]
    assert daemons.seen == []
    # The upstream's NXDOMAIN is relayed, and the client's query id is kept.
    reply = dl.ask(dl.m1, "10.89.1.2", GW1, "nothing.example.org")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert mine.seen[-1][0] == reply.header.id  # ask() checks that this is the client's own id
    # Another member, without --dns of its own, goes to daemon.json's servers.
    assert addresses(dl.ask(dl.m1, "10.89.1.7", GW1, EXT_NAME)) == [EXT_ANSWER[DAEMON_DNS]]
    assert len(daemons.seen) == 1


def test_forwards_to_daemon_json_dns(dl: DnsLab) -> None:
    daemons, hosts = dl.upstream(DAEMON_DNS), dl.upstream(HOST_DNS)
    (dl.root / "daemon.json").write_text(json.dumps({"dns": [DAEMON_DNS]}))
    dl.resolv_conf.write_text(f"nameserver {HOST_DNS}\n")
    dl.container("client", (dl.net1, "10.89.1.2", ()))
    dl.start()
    reply = dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME, tcp=True)
    assert addresses(reply) == [EXT_ANSWER[DAEMON_DNS]]
    assert [name for _id, name, _peer in daemons.seen] == [EXT_NAME]
    assert hosts.seen == []


def test_forwards_to_the_hosts_resolvers(dl: DnsLab) -> None:
    hosts = dl.upstream(HOST_DNS)
    dl.resolv_conf.write_text(f"search example.org\nnameserver {HOST_DNS}\nnameserver fe80::1\n")
    dl.container("client", (dl.net1, "10.89.1.2", ()))
    dl.start()
    reply = dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME)
    assert addresses(reply) == [EXT_ANSWER[HOST_DNS]]
    # A single-label name that matches nothing is answered here, never sent upstream.
    assert dl.ask(dl.m1, "10.89.1.2", GW1, "ghost").header.rcode == RCODE.NXDOMAIN
    assert [name for _id, name, _peer in hosts.seen] == [EXT_NAME]


def test_without_upstream_nxdomain_or_servfail(dl: DnsLab) -> None:
    dl.container("client", (dl.net1, "10.89.1.2", ()))
    dl.container("lost", (dl.net1, "10.89.1.3", ()), dns=("198.51.100.99",))  # nobody there
    dl.start()
    assert dl.ask(dl.m1, "10.89.1.2", GW1, "ghost").header.rcode == RCODE.NXDOMAIN
    assert dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME).header.rcode == RCODE.SERVFAIL
    # An upstream that never answers: SERVFAIL once it has had its chance; meanwhile
    # local names are answered (a forward does not hold up the resolver).
    slow: list[DNSRecord] = []
    waiting = threading.Thread(target=lambda: slow.append(dl.ask(dl.m1, "10.89.1.3", GW1, EXT_NAME)))
    waiting.start()
    time.sleep(0.2)  # let its query reach the resolver first
    assert addresses(dl.ask(dl.m1, "10.89.1.3", GW1, "client")) == ["10.89.1.2"]
    assert waiting.is_alive() and not slow  # answered while the forward was still pending
    waiting.join(timeout=10)
    assert [r.header.rcode for r in slow] == [RCODE.SERVFAIL]


def test_internal_network_is_not_forwarded(dl: DnsLab) -> None:
    hosts = dl.upstream(HOST_DNS)
    dl.resolv_conf.write_text(f"nameserver {HOST_DNS}\n")
    dl.store.delete_network(dl.net2.id)
    inner = dl.network("inner", "10.89.2.0/24", GW2, internal=True)
    dl.container("vault", (inner, "10.89.2.2", ()))
    dl.start()
    assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "vault")) == ["10.89.2.2"]
    assert dl.ask(dl.m2, "10.89.2.5", GW2, EXT_NAME).header.rcode == RCODE.SERVFAIL
    assert hosts.seen == []


def test_an_asker_with_a_way_out_is_forwarded_even_from_an_internal_network(dl: DnsLab) -> None:
    """As Docker (26+): forwarding follows whether the asker reaches the outside at all."""
    hosts = dl.upstream(HOST_DNS)
    dl.resolv_conf.write_text(f"nameserver {HOST_DNS}\n")
    dl.store.delete_network(dl.net2.id)
    inner = dl.network("inner", "10.89.2.0/24", GW2, internal=True)
    dl.container("vault", (inner, "10.89.2.2", ()))
    dl.container("dual", (inner, "10.89.2.3", ()), (dl.net1, "10.89.1.3", ()))
    dl.start()
    assert dl.ask(dl.m2, "10.89.2.2", GW2, EXT_NAME).header.rcode == RCODE.SERVFAIL
    assert hosts.seen == []
    assert addresses(dl.ask(dl.m2, "10.89.2.3", GW2, EXT_NAME)) == [EXT_ANSWER[HOST_DNS]]
    assert [name for _id, name, _peer in hosts.seen] == [EXT_NAME]
    # Both still see the internal network's names.
    assert addresses(dl.ask(dl.m2, "10.89.2.2", GW2, "dual")) == ["10.89.2.3"]


def test_daemon_json_and_resolv_conf_are_read_again_only_when_they_change(dl: DnsLab) -> None:
    daemons, hosts = dl.upstream(DAEMON_DNS), dl.upstream(HOST_DNS)
    (dl.root / "daemon.json").write_text(json.dumps({"dns": [DAEMON_DNS]}))
    dl.resolv_conf.write_text(f"nameserver {HOST_DNS}\n")
    dl.container("client", (dl.net1, "10.89.1.2", ()))
    dl.start()

    def reads(what: str) -> int:
        return sum(1 for line in dl.log.read_text().splitlines() if f"{what} read:" in line)

    for _ in range(4):
        assert addresses(dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME)) == [EXT_ANSWER[DAEMON_DNS]]
    assert len(daemons.seen) == 4 and hosts.seen == []
    assert reads("daemon.json") == 1 and reads(str(dl.resolv_conf)) == 0
    # daemon.json loses its dns: the next query sees it, and goes to the host's resolvers.
    (dl.root / "daemon.json").write_text("{}")
    for _ in range(3):
        assert addresses(dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME)) == [EXT_ANSWER[HOST_DNS]]
    assert len(daemons.seen) == 4 and len(hosts.seen) == 3
    assert reads("daemon.json") == 2 and reads(str(dl.resolv_conf)) == 1
    # The host's resolv.conf changes (another server, the same length): seen at once too.
    assert len(HOST_DNS) == len(DAEMON_DNS)
    dl.resolv_conf.write_text(f"nameserver {DAEMON_DNS}\n")
    assert addresses(dl.ask(dl.m1, "10.89.1.2", GW1, EXT_NAME)) == [EXT_ANSWER[DAEMON_DNS]]
    assert len(daemons.seen) == 5 and len(hosts.seen) == 3
    assert reads("daemon.json") == 2 and reads(str(dl.resolv_conf)) == 2


# -- the process ---------------------------------------------------------------------


def test_sighup_binds_and_unbinds_gateways(dl: DnsLab) -> None:
    dl.store.delete_network(dl.net2.id)
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    p = dl.start()
    assert dl.listening() == {f"udp {GW1}", f"tcp {GW1}"}

    net2 = dl.network("net2", "10.89.2.0/24", GW2)
    dl.container("api", (net2, "10.89.2.2", ()))
    p.send_signal(signal.SIGHUP)
    dl.wait_listening({f"{proto} {gw}" for proto in ("udp", "tcp") for gw in (GW1, GW2)}, "after SIGHUP")
    assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "api")) == ["10.89.2.2"]

    dl.store.delete_network(dl.net1.id)
    p.send_signal(signal.SIGHUP)
    dl.wait_listening({f"udp {GW2}", f"tcp {GW2}"}, "after net1's removal and SIGHUP")
    assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "api")) == ["10.89.2.2"]

    # The last user network gone: the resolver ends by itself.
    dl.store.delete_network(net2.id)
    p.send_signal(signal.SIGHUP)
    assert p.wait(timeout=5) == 0
    assert not (dl.root / dns.PID_FILE).exists()
    assert "no user network left" in dl.log.read_text()


def test_sigterm_ends_it_and_removes_the_pid_file(dl: DnsLab) -> None:
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    p = dl.start()
    assert dl.pid_in_file() == p.pid
    log = dl.log.read_text()
    assert "start: serving net1 on 10.89.1.1, net2 on 10.89.2.1" in log and "bridge" not in log
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0
    assert not (dl.root / dns.PID_FILE).exists()
    assert dl.listening() == set()


def test_exits_at_once_without_user_networks(dl: DnsLab) -> None:
    for net in (dl.net1, dl.net2):
        dl.store.delete_network(net.id)
    p = dl.start(expect_pid_file=False)
    assert p.wait(timeout=10) == 0
    assert not (dl.root / dns.PID_FILE).exists()


def test_a_second_resolver_for_the_same_root_refuses(dl: DnsLab) -> None:
    first = dl.start()
    second = dl.start(expect_pid_file=False)
    assert second.wait(timeout=10) == 1
    assert dl.pid_in_file() == first.pid and first.poll() is None
    assert "another resolver already serves" in dl.log.read_text()


# -- the daemon's side -----------------------------------------------------------------


def test_dns_process_starts_reloads_and_stops(dl: DnsLab) -> None:
    assert dns_process.PID_FILE == dns.PID_FILE
    dl.store.delete_network(dl.net2.id)
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    proc = DnsProcess(Paths(dl.root))
    assert not proc.running()
    try:
        # Started from a thread in the host namespace, as the daemon's threads are.
        with netns.entered(f"/run/netns/{dl.host}"):
            proc.sync(True)
        pid = dl.pid_in_file()
        assert pid is not None and proc.running()
        # It answers as soon as sync returns.
        assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "web")) == ["10.89.1.2"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"dockyard.dns" in cmdline and str(dl.root).encode() in cmdline

        # Needed again, with a new network: the same process re-reads the networks.
        net2 = dl.network("net2", "10.89.2.0/24", GW2)
        dl.container("api", (net2, "10.89.2.2", ()))
        proc.sync(True)
        assert dl.pid_in_file() == pid
        dl.wait_listening({f"{proto} {gw}" for proto in ("udp", "tcp") for gw in (GW1, GW2)}, "sync(True)")
        assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "api")) == ["10.89.2.2"]

        # Died (killed outright, pid file left): the next sync starts another.
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while proc.running():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with netns.entered(f"/run/netns/{dl.host}"):
            proc.sync(True)
        new_pid = dl.pid_in_file()
        assert new_pid not in (None, pid) and proc.running()
        assert addresses(dl.ask(dl.m2, "10.89.2.5", GW2, "api")) == ["10.89.2.2"]

        # Not needed: stopped, pid file gone.
        proc.sync(False)
        assert not proc.running() and not alive(new_pid or 0)
        assert not (dl.root / dns.PID_FILE).exists()
        assert dl.listening() == set()
        proc.stop()  # stopping what is stopped is fine
    finally:
        proc.stop()


# -- under pressure ------------------------------------------------------------------


def test_idle_connections_from_the_lan_do_not_stop_the_resolver(dl: DnsLab) -> None:
    """80 idle TCP connections from the LAN once took every worker: no forwarding for anyone."""
    upstream = dl.upstream(CONTAINER_DNS)
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.container("asker", (dl.net1, "10.89.1.6", ()), dns=(CONTAINER_DNS,))
    dl.start(env={"DOCKYARD_DNS_IDLE_TIMEOUT": "600"})  # nothing closed for being idle meanwhile
    # The LAN reaches the gateways: it routes the networks' subnets through the host.
    sh("ip", "-n", dl.up, "route", "add", "10.89.0.0/16", "via", "198.51.100.1")

    lan, failed = connect_all(dl.up, "", GW1, 80)
    try:
        assert (len(lan), failed) == (80, 0)  # every attempt was made, and connected
        # While the LAN holds them, members get local and forwarded names, UDP and TCP.
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, EXT_NAME)) == [EXT_ANSWER[CONTAINER_DNS]]
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, EXT_NAME, tcp=True)) == [EXT_ANSWER[CONTAINER_DNS]]
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, "web")) == ["10.89.1.2"]
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, "web", tcp=True)) == ["10.89.1.2"]
        # Not the resolver's business: each was closed as soon as it was accepted (the
        # idle timeout is far off), having taken no worker.
        wait_closed_by_resolver(lan, 80)
        # A UDP query from the LAN gets nothing, and reaches no upstream.
        with pytest.raises(TimeoutError):
            dl.ask(dl.up, "198.51.100.2", GW1, EXT_NAME, timeout=1.0)
        assert [name for _id, name, _peer in upstream.seen] == [EXT_NAME, EXT_NAME]
    finally:
        for sock in lan:
            sock.close()
    dl.wait_log("TCP connections from outside their network")  # counted, at most every 10 s


def test_a_containers_many_tcp_connections_are_capped_without_starving_others(dl: DnsLab) -> None:
    from dockyard.dns.serving import MAX_TCP_PER_SOURCE

    dl.upstream(CONTAINER_DNS)
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.container("greedy", (dl.net1, "10.89.1.5", ()), dns=(CONTAINER_DNS,))
    dl.container("other", (dl.net1, "10.89.1.6", ()), dns=(CONTAINER_DNS,))
    dl.start(env={"DOCKYARD_DNS_IDLE_TIMEOUT": "600"})

    greedy, failed = connect_all(dl.m1, "10.89.1.5", GW1, 40)
    try:
        assert (len(greedy), failed) == (40, 0)
        # Those over the cap are closed at once; the first ones stay (their idle timeout is far).
        wait_closed_by_resolver(greedy, 40 - MAX_TCP_PER_SOURCE)
        kept = [s for s in greedy if not closed_by_resolver(s)]
        assert len(kept) == MAX_TCP_PER_SOURCE
        # Another container is served, over TCP and UDP, local and forwarded names alike.
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, "web", tcp=True)) == ["10.89.1.2"]
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, EXT_NAME, tcp=True)) == [EXT_ANSWER[CONTAINER_DNS]]
        assert addresses(dl.ask(dl.m1, "10.89.1.6", GW1, EXT_NAME)) == [EXT_ANSWER[CONTAINER_DNS]]
        # The greedy one is capped, not shut out: its open connections answer, and so does UDP.
        assert addresses(ask_on(kept[0], "web")) == ["10.89.1.2"]
        assert addresses(ask_on(kept[-1], EXT_NAME)) == [EXT_ANSWER[CONTAINER_DNS]]
        assert addresses(dl.ask(dl.m1, "10.89.1.5", GW1, "web")) == ["10.89.1.2"]
    finally:
        for sock in greedy:
            sock.close()
    dl.wait_log(f"TCP connections over {MAX_TCP_PER_SOURCE} of one source")


def test_idle_tcp_connections_are_closed(dl: DnsLab) -> None:
    dl.container("web", (dl.net1, "10.89.1.2", ()))
    dl.start(env={"DOCKYARD_DNS_IDLE_TIMEOUT": "1"})
    silent, _ = connect_all(dl.m1, "10.89.1.5", GW1, 3)
    (slow,), _ = connect_all(dl.m1, "10.89.1.5", GW1, 1)
    slow.sendall(b"\x00")  # half a length prefix, and nothing more
    (served,), _ = connect_all(dl.m1, "10.89.1.5", GW1, 1)
    socks = [*silent, slow, served]
    try:
        assert addresses(ask_on(served, "web")) == ["10.89.1.2"]  # in use: answered
        # Then every one is closed once idle (a query begun but never finished counts as idle).
        wait_closed_by_resolver(socks, len(socks))
    finally:
        for sock in socks:
            sock.close()
