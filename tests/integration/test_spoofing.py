"""A container stays in its box on the wire: what an attacker inside one tries, and that it fails.

Each attack is run from the container's own network namespace (what a
container with NET_ADMIN and NET_RAW can do, through `nsenter --net=` its
SandboxKey), and each test asserts both halves: the attack was made (the
command succeeded, a capture on the container's bridge port saw the frame
leave) and it had no effect past the port (the frame never reached the
host or the other containers, the neighbour entries and the published
port are unchanged). A positive control sent after the attack, on the same
path, tells when the capture has seen all it would see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import HOST_ADDR, HOST_ADDR6, PROBE, REPO, UP_ADDR, UP_ADDR6, Lab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import Runtime, Sandboxes, dockyard_conflist, plugin_dir

FRAMES = str(REPO / "tests" / "tools" / "frames.py")
GATEWAY = "172.17.0.1"
UNUSED = "172.17.255.254"  # an address of the default bridge no container has here
BROADCAST = "ff:ff:ff:ff:ff:ff"


def _nsenter(netns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *cmd], capture_output=True, text=True, timeout=timeout
    )


def _ip_json(netns: str, *args: str) -> list[dict]:
    r = _nsenter(netns, "ip", "-j", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


@dataclass(frozen=True)
class Box:
    """One endpoint as its attacker sees it: its namespace, address, MAC, and its bridge port on the host."""

    netns: str
    ip: str
    mac: str
    port: str
    ifname: str = "eth0"


def _port_of(host_netns: str, netns: str, ifname: str) -> str:
    """The host end of the veth whose other end is ifname in netns: the link its peer index names."""
    (link,) = _ip_json(netns, "link", "show", ifname)
    peer = link["link_index"]
    (port,) = [h["ifname"] for h in _ip_json(host_netns, "link", "show") if h["ifindex"] == peer]
    return port


def _box(lab: Lab, ref: str, network: str = "bridge", ifname: str = "eth0", family: str = "ipv4") -> Box:
    info = lab.inspect(ref)
    netns = info["NetworkSettings"]["SandboxKey"]
    net = info["NetworkSettings"]["Networks"][network]
    ip = net["IPAddress"] if family == "ipv4" else net["GlobalIPv6Address"]
    return Box(netns, ip, net["MacAddress"], _port_of(_host(lab), netns, ifname), ifname)


def _host(lab: Lab) -> str:
    return f"/run/netns/{lab.host}"


def _mac_of(netns: str, ifname: str) -> str:
    return _ip_json(netns, "link", "show", ifname)[0]["address"]


def _neigh(netns: str, address: str) -> str | None:
    """The MAC a namespace's neighbour table gives address, or None."""
    entries = [e for e in _ip_json(netns, "neigh", "show", address) if "lladdr" in e]
    return entries[0]["lladdr"] if entries else None


class Watch:
    """frames.py watching one interface of a namespace until a marker is seen."""

    def __init__(self, lab: Lab, netns: str, iface: str, until: str) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={netns}", sys.executable, FRAMES, "watch", iface, "--until", until],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lab.procs.append(self.proc)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", (
            self.proc.stderr.read() if self.proc.stderr else ""
        )
        self.what = f"{iface} in {netns}"

    def lines(self) -> list[str]:
        """Every frame seen, once the marker came (fails when it never did within 30 s of
        this call, made once the marker was sent)."""
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        assert self.proc.returncode == 0, f"the marker never reached {self.what}: {out}{err}"
        return out.splitlines()


# Sends the scapy frames given as arguments, in order, out of IFACE (argv[1]).
SEND = textwrap.dedent("""
    import sys
    from scapy.all import ARP, ICMPv6ND_NA, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IP, IPv6, UDP, Ether, conf, sendp
    conf.verb = 0
    frames = [eval(text) for text in sys.argv[2:]]
    sendp(frames, iface=sys.argv[1])
    print("sent", len(frames))
""")


