"""Port publishing: every -p form, where a published port answers, and the perimeter."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from lab import HOST_ADDR, HOST_ADDR6, PROBE, UP_ADDR, UP_ADDR6, Lab, pid_alive

FAMILIES = ["ipv4", "ipv6"]
# With the IPv6-only twin (--ipv4=false): where the test publishes nothing on IPv4.
ALL_FAMILIES = [*FAMILIES, "ipv6only"]

GATEWAY = "172.17.0.1"


def _ports(lab: Lab, ref: str) -> list[str]:
    return lab.dy_ok("port", ref).strip().splitlines()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", ["80/tcp -> 0.0.0.0:8080"]),
        (f"{HOST_ADDR}:8081:80", [f"80/tcp -> {HOST_ADDR}:8081"]),
        ("8082:80/udp", ["80/udp -> 0.0.0.0:8082"]),
        ("9000-9002:80-82", ["80/tcp -> 0.0.0.0:9000", "81/tcp -> 0.0.0.0:9001", "82/tcp -> 0.0.0.0:9002"]),
        (f"{HOST_ADDR}:9010-9011:80-81", [f"80/tcp -> {HOST_ADDR}:9010", f"81/tcp -> {HOST_ADDR}:9011"]),
        ("9020-9025:80", ["80/tcp -> 0.0.0.0:9020"]),
    ],
)
def test_fixed_forms(lab: Lab, spec: str, expected: list[str]) -> None:
    lab.run_d("--name", "pf", "-p", spec, "sleep", "300")
    assert _ports(lab, "pf") == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # Docker's way on a network with IPv6: every address is both families...
        ("8080:80", ["80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080"]),
        # ... 0.0.0.0 IPv4 only, [::] IPv6 only.
        ("0.0.0.0:8080:80", ["80/tcp -> 0.0.0.0:8080"]),
        ("[::]:8080:80", ["80/tcp -> [::]:8080"]),
        (f"[{HOST_ADDR6}]:8081:80/udp", [f"80/udp -> [{HOST_ADDR6}]:8081"]),
        (
            f"[{HOST_ADDR6}]:9010-9011:80-81",
            [f"80/tcp -> [{HOST_ADDR6}]:9010", f"81/tcp -> [{HOST_ADDR6}]:9011"],
        ),
    ],
)
def test_fixed_forms_on_a_dual_stack_network(lab: Lab, spec: str, expected: list[str]) -> None:
    fam = lab.family("ipv6")
    lab.run_d("--name", "pf", *fam.run_args, "-p", spec, "sleep", "300")
    assert _ports(lab, "pf") == expected


def test_ipv6_bindings_in_inspect_ps_and_the_api(lab: Lab) -> None:
    fam = lab.family("ipv6")
    lab.run_d("--name", "b6", *fam.run_args, "-p", "8080:80", "-p", f"[{HOST_ADDR6}]:8081:81", "sleep", "300")
    info = lab.inspect("b6")
    assert info["HostConfig"]["PortBindings"]["81/tcp"] == [{"HostIp": HOST_ADDR6, "HostPort": "8081"}]
    assert info["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "8080"},
        {"HostIp": "::", "HostPort": "8080"},
    ]
    row = lab.dy_ok("ps").splitlines()[1]
    for item in ("0.0.0.0:8080->80/tcp", "[::]:8080->80/tcp", f"[{HOST_ADDR6}]:8081->81/tcp"):
        assert item in row, row
    # An IPv6 host address for a container of an IPv4-only network: nothing could answer it.
    before = lab.dy_ok("ps", "-aq")
    r = lab.dy("run", "-d", "-p", "[::]:8082:80", "sleep", "300")
    assert r.returncode == 125 and r.stderr.startswith("dockyard: cannot publish on [::]"), r.stderr
    assert lab.dy_ok("ps", "-aq") == before


def test_random_host_ports_come_from_the_local_port_range(lab: Lab) -> None:
    lo, hi = map(int, lab.in_host("cat", "/proc/sys/net/ipv4/ip_local_port_range").stdout.split())
    lab.run_d("--name", "rnd", "-p", "80", "-p", f"{HOST_ADDR}::81", "-p", "90-91/udp", "sleep", "300")
    lines = _ports(lab, "rnd")
    assert [line.split(" -> ")[0] for line in lines] == ["80/tcp", "81/tcp", "90/udp", "91/udp"]
    hosts = [line.split(" -> ")[1] for line in lines]
    assert hosts[1].startswith(f"{HOST_ADDR}:") and hosts[0].startswith("0.0.0.0:")
    chosen = [int(h.rsplit(":", 1)[1]) for h in hosts]
    assert all(lo <= p <= hi for p in chosen)


def test_a_random_port_is_never_one_in_use(lab: Lab) -> None:
    # Narrow the range to two ports and take one with a host process.
    lab.in_host("sh", "-c", "echo 40000 40001 > /proc/sys/net/ipv4/ip_local_port_range")
    lab.hold_port(40000)
    lab.run_d("--name", "r1", "-p", "80", "sleep", "300")
    assert _ports(lab, "r1") == ["80/tcp -> 0.0.0.0:40001"]
    r = lab.dy("run", "-d", "-p", "80", "sleep", "300")
    assert r.returncode == 125 and "no free host port" in r.stderr


def test_expose_and_publish_all(lab: Lab) -> None:
    lab.run_d("--name", "pa", "--expose", "80", "--expose", "53/udp", "-P", "sleep", "300")
    lines = _ports(lab, "pa")
    assert [line.split(" -> ")[0] for line in lines] == ["53/udp", "80/tcp"]
    lab.run_d("--name", "ex", "--expose", "80", "sleep", "300")
    assert lab.dy_ok("port", "ex").strip() == ""


def test_ps_and_inspect_show_ranges_and_bindings(lab: Lab) -> None:
    lab.run_d("--name", "rg", "-p", "9000-9002:80-82", "-p", "127.0.0.1:9100:100/udp", "sleep", "300")
    row = lab.dy_ok("ps").splitlines()[1]
    assert "0.0.0.0:9000-9002->80-82/tcp" in row and "127.0.0.1:9100->100/udp" in row
    info = lab.inspect("rg")
    assert info["HostConfig"]["PortBindings"]["81/tcp"] == [{"HostIp": "", "HostPort": "9001"}]
    assert info["NetworkSettings"]["Ports"]["100/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "9100"}]


def _no_bridged_ip6_netfilter(lab: Lab) -> None:
    """What ::1 publishing needs (see docs/usage.md): br_netfilter not undoing the reply's NAT at the bridge."""
    r = lab.in_host("sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_a_published_port_answers_from_the_host_itself(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    if family != "ipv4":
        _no_bridged_ip6_netfilter(lab)
    lab.serve("--name", "loc", *fam.run_args, "-p", "8080:80")
    lab.serve("--name", "lo1", *fam.run_args, "-p", f"{fam.hostport(fam.loopback, 8081)}:80")
    for addr, port, name in (
        (fam.host, 8080, "loc"),
        (fam.loopback, 8080, "loc"),
        (fam.loopback, 8081, "lo1"),
    ):
        answer = lab.wait_answer(lab.host, "tcp", addr, port)
        assert f"local={fam.hostport(fam.addr(lab.inspect(name)), 80)}" in answer, (addr, port, answer)
    # No userland proxy: the only socket on the port is the daemon's hold, which never accepts.
    daemon = (lab.root / "dockyardd.pid").read_text().strip()
    listening = lab.in_host("ss", "-Htlnp", "sport", "= :8080").stdout.strip().splitlines()
    assert len(listening) == 1 and f"pid={daemon}," in listening[0]


def test_ipv6_loopback_publishing_is_refused_where_br_netfilter_would_break_it(lab: Lab) -> None:
    fam = lab.family("ipv6")
    r = lab.in_host("sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1")
    assert r.returncode == 0, r.stderr
    r = lab.dy("run", "-d", "--name", "l6", *fam.run_args, "-p", "[::1]:8081:80", "sleep", "300")
    assert r.returncode == 125 and "bridge-nf-call-ip6tables" in r.stderr, r.stderr
    assert lab.map_elements("publish_addr6") == []
    assert lab.dy_ok("ps", "-aq") == ""


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_hairpin_from_another_container_and_from_itself(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    gateway = fam.hostport(fam.gateway, "")
    lab.serve("--name", "hp", *fam.run_args, "-p", "8080:80")
    other = lab.dy_ok("run", "--rm", *fam.run_args, sys.executable, PROBE, "ask", "tcp", fam.host, "8080")
    assert other.startswith(f"peer={gateway}"), other
    own = lab.dy("exec", "hp", sys.executable, PROBE, "ask", "tcp", fam.host, "8080")
    assert own.returncode == 0 and own.stdout.startswith(f"peer={gateway}"), own
    # Also from a container on another network, through the host's address.
    if family == "ipv4":
        lab.dy_ok("network", "create", "other")
        far_net = "172.18.0."
    else:
        lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:2::/64", "other")
        far_net = "[2001:db8:2::"
    far = lab.dy_ok("run", "--rm", "--net", "other", sys.executable, PROBE, "ask", "tcp", fam.host, "8080")
    assert far.startswith(f"peer={far_net}"), far


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_udp_keeps_the_client_address_and_answers_locally(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    if family != "ipv4":
        _no_bridged_ip6_netfilter(lab)
    lab.serve("--name", "ud", *fam.run_args, "-p", "5353:53/udp", proto="udp", port=53)
    assert lab.wait_answer(lab.up, "udp", fam.host, 5353).startswith(f"peer={fam.hostport(fam.up, '')}")
    assert lab.wait_answer(lab.host, "udp", fam.loopback, 5353)


def test_sctp_is_translated(lab: Lab) -> None:
    """This kernel has no SCTP sockets, so the proof is a capture: an SCTP INIT
    sent to the published host port arrives at the container on its own port."""
    cid = lab.run_d("--name", "sc", "-p", "3868:3869/sctp", "sleep", "300")
    # The sender is ready (scapy imported, which takes seconds on a loaded
    # machine) before the capture starts to wait, and sends when told.
    send = textwrap.dedent(f"""
        import sys
        from scapy.all import IP, SCTP, SCTPChunkInit, send
        init = IP(dst="{HOST_ADDR}")/SCTP(sport=5000, dport=3868)/SCTPChunkInit(init_tag=1, a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1)
        print("ready", flush=True)
        sys.stdin.readline()
        send(init, verbose=False)
        print("sent", flush=True)
    """)
    sender = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.up}", sys.executable, "-c", send],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(sender)
    assert sender.stdin is not None and sender.stdout is not None
    assert sender.stdout.readline().strip() == "ready"
    capture = textwrap.dedent("""
        import socket, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        s.bind(("eth0", 0))
        s.settimeout(30)
        print("ready", flush=True)
        while True:
            frame = s.recv(2048)
            ip = frame[14:]
            if ip[9] == 132:  # SCTP
                ihl = (ip[0] & 15) * 4
                src = ".".join(map(str, ip[12:16]))
                dport = int.from_bytes(ip[ihl + 2:ihl + 4], "big")
                print(f"sctp from {src} to port {dport}", flush=True)
                break
    """)
    p = subprocess.Popen(
        [*lab_cmd(lab), "exec", cid, sys.executable, "-c", capture], stdout=subprocess.PIPE, text=True
    )
    lab.procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    sender.stdin.write("go\n")
    sender.stdin.flush()
    assert sender.stdout.readline().strip() == "sent"
    assert sender.wait(timeout=30) == 0
    assert p.stdout.readline().strip() == f"sctp from {UP_ADDR} to port 3869"


def lab_cmd(lab: Lab) -> list[str]:
    from lab import DOCKYARD

    return [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host]


# Prints "ready", then watches IPv4 and IPv6 frames arriving on IFACE for TCP
# SYNs from SRC (to DST when given); at the first one to STOP_PORT it prints
# every destination port it saw a SYN for, in order, and exits.
SYN_WATCH = textwrap.dedent("""
    import ipaddress, socket, sys
    iface, src, stop_port = sys.argv[1], ipaddress.ip_address(sys.argv[2]), int(sys.argv[3])
    dst = ipaddress.ip_address(sys.argv[4]) if len(sys.argv) > 4 else None
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    s.settimeout(20)
    print("ready", flush=True)
    seen = []
    while True:
        frame, addr = s.recvfrom(4096)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        kind, ip = frame[12:14], frame[14:]
        if kind == b"\\x08\\x00" and ip[9] == 6:
            saddr, daddr, tcp = ip[12:16], ip[16:20], ip[(ip[0] & 15) * 4:]
        elif kind == b"\\x86\\xdd" and ip[6] == 6:
            saddr, daddr, tcp = ip[8:24], ip[24:40], ip[40:]
        else:
            continue
        if ipaddress.ip_address(saddr) != src or (dst and ipaddress.ip_address(daddr) != dst):
            continue
        if tcp[13] & 0x12 != 0x02:  # a SYN, not a SYN-ACK
            continue
        dport = int.from_bytes(tcp[2:4], "big")
        if dport not in seen:
            seen.append(dport)
        if dport == stop_port:
            print(" ".join(map(str, seen)), flush=True)
            break
""")


def _watch(lab: Lab, cmd: list[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr
    return p


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_unpublished_ports_are_not_reachable_even_with_a_route(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    # One container serving two ports: 81 published, 80 not.
    py = sys.executable
    cid = lab.run_d(
        "--name", "hidden", *fam.run_args, "-p", "8080:81",
        "sh", "-c", f"{py} {PROBE} serve tcp 81 & exec {py} {PROBE} serve tcp 80",
    )  # fmt: skip
    ip = fam.addr(lab.inspect(cid))
    lab.pids_seen.add(lab.inspect(cid)["State"]["Pid"])
    for port in (80, 81):
        lab.wait_answer(lab.host, "tcp", ip, port)
    r = lab.in_up("ip", "route", "add", fam.subnet, "via", fam.host)
    assert r.returncode == 0, r.stderr
    in_host = ["nsenter", f"--net=/run/netns/{lab.host}"]
    at_host = _watch(lab, [*in_host, py, "-c", SYN_WATCH, "up0", fam.up, "80", ip])
    at_container = _watch(lab, [*lab_cmd(lab), "exec", cid, py, "-c", SYN_WATCH, "eth0", fam.up, "81"])
    # Docker's direct-routing hole: the container's own port from outside.
    direct = lab.in_up(py, PROBE, "ask", "tcp", ip, "80", "--timeout", "1")
    assert direct.returncode == 1 and "timed out" in direct.stderr, (direct.stdout, direct.stderr)
    # The SYN did come through the route to the host, which dropped it.
    assert at_host.stdout is not None and at_host.stdout.readline().strip() == "80"
    # Control: the published port of the same container answers from outside...
    assert lab.wait_answer(lab.up, "tcp", fam.host, 8080).startswith(f"peer={fam.hostport(fam.up, '')}")
    # ... and is the only SYN from outside the container ever saw, the direct ones having come first.
    assert at_container.stdout is not None and at_container.stdout.readline().strip() == "81"
    # The host itself still reaches the unpublished port, as with Docker.
    assert lab.ask(lab.host, "tcp", ip, 80)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_localhost_publishing_is_not_reachable_from_outside(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    if family != "ipv4":
        _no_bridged_ip6_netfilter(lab)
    lo = fam.hostport(fam.loopback, 8080)
    lab.serve("--name", "lh", *fam.run_args, "-p", f"{lo}:80", "-p", "8081:80")
    assert lab.ask(lab.up, "tcp", fam.host, 8080, timeout=1) is None
    assert lab.wait_answer(lab.host, "tcp", fam.loopback, 8080)  # it is published, on the loopback
    host_mac = json.loads(lab.in_host("ip", "-j", "link", "show", "up0").stdout)[0]["address"]
    ip = "IP" if family == "ipv4" else "IPv6"
    probe = textwrap.dedent(f"""
        import sys
        from scapy.all import Ether, IP, IPv6, TCP, srp1, conf
        conf.verb = 0
        def syn(dst, port):
            pkt = Ether(dst="{host_mac}")/{ip}(src="{fam.up}", dst=dst)/TCP(sport=40000 + port % 1000, dport=port, flags="S")
            answer = srp1(pkt, iface="eth0", timeout=2)
            return bool(answer is not None and answer.haslayer(TCP) and answer[TCP].flags & 0x12 == 0x12)
        # Positive control: the same crafted SYN to a port published on every address.
        print(syn("{fam.host}", 8081), syn("{fam.loopback}", 8080), syn("{fam.loopback}", 8081))
    """)
    # IPv4: also with route_localnet on everywhere (what kube-proxy once set), the
    # CVE-2020-8558 setting; IPv6 has no such setting.
    for setting in ("0", "1") if family == "ipv4" else ("",):
        if setting:
            lab.in_host(
                "sysctl",
                "-qw",
                f"net.ipv4.conf.all.route_localnet={setting}",
                f"net.ipv4.conf.up0.route_localnet={setting}",
            )
        r = lab.in_up(sys.executable, "-c", probe, timeout=60)
        assert r.stdout.split() == ["True", "False", "False"], (setting, r.stdout, r.stderr)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_published_on_one_address_not_on_another(lab: Lab, family: str) -> None:
    fam = lab.family(family)
    other = "198.51.100.3" if family == "ipv4" else "2001:db8::3"
    prefix = "24" if family == "ipv4" else "64"
    nodad = ("nodad",) if family != "ipv4" else ()
    r = lab.in_host("ip", "addr", "add", f"{other}/{prefix}", "dev", "up0", *nodad)
    assert r.returncode == 0, r.stderr
    lab.serve("--name", "one", *fam.run_args, "-p", f"{fam.hostport(other, 8080)}:80")
    assert lab.wait_answer(lab.up, "tcp", other, 8080)
    assert lab.ask(lab.up, "tcp", fam.host, 8080, timeout=1) is None
    assert lab.ask(lab.host, "tcp", fam.loopback, 8080, timeout=1) is None


def test_none_and_host_get_no_dnat_rules(lab: Lab) -> None:
    for mode in ("none", "host"):
        r = lab.dy("run", "-d", "--net", mode, "-p", "8080:80", "sleep", "300")
        assert r.returncode == 0 and "discarded" in r.stderr
    assert lab.map_elements("publish_any") == [] and lab.map_elements("publish_addr") == []


def test_every_map_element_goes_when_the_container_stops(lab: Lab) -> None:
    lab.run_d(
        "--name", "many", "-p", "10000-10199:10000-10199", "-p", "127.0.0.1:9000:9000/udp", "sleep", "300"
    )
    assert len(lab.map_elements("publish_any")) == 200 and len(lab.map_elements("publish_addr")) == 1
    held = (
        lab.in_host("ss", "-Htln", "sport", ">= :10000", "and", "sport", "<= :10199")
        .stdout.strip()
        .splitlines()
    )
    assert len(held) == 200
    lab.dy_ok("stop", "-t", "0", "many")
    assert lab.map_elements("publish_any") == [] and lab.map_elements("publish_addr") == []
    assert _host_bind(lab, "tcp", "0.0.0.0", 10100) == "bound"
    assert _host_bind(lab, "udp", "127.0.0.1", 9000) == "bound"


def _tree(*roots: int) -> set[int]:
    """The processes of these trees: the roots and every descendant (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


def test_a_thousand_ports_start_without_a_process_per_port(lab: Lab) -> None:
    lab.dy_ok("ps")
    roots = [int((lab.root / name).read_text()) for name in ("dockyardd.pid", "shim.pid")]
    before = _tree(*roots)
    assert len(before) >= 2, before
    cid = lab.serve("--name", "wide", "-p", "20000-20999:20000-20999", port=20500)
    assert len(lab.map_elements("publish_any")) == 1000
    after = _tree(*roots)
    # The only new process in the daemon's and the shim's trees is the container's own.
    assert after - before == {lab.inspect(cid)["State"]["Pid"]}, (before, after)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 20500).startswith(f"peer={UP_ADDR}:")


# -- holds: a published port is taken on the host --------------------------------------------------

# Binds PROTO IP:PORT as a host process would (SO_REUSEADDR when asked) and
# prints "bound", or the error.
BIND = textwrap.dedent("""
    import socket, sys
    proto, ip, port, reuse = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "reuse"
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((ip, port))
        if proto == "tcp":
            s.listen()
    except OSError as e:
        print(e.strerror)
    else:
        print("bound")
""")


def _host_bind(lab: Lab, proto: str, ip: str, port: int, reuse: bool = False) -> str:
    r = lab.in_host(sys.executable, "-c", BIND, proto, ip, str(port), "reuse" if reuse else "plain")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


IN_USE = "Address already in use"


def test_udp_and_localhost_ports_are_held_while_published(lab: Lab) -> None:
    lab.run_d("--name", "held", "-p", "127.0.0.1:8086:80", "-p", "8087:53/udp", "sleep", "300")
    for proto, ip, port in (
        ("tcp", "127.0.0.1", 8086),
        ("tcp", "0.0.0.0", 8086),  # every address includes 127.0.0.1
        ("udp", "0.0.0.0", 8087),
        ("udp", "127.0.0.1", 8087),
        ("udp", HOST_ADDR, 8087),
    ):
        for reuse in (False, True):
            assert _host_bind(lab, proto, ip, port, reuse) == IN_USE, (proto, ip, port, reuse)
    # Control: a hold is for its address and protocol only...
    assert _host_bind(lab, "tcp", HOST_ADDR, 8086) == "bound"
    assert _host_bind(lab, "udp", "127.0.0.1", 8086) == "bound"
    assert _host_bind(lab, "tcp", "0.0.0.0", 8087) == "bound"
    # ... and goes with the container.
    lab.dy_ok("stop", "-t", "0", "held")
    assert _host_bind(lab, "tcp", "127.0.0.1", 8086) == "bound"
    assert _host_bind(lab, "udp", "0.0.0.0", 8087) == "bound"


def _daemon_down(lab: Lab, how: str) -> None:
    pid = int((lab.root / "dockyardd.pid").read_text())
    if how == "stop":
        lab.dy_ok("daemon", "stop")
    else:
        os.kill(pid, signal.SIGKILL)
    lab.eventually(lambda: not pid_alive(pid), what=f"dockyardd {pid} gone")


def test_ipv6_ports_are_held_per_family_while_published(lab: Lab) -> None:
    fam = lab.family("ipv6")
    lab.run_d(
        "--name", "held", *fam.run_args, "-p", f"[{HOST_ADDR6}]:8086:80", "-p", "8087:53/udp",
        "-p", "0.0.0.0:8088:80", "-p", "[::]:8089:80", "sleep", "300",
    )  # fmt: skip
    for proto, ip, port in (
        ("tcp", HOST_ADDR6, 8086),
        ("tcp", "::", 8086),  # every IPv6 address includes this one
        ("udp", "0.0.0.0", 8087),  # on both families: one dual-stack hold
        ("udp", "::", 8087),
        ("udp", HOST_ADDR6, 8087),
        ("udp", HOST_ADDR, 8087),
        ("tcp", "0.0.0.0", 8088),
        ("tcp", HOST_ADDR6, 8089),
    ):
        for reuse in (False, True):
            assert _host_bind(lab, proto, ip, port, reuse) == IN_USE, (proto, ip, port, reuse)
    # Control: a hold is for its address and family only...
    assert _host_bind(lab, "tcp", "::1", 8086) == "bound"
    assert _host_bind(lab, "tcp", HOST_ADDR, 8086) == "bound"
    assert _host_bind(lab, "tcp", "::1", 8088) == "bound"  # 0.0.0.0 is IPv4 only
    assert _host_bind(lab, "tcp", "127.0.0.1", 8089) == "bound"  # [::] is IPv6 only
    # ... and goes with the container.
    lab.dy_ok("stop", "-t", "0", "held")
    assert _host_bind(lab, "udp", "::", 8087) == "bound"
    assert _host_bind(lab, "tcp", HOST_ADDR6, 8086) == "bound"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_holds_are_taken_again_when_the_daemon_comes_back(lab: Lab, how: str, family: str) -> None:
    fam = lab.family(family)
    every = "0.0.0.0" if family == "ipv4" else "::"
    lab.run_d("--name", "web", *fam.run_args, "-p", "8088:80", "-p", "127.0.0.1:8089:53/udp", "sleep", "300")
    assert _host_bind(lab, "tcp", every, 8088) == IN_USE
    _daemon_down(lab, how)
    # The holds were the daemon's sockets: with it gone, the ports are free...
    assert _host_bind(lab, "tcp", every, 8088) == "bound"
    assert _host_bind(lab, "udp", "127.0.0.1", 8089) == "bound"
    assert "started" in lab.dy_ok("daemon", "start")
    # ... and the next daemon, adopting the running container, takes them again (both families).
    assert lab.inspect("web")["State"]["Running"] is True
    assert _host_bind(lab, "tcp", every, 8088) == IN_USE
    assert _host_bind(lab, "tcp", "0.0.0.0", 8088) == IN_USE
    assert _host_bind(lab, "udp", "127.0.0.1", 8089) == IN_USE
    assert "WARNING" not in (lab.root / "daemon.log").read_text()


def test_a_port_taken_while_the_daemon_was_down_is_reported(lab: Lab) -> None:
    cid = lab.serve("--name", "web", "-p", "8088:80", "-p", "8089:80")
    _daemon_down(lab, "stop")
    lab.hold_port(8088)
    lab.dy_ok("daemon", "start")
    log = (lab.root / "daemon.log").read_text()
    assert re.search(
        r" WARNING dockyard\.engine\.reconcile\[\d+\]: container web: cannot hold host port 0\.0\.0\.0:8088/tcp:"
        r" Address already in use; the port stays published but is not held\n",
        log,
    ), log
    assert "8089" not in log
    # The container's other port is held again all the same, and both still reach it.
    assert _host_bind(lab, "tcp", "0.0.0.0", 8089) == IN_USE
    for port in (8088, 8089):
        assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, port).startswith(f"peer={UP_ADDR}:")
    assert lab.inspect(cid)["State"]["Running"] is True


def test_holds_tell_a_port_in_use_from_an_address_the_host_lacks(lab: Lab) -> None:
    """kernel/holds.py against the lab's kernel: what a probe and a hold report."""
    script = textwrap.dedent("""
        import ipaddress, socket
        from dockyard.kernel.holds import HoldRefused, PortHolds, probe
        from dockyard.model import PortBinding, Protocol
        IP, TCP, UDP = ipaddress.IPv4Address, Protocol.TCP, Protocol.UDP
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        print(probe(IP("10.9.9.9"), port, TCP), probe(IP("127.0.0.1"), port, TCP), probe(None, port, TCP),
              probe(IP("127.0.0.1"), port, UDP), sep=",")
        holds = PortHolds()
        udp, tcp = PortBinding(53, UDP, port, IP("127.0.0.1")), PortBinding(80, TCP, port, IP("127.0.0.1"))
        for bindings in ([udp, tcp], [PortBinding(80, TCP, port, IP("10.9.9.9"))]):
            try:
                holds.hold("a", bindings)
            except HoldRefused as e:
                print(e.status, e.binding.container_port, holds.count(), probe(IP("127.0.0.1"), port, UDP), sep=",")
        refused = holds.hold_each("a", [udp, tcp])
        print([str(e) for e in refused], holds.count(), probe(IP("127.0.0.1"), port, UDP), sep=",")
        holds.release("a")
        print(holds.count(), probe(IP("127.0.0.1"), port, UDP), sep=",")
    """)
    r = lab.in_host(sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "not local,in use,in use,free"
    # All or nothing: the UDP port taken first is let go when the TCP one is refused.
    assert lines[1] == "in use,80,0,free"
    assert lines[2] == "not local,80,0,free"
    # One at a time: what can be held is, and the refusal is reported.
    assert lines[3].endswith(",1,in use") and "/tcp: Address already in use" in lines[3], lines[3]
    assert lines[4] == "0,free"


def test_every_address_includes_a_second_one_and_the_bridge_gateway(lab: Lab) -> None:
    assert lab.in_host("ip", "addr", "add", "198.51.100.3/24", "dev", "up0").returncode == 0
    ip = lab.ip_of(lab.serve("--name", "all", "-p", "8080:80"))
    assert lab.wait_answer(lab.up, "tcp", "198.51.100.3", 8080).startswith(f"peer={UP_ADDR}:")
    # The bridge's gateway is a host address too: from the host, from a container...
    assert f"local={ip}:80" in lab.wait_answer(lab.host, "tcp", GATEWAY, 8080)
    other = lab.dy_ok("run", "--rm", sys.executable, PROBE, "ask", "tcp", GATEWAY, "8080")
    assert other.startswith(f"peer={GATEWAY}:") and f"local={ip}:80" in other, other
    # ... and from outside, routed to it.
    r = lab.in_up("ip", "route", "add", "172.17.0.0/16", "via", HOST_ADDR)
    assert r.returncode == 0, r.stderr
    assert lab.wait_answer(lab.up, "tcp", GATEWAY, 8080).startswith(f"peer={UP_ADDR}:")
    # Control: a port published on one address does not answer on the gateway.
    lab.serve("--name", "one", "-p", f"{HOST_ADDR}:8081:80")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8081)
    assert lab.ask(lab.host, "tcp", GATEWAY, 8081, timeout=1) is None


def test_port_picks_one_protocol(lab: Lab) -> None:
    lab.run_d(
        "--name", "pp", "-p", "8080:80", "-p", "8082:80/udp", "-p", "127.0.0.1:8083:80/udp", "sleep", "300"
    )
    assert sorted(lab.dy_ok("port", "pp", "80/udp").split()) == ["0.0.0.0:8082", "127.0.0.1:8083"]
    assert lab.dy_ok("port", "pp", "80/tcp").split() == ["0.0.0.0:8080"]
    assert lab.dy_ok("port", "pp", "80").split() == ["0.0.0.0:8080"]  # tcp, as Docker defaults
    r = lab.dy("port", "pp", "80/sctp")
    assert r.returncode == 125 and r.stderr.strip() == "dockyard: no public port '80/sctp' published for pp"


# -- Docker's routed IPv6 mode ------------------------------------------------------------------------

ROUTED = "com.docker.network.bridge.gateway_mode_ipv6=routed"


def test_routed_ipv6_reaches_published_container_ports_without_nat(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:5::/64", "-o", ROUTED, "routed")
    py = sys.executable
    cid = lab.run_d(
        "--name", "r1", "--net", "routed", "-p", "8080:80",
        "sh", "-c", f"{py} {PROBE} serve tcp 81 & exec {py} {PROBE} serve tcp 80",
    )  # fmt: skip
    lab.pids_seen.add(lab.inspect(cid)["State"]["Pid"])
    addr6 = lab.inspect(cid)["NetworkSettings"]["Networks"]["routed"]["GlobalIPv6Address"]
    for port in (80, 81):
        lab.wait_answer(lab.host, "tcp", addr6, port)
    r = lab.in_up("ip", "-6", "route", "add", "2001:db8:5::/64", "via", HOST_ADDR6)
    assert r.returncode == 0, r.stderr
    # The published container port, at the container's own address, with the client's address kept.
    assert lab.wait_answer(lab.up, "tcp", addr6, 80).startswith(f"peer=[{UP_ADDR6}]:")
    # Any other port is dropped (a timeout: the SYN went out and nothing came back).
    direct = lab.in_up(py, PROBE, "ask", "tcp", addr6, "81", "--timeout", "1")
    assert direct.returncode == 1 and "timed out" in direct.stderr, (direct.stdout, direct.stderr)
    # No NAT66 on the way out either: the upstream sees the container's address.
    lab.spawn_in(lab.up, py, PROBE, "serve", "tcp", "7000", "--bind", UP_ADDR6)
    lab.wait_answer(lab.up, "tcp", UP_ADDR6, 7000)
    out = lab.dy("exec", "r1", py, PROBE, "ask", "tcp", UP_ADDR6, "7000")
    assert out.returncode == 0 and out.stdout.startswith(f"peer=[{addr6}]:"), out
    # IPv4 stays NATed as ever.
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    assert lab.map_elements("routed6") == [{"concat": [addr6, "tcp", 80]}]
    lab.dy_ok("rm", "-f", "r1")
    assert lab.map_elements("routed6") == []


@pytest.mark.parametrize("mode", ["nat-unprotected", "isolated", "bogus"])
def test_other_ipv6_gateway_modes_are_refused_by_name(lab: Lab, mode: str) -> None:
    before = lab.dy_ok("network", "ls"), sorted(lab.links())
    r = lab.dy(
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "2001:db8:6::/64",
        "-o",
        f"{ROUTED.split('=')[0]}={mode}",
        "m1",
    )
    assert r.returncode == 125, r
    (line,) = r.stderr.splitlines()
    assert line.startswith("dockyard: ") and "gateway_mode_ipv6" in line and repr(mode) in line, line
    assert (lab.dy_ok("network", "ls"), sorted(lab.links())) == before