def _send(netns: str, *frames: str, iface: str = "eth0") -> None:
    r = _nsenter(netns, sys.executable, "-c", SEND, iface, *frames)
    assert r.returncode == 0 and r.stdout.strip() == f"sent {len(frames)}", r.stderr


def _arp(op: int, sender: Box, spa: str, dst_mac: str, tpa: str) -> str:
    return (
        f"Ether(src={sender.mac!r}, dst={dst_mac!r})/"
        f"ARP(op={op}, hwsrc={sender.mac!r}, psrc={spa!r}, hwdst={dst_mac!r}, pdst={tpa!r})"
    )


def _udp(sender: Box, dst_mac: str, src: str, dst: str, data: str, dport: int = 5000) -> str:
    ip = "IPv6" if ":" in src else "IP"
    return f"Ether(src={sender.mac!r}, dst={dst_mac!r})/{ip}(src={src!r}, dst={dst!r})/UDP(sport=4000, dport={dport})/{data!r}"


def _na(sender: Box, src: str, target: str) -> str:
    """An unsolicited neighbour advertisement (override set): target is at sender's MAC."""
    return (
        f"Ether(src={sender.mac!r}, dst='33:33:00:00:00:01')/IPv6(src={src!r}, dst='ff02::1', hlim=255)/"
        f"ICMPv6ND_NA(tgt={target!r}, R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr={sender.mac!r})"
    )


def _page(lab: Lab) -> str:
    """Which container serves the published port 8080: its name, as the upstream sees it."""
    answer = lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080)
    return answer.split(" name=")[1]


# -- ARP ---------------------------------------------------------------------------------------------


def test_a_container_cannot_take_another_ones_address(lab: Lab) -> None:
    lab.serve("--name", "victim", "-p", "8080:80")
    lab.serve("--name", "attacker")
    a, b = _box(lab, "attacker"), _box(lab, "victim")
    b_page = _page(lab)
    assert _neigh(_host(lab), b.ip) == b.mac
    control = f"spa={a.ip} tha={BROADCAST} tpa={UNUSED}"
    bridge = Watch(lab, _host(lab), "dockyard0", until=control)
    port = Watch(lab, _host(lab), a.port, until=control)

    # What `ip addr add` and a gratuitous ARP do, with NET_ADMIN; then a
    # request of A's own, which the bridge lets through, as the control.
    r = _nsenter(a.netns, "ip", "addr", "add", f"{b.ip}/32", "dev", "eth0")
    assert r.returncode == 0, r.stderr
    _send(
        a.netns,
        _arp(1, a, b.ip, BROADCAST, b.ip),
        _arp(2, a, b.ip, BROADCAST, b.ip),
        _arp(1, a, a.ip, BROADCAST, UNUSED),
    )
    forged = f"sha={a.mac} spa={b.ip} "
    sent = port.lines()
    assert len([line for line in sent if forged in line]) == 2, sent
    passed = bridge.lines()
    assert [line for line in passed if forged in line] == [], passed
    assert _neigh(_host(lab), b.ip) == b.mac
    assert _page(lab) == b_page
    # When the host asks again, A (which now holds B's address) answers too;
    # only B's answer gets through.
    lab.in_host("ip", "neigh", "flush", b.ip)
    assert _page(lab) == b_page
    assert _neigh(_host(lab), b.ip) == b.mac


def test_a_forged_arp_reply_does_not_reach_a_third_container(lab: Lab) -> None:
    lab.serve("--name", "victim")
    for name in ("attacker", "bystander"):
        lab.run_d("--name", name, "sleep", "300")
    a, b, c = (_box(lab, n) for n in ("attacker", "victim", "bystander"))
    asked = _nsenter(c.netns, sys.executable, PROBE, "ask", "tcp", b.ip, "80")
    assert asked.returncode == 0, asked.stderr
    assert _neigh(c.netns, b.ip) == b.mac
    # A reply changes an entry younger than locktime only after it: none here,
    # so that the forged reply would win at once if it arrived.
    r = _nsenter(c.netns, "sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0")
    assert r.returncode == 0, r.stderr
    control = f"op=2 sha={a.mac} spa={a.ip} tha={c.mac}"
    at_c = Watch(lab, c.netns, "eth0", until=control)
    port = Watch(lab, _host(lab), a.port, until=control)
    # NET_RAW alone: a unicast reply saying B's address is at A's MAC; then A's own, as the control.
    _send(a.netns, _arp(2, a, b.ip, c.mac, c.ip), _arp(2, a, a.ip, c.mac, c.ip))
    forged = f"op=2 sha={a.mac} spa={b.ip} "
    sent = port.lines()
    assert [line for line in sent if forged in line] != [], sent
    arrived = at_c.lines()
    assert [line for line in arrived if forged in line] == [], arrived
    assert _neigh(c.netns, b.ip) == b.mac


def test_a_frame_with_another_source_mac_goes_nowhere(lab: Lab) -> None:
    for name in ("attacker", "victim", "bystander"):
        lab.run_d("--name", name, "sleep", "300")
    a, b, c = (_box(lab, n) for n in ("attacker", "victim", "bystander"))
    at_c = Watch(lab, c.netns, "eth0", until="data=control")
    port = Watch(lab, _host(lab), a.port, until="data=control")
    forged = Box(a.netns, a.ip, b.mac, a.port)  # B's MAC, A's address
    _send(
        a.netns,
        _udp(forged, BROADCAST, a.ip, "172.17.255.255", "forged-mac"),
        _udp(a, BROADCAST, a.ip, "172.17.255.255", "control"),
    )
    assert [line for line in port.lines() if "data=forged-mac" in line] != []
    assert [line for line in at_c.lines() if "forged-mac" in line] == []
    # Nor did the bridge learn B's MAC on A's port.
    fdb = lab.in_host("bridge", "-j", "fdb", "show", "br", "dockyard0")
    assert [e for e in json.loads(fdb.stdout) if e.get("mac") == b.mac and e.get("ifname") == a.port] == []


# -- IPv4 sources --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "ipv6only"])
def test_a_packet_with_another_source_address_never_leaves(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    lab.serve("--name", "attacker", *fam.run_args)  # answered from the host: A knows the gateway's MAC
    lab.run_d("--name", "victim", *fam.run_args, "sleep", "300")
    a, b = (_box(lab, n, fam.network, family=family) for n in ("attacker", "victim"))
    gateway_mac = _mac_of(_host(lab), "dockyard0" if family == "ipv4" else _network_bridge(lab, fam.network))
    up, host, foreign = (
        (UP_ADDR, HOST_ADDR, "10.99.0.1") if family == "ipv4" else (UP_ADDR6, HOST_ADDR6, "2001:db8:99::1")
    )
    upstream = Watch(lab, f"/run/netns/{lab.up}", "eth0", until="data=control")
    port = Watch(lab, _host(lab), a.port, until="data=control")
    # With NET_ADMIN the container may take B's address as its own, and send from it.
    own = (
        ("-6", "addr", "add", f"{b.ip}/128", "dev", "eth0", "nodad")
        if family != "ipv4"
        else ("addr", "add", f"{b.ip}/32", "dev", "eth0")
    )
    r = _nsenter(a.netns, "ip", *own)
    assert r.returncode == 0, r.stderr
    af = "AF_INET6" if family != "ipv4" else "AF_INET"
    bound = (
        f"import socket; s = socket.socket(socket.{af}, socket.SOCK_DGRAM); "
        f"s.bind(({b.ip!r}, 4001)); s.sendto(b'spoofed-bound', ({up!r}, 5000))"
    )
    r = _nsenter(a.netns, sys.executable, "-c", bound)
    assert r.returncode == 0, r.stderr
    # With NET_RAW, any source; then A's own packet, as the control.
    _send(
        a.netns,
        _udp(a, gateway_mac, b.ip, up, "spoofed-raw"),
        _udp(a, gateway_mac, foreign, up, "spoofed-foreign"),
        _udp(a, gateway_mac, a.ip, up, "control"),
    )
    sent = port.lines()
    for data in ("spoofed-bound", "spoofed-raw", "spoofed-foreign"):
        assert [line for line in sent if f"data={data}" in line] != [], (data, sent)
    seen = upstream.lines()
    # The control arrived, masqueraded; nothing else did.
    assert [line for line in seen if "data=" in line] == [
        next(line for line in seen if "data=control" in line)
    ], seen
    assert f"from={host} " in seen[-1]


def test_a_forged_neighbour_advertisement_does_not_take_another_ones_address(lab: Lab) -> None:
    """NDP as ARP: an advertisement saying B's IPv6 address is at A's MAC never passes A's port."""
    fam = lab.family("ipv6")
    lab.serve("--name", "victim", *fam.run_args)  # the host has asked for B's MAC already
    lab.run_d("--name", "attacker", *fam.run_args, "sleep", "300")
    a, b = (_box(lab, n, fam.network, family="ipv6") for n in ("attacker", "victim"))
    bridge = _network_bridge(lab, fam.network)
    assert _neigh(_host(lab), b.ip) == b.mac
    control = f"icmp6 type=136 target={a.ip}"
    at_bridge = Watch(lab, _host(lab), bridge, until=control)
    port = Watch(lab, _host(lab), a.port, until=control)
    # From A's own address (which passes), and from its link-local one; then A's own, as the control.
    link_local = next(
        x["local"]
        for x in _ip_json(a.netns, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
        if x["local"].startswith("fe80:")
    )
    _send(a.netns, _na(a, a.ip, b.ip), _na(a, link_local, b.ip), _na(a, a.ip, a.ip))
    forged = f"icmp6 type=136 target={b.ip}"
    sent = port.lines()
    assert len([line for line in sent if forged in line]) == 2, sent
    passed = at_bridge.lines()
    assert [line for line in passed if forged in line] == [], passed
    assert [line for line in passed if control in line] != []
    assert _neigh(_host(lab), b.ip) == b.mac
    assert lab.wait_answer(lab.host, "tcp", b.ip, 80).endswith(
        f"name={lab.inspect('victim')['Config']['Hostname']}"
    )


def test_a_user_network_endpoint_is_guarded_too(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.60.0.0/24", "n1")
    lab.serve("--name", "attacker", "--net", "n1")
    lab.run_d("--name", "victim", "--net", "n1", "sleep", "300")
    a, b = _box(lab, "attacker", "n1"), _box(lab, "victim", "n1")
    gateway_mac = _mac_of(_host(lab), _network_bridge(lab, "n1"))
    upstream = Watch(lab, f"/run/netns/{lab.up}", "eth0", until="data=control")
    port = Watch(lab, _host(lab), a.port, until="data=control")
    _send(
        a.netns,
        _udp(a, gateway_mac, b.ip, UP_ADDR, "spoofed"),
        _udp(a, gateway_mac, a.ip, UP_ADDR, "control"),
    )
    assert [line for line in port.lines() if "data=spoofed" in line] != []
    assert [line for line in upstream.lines() if "data=spoofed" in line] == []


def test_a_cni_attachment_is_guarded_too(lab: Lab, tmp_path: Path) -> None:
    rt = Runtime([plugin_dir(tmp_path / "cni-bin")], prefix=["nsenter", f"--net={_host(lab)}"])
    sandboxes = Sandboxes(f"dyt-s-{lab.host[-6:]}-")
    conflist = dockyard_conflist("1.1.0", "spoofnet", "10.61.0.0/24", "cni-spoof", lab.root, ipMasq=True)
    try:
        boxes = []
        for name in ("a", "b"):
            netns = sandboxes.new()
            result = rt.add(conflist, f"ctr-{name}", netns)
            ip = result["ips"][0]["address"].split("/")[0]
            boxes.append(Box(netns, ip, _mac_of(netns, "eth0"), _port_of(_host(lab), netns, "eth0")))
        a, b = boxes
        gateway_mac = _mac_of(_host(lab), "cni-spoof")
        upstream = Watch(lab, f"/run/netns/{lab.up}", "eth0", until="data=control")
        port = Watch(lab, _host(lab), a.port, until="data=control")
        _send(
            a.netns,
            _arp(1, a, b.ip, BROADCAST, "10.61.0.1"),
            _udp(a, gateway_mac, b.ip, UP_ADDR, "spoofed"),
            _udp(a, gateway_mac, a.ip, UP_ADDR, "control"),
        )
        assert [line for line in port.lines() if "data=spoofed" in line] != []
        assert [line for line in upstream.lines() if "data=spoofed" in line] == []
        assert _neigh(_host(lab), b.ip) in (None, b.mac)
        for name, netns in zip("ab", (a.netns, b.netns), strict=True):
            rt.delete(conflist, f"ctr-{name}", netns)
    finally:
        Lab.made |= set(sandboxes.names)
        sandboxes.close()


# -- IPv6: router advertisements -----------------------------------------------------------------------


def _ra(sender_mac: str, prefix: str) -> str:
    return (
        f"Ether(src={sender_mac!r}, dst='33:33:00:00:00:01')/"
        "IPv6(src='fe80::42:1', dst='ff02::1', hlim=255)/"
        "ICMPv6ND_RA(routerlifetime=1800)/"
        f"ICMPv6NDOptPrefixInfo(prefix={prefix!r}, prefixlen=64, L=1, A=1, validlifetime=3600, preferredlifetime=3600)/"
        f"ICMPv6NDOptSrcLLAddr(lladdr={sender_mac!r})"
    )


# The lab's own IPv6 on the host's upstream link: no advertisement's doing.
LAB_IPV6 = [HOST_ADDR6, UP_ADDR6]


def _ipv6_taken(netns: str) -> list[str]:
    """What a router advertisement would have given: global addresses and default routes
    (in the host, beside the lab's own address and default route)."""
    links = _ip_json(netns, "-6", "addr", "show", "scope", "global")
    addrs = [a["local"] for link in links for a in link.get("addr_info", []) if "local" in a]
    routes = [str(r.get("gateway", r["dst"])) for r in _ip_json(netns, "-6", "route", "show", "default")]
    return addrs + routes


def _network_bridge(lab: Lab, name: str) -> str:
    info = json.loads(lab.dy_ok("network", "inspect", name))[0]
    return info["Options"].get("com.docker.network.bridge.name") or "dy-" + info["Id"][:12]


def test_a_router_advertisement_from_a_container_reaches_no_one(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.62.0.0/24", "n1")
    for name in ("attacker", "bystander"):
        lab.run_d("--name", name, "--net", "n1", "sleep", "300")
    a, c = _box(lab, "attacker", "n1"), _box(lab, "bystander", "n1")
    bridge = _network_bridge(lab, "n1")
    watches = [Watch(lab, _host(lab), bridge, "data=control"), Watch(lab, c.netns, "eth0", "data=control")]
    port = Watch(lab, _host(lab), a.port, until="data=control")
    _send(
        a.netns,
        _ra(a.mac, "2001:db8:bad::"),
        _udp(a, BROADCAST, a.ip, "10.62.0.255", "control"),
    )
    assert [line for line in port.lines() if "icmp6 type=134" in line] != []
    for watch in watches:
        # Nothing of A's IPv6 passed its port (the router advertisement least of all).
        lines = watch.lines()
        assert [line for line in lines if line.startswith(f"ip6 src={a.mac} ")] == [], (watch.what, lines)
    assert _ipv6_taken(_host(lab)) == LAB_IPV6
    assert _ipv6_taken(c.netns) == []


def test_an_advertisement_that_reaches_the_bridge_or_a_container_is_not_taken(lab: Lab) -> None:
    """The bridge and the containers' interfaces take no advertisement of their own
    accord either: one sent through a port dockyard did not make (and so does not guard)."""
    lab.dy_ok("network", "create", "--subnet", "10.63.0.0/24", "n1")
    lab.run_d("--name", "bystander", "--net", "n1", "sleep", "300")
    c = _box(lab, "bystander", "n1")
    bridge = _network_bridge(lab, "n1")
    lab.in_host("ip", "link", "add", "dyt-rogue0", "type", "veth", "peer", "name", "dyt-rogue1")
    try:
        for cmd in (
            ["ip", "link", "set", "dyt-rogue0", "master", bridge, "up"],
            ["ip", "link", "set", "dyt-rogue1", "up"],
        ):
            r = lab.in_host(*cmd)
            assert r.returncode == 0, r.stderr
        rogue_mac = _mac_of(_host(lab), "dyt-rogue1")
        at_c = Watch(lab, c.netns, "eth0", until="icmp6 type=134")
        at_bridge = Watch(lab, _host(lab), bridge, until="icmp6 type=134")
        _send(_host(lab), _ra(rogue_mac, "2001:db8:bad::"), iface="dyt-rogue1")
        assert at_c.lines() and at_bridge.lines()
        assert _ipv6_taken(_host(lab)) == LAB_IPV6
        assert _ipv6_taken(c.netns) == []
    finally:
        lab.in_host("ip", "link", "del", "dyt-rogue1")


# -- 127.0.0.0/8 ---------------------------------------------------------------------------------------

# A host service on 127.0.0.1 (and a control on the other addresses given): prints
# "<local address> <data> <source>" per datagram, and stops at the control.
LOOPBACK_SERVICE = textwrap.dedent("""
    import select, socket, sys
    socks = []
    for addr in sys.argv[1:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 5300))
        socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [], 20)[0] or sys.exit(1):
            data, peer = s.recvfrom(2048)
            print(s.getsockname()[0], data.decode(), peer[0], flush=True)
            if data == b"control":
                sys.exit(0)
""")


def _loopback_service(lab: Lab, *addresses: str) -> subprocess.Popen[str]:
    p = lab.spawn_in(lab.host, sys.executable, "-c", LOOPBACK_SERVICE, "127.0.0.1", *addresses)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _served(p: subprocess.Popen[str]) -> list[str]:
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, f"the control never arrived: {out}{err}"
    return out.splitlines()


def test_loopback_addresses_from_a_container_reach_no_host_service(lab: Lab) -> None:
    lab.serve("--name", "pub", "-p", "127.0.0.1:8081:80")
    lab.run_d("--name", "attacker", "sleep", "300")
    a = _box(lab, "attacker")
    gateway_mac = _mac_of(_host(lab), "dockyard0")
    service = _loopback_service(lab, GATEWAY)
    port = Watch(lab, _host(lab), a.port, until="data=control")
    _send(
        a.netns,
        _udp(a, gateway_mac, "127.0.0.2", "127.0.0.1", "loop-source", 5300),
        _udp(a, gateway_mac, a.ip, "127.0.0.1", "loop-destination", 5300),
        _udp(a, gateway_mac, a.ip, GATEWAY, "control", 5300),
    )
    sent = port.lines()
    assert len([line for line in sent if "data=loop-" in line]) == 2, sent
    assert _served(service) == [f"{GATEWAY} control {a.ip}"]
    # 127.0.0.1 publishing still works: the host's own connection, DNATed in output.
    assert "local=" in lab.wait_answer(lab.host, "tcp", "127.0.0.1", 8081)


def test_loopback_addresses_from_the_wire_reach_no_host_service(lab: Lab) -> None:
    """What the container's packets meet after the bridge (the inet guard), met from outside
    with route_localnet on (the CVE-2020-8558 setting), where no bridge guard stands."""
    lab.dy_ok("ps")  # the daemon, and its tables
    lab.in_host("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.up0.route_localnet=1")
    host_mac = _mac_of(_host(lab), "up0")
    service = _loopback_service(lab, HOST_ADDR)
    up = Box(f"/run/netns/{lab.up}", UP_ADDR, _mac_of(f"/run/netns/{lab.up}", "eth0"), "")
    _send(
        up.netns,
        _udp(up, host_mac, "127.0.0.2", "127.0.0.1", "loop-source", 5300),
        _udp(up, host_mac, UP_ADDR, "127.0.0.1", "loop-destination", 5300),
        _udp(up, host_mac, UP_ADDR, HOST_ADDR, "control", 5300),
    )
    assert _served(service) == [f"{HOST_ADDR} control {UP_ADDR}"]


# -- subnets that are no container's ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subnet", "why"),
    [
        ("127.0.0.0/8", "loopback"),
        ("127.1.0.0/16", "loopback"),
        ("224.1.0.0/16", "multicast"),
        ("169.254.0.0/16", "link-local"),
        ("0.0.0.0/8", "this network"),
        ("240.0.0.0/24", "reserved"),
        ("255.255.255.0/24", "broadcast"),
        ("64.0.0.0/2", "loopback"),  # holds 127.0.0.0/8
    ],
)
def test_network_create_refuses_a_subnet_that_is_no_containers(lab: Lab, subnet: str, why: str) -> None:
    before = lab.dy_ok("network", "ls"), sorted(lab.links())
    r = lab.dy("network", "create", "--subnet", subnet, "n1")
    assert r.returncode == 125, r
    (line,) = r.stderr.splitlines()
    assert line.startswith("dockyard: ") and subnet in line and why in line, line
    assert (lab.dy_ok("network", "ls"), sorted(lab.links())) == before
    # Nothing listens on the host's loopback for it (the resolver would have).
    assert "127.0.0.1:53 " not in lab.in_host("ss", "-Hlun").stdout


# -- the guard's elements and gc ------------------------------------------------------------------------


def test_gc_puts_a_lost_guard_back_and_removes_a_stray_one(lab: Lab) -> None:
    lab.run_d("--name", "attacker", "sleep", "300")
    a = _box(lab, "attacker")
    listed = json.loads(lab.in_host("nft", "-j", "list", "set", "bridge", "dockyard", "port_addrs").stdout)
    (elem,) = next(o["set"]["elem"] for o in listed["nftables"] if "set" in o)
    assert elem["elem"]["val"] == {"concat": [a.port, a.ip]}
    owner = elem["elem"]["comment"]
    for cmd in (
        f"delete element bridge dockyard port_addrs {{ {a.port} . {a.ip} }}",
        f'add element bridge dockyard port_macs {{ "vethstray00" . 02:42:0a:00:00:09 comment "{owner}" }}',
    ):
        r = lab.in_host("nft", cmd)
        assert r.returncode == 0, r.stderr
    out = lab.dy_ok("system", "gc")
    assert (
        "nftables: removed 1 stale element(s)" in out and "nftables: put back 1 missing element(s)" in out
    ), out
    assert lab.map_elements("port_addrs", "bridge") == [{"concat": [a.port, a.ip]}]
    assert lab.map_elements("port_macs", "bridge") == [{"concat": [a.port, a.mac]}]
    assert lab.map_elements("guarded_ports", "bridge") == [a.port]
    assert lab.dy_ok("system", "gc") == "nothing to remove\n"


def test_the_guard_comes_and_goes_with_each_endpoint(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.64.0.0/24", "n1")
    cid = lab.run_d("--name", "attacker", "sleep", "300")
    lab.dy_ok("network", "connect", "n1", cid)
    boxes = [_box(lab, "attacker"), _box(lab, "attacker", "n1", "eth1")]
    assert sorted(lab.map_elements("guarded_ports", "bridge")) == sorted(b.port for b in boxes)
    assert sorted(map(str, lab.map_elements("port_addrs", "bridge"))) == sorted(
        str({"concat": [b.port, b.ip]}) for b in boxes
    )
    lab.dy_ok("network", "disconnect", "n1", cid)
    sets = ("guarded_ports", "port_macs", "port_addrs")
    lab.eventually(
        lambda: all(len(lab.map_elements(n, "bridge")) == 1 for n in sets), what="eth1's guard gone"
    )
    lab.dy_ok("rm", "-f", cid)
    # Gone with the veth (the reaper's), with no gc to help.
    lab.eventually(lambda: not any(lab.map_elements(n, "bridge") for n in sets), what="the guard gone")
    assert lab.dy_ok("system", "gc") == "nothing to remove\n"
