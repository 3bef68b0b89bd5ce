"""Port publishing: every -p form, where a published port answers, and the perimeter."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from lab import HOST_ADDR, PROBE, UP_ADDR, Lab


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
    holder = lab.spawn_in(
        lab.host,
        sys.executable,
        "-c",
        "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 40000)); s.listen(); print('ok', flush=True); time.sleep(60)",
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
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


def test_a_published_port_answers_from_the_host_itself(lab: Lab) -> None:
    lab.serve("--name", "loc", "-p", "8080:80")
    lab.serve("--name", "lo1", "-p", "127.0.0.1:8081:80")
    for addr, port, name in (
        (HOST_ADDR, 8080, "loc"),
        ("127.0.0.1", 8080, "loc"),
        ("127.0.0.1", 8081, "lo1"),
    ):
        answer = lab.wait_answer(lab.host, "tcp", addr, port)
        assert f"local={lab.ip_of(name)}:80" in answer
    # No userland proxy: the only socket on the port is the daemon's hold, which never accepts.
    daemon = (lab.root / "dockyardd.pid").read_text().strip()
    listening = lab.in_host("ss", "-Htlnp", "sport", "= :8080").stdout.strip().splitlines()
    assert len(listening) == 1 and f"pid={daemon}," in listening[0]


def test_hairpin_from_another_container_and_from_itself(lab: Lab) -> None:
    lab.serve("--name", "hp", "-p", "8080:80")
    other = lab.dy_ok("run", "--rm", sys.executable, PROBE, "ask", "tcp", HOST_ADDR, "8080")
    assert other.startswith("peer=172.17.0.1:"), other
    own = lab.dy("exec", "hp", sys.executable, PROBE, "ask", "tcp", HOST_ADDR, "8080")
    assert own.returncode == 0 and own.stdout.startswith("peer=172.17.0.1:")
    # Also from a container on a user network, through the host's address.
    lab.dy_ok("network", "create", "other")
    far = lab.dy_ok("run", "--rm", "--net", "other", sys.executable, PROBE, "ask", "tcp", HOST_ADDR, "8080")
    assert far.startswith("peer=172.18.0.")


def test_udp_keeps_the_client_address_and_answers_locally(lab: Lab) -> None:
    lab.serve("--name", "ud", "-p", "5353:53/udp", proto="udp", port=53)
    assert lab.wait_answer(lab.up, "udp", HOST_ADDR, 5353).startswith(f"peer={UP_ADDR}:")
    assert lab.wait_answer(lab.host, "udp", "127.0.0.1", 5353)


def test_sctp_is_translated(lab: Lab) -> None:
    """This kernel has no SCTP sockets, so the proof is a capture: an SCTP INIT
    sent to the published host port arrives at the container on its own port."""
    cid = lab.run_d("--name", "sc", "-p", "3868:3869/sctp", "sleep", "300")
    capture = textwrap.dedent("""
        import socket, sys
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        s.bind(("eth0", 0))
        s.settimeout(10)
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
    send = textwrap.dedent(f"""
        from scapy.all import IP, SCTP, SCTPChunkInit, send
        send(IP(dst="{HOST_ADDR}")/SCTP(sport=5000, dport=3868)/SCTPChunkInit(init_tag=1, a_rwnd=1500, n_out_streams=1, n_in_streams=1, init_tsn=1), verbose=False)
    """)
    r = lab.in_up(sys.executable, "-c", send)
    assert r.returncode == 0, r.stderr
    assert p.stdout.readline().strip() == f"sctp from {UP_ADDR} to port 3869"


def lab_cmd(lab: Lab) -> list[str]:
    from lab import DOCKYARD

    return [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host]


def test_unpublished_ports_are_not_reachable_even_with_a_route(lab: Lab) -> None:
    ip = lab.ip_of(lab.serve("--name", "hidden", "-p", "8080:81"))
    lab.in_up("ip", "route", "add", "172.17.0.0/16", "via", HOST_ADDR)
    # Docker's direct-routing hole: the container's own port from outside.
    assert lab.ask(lab.up, "tcp", ip, 80, timeout=1) is None
    # The host itself still reaches it, as with Docker.
    assert lab.ask(lab.host, "tcp", ip, 80)


def test_localhost_publishing_is_not_reachable_from_outside(lab: Lab) -> None:
    lab.serve("--name", "lh", "-p", "127.0.0.1:8080:80", "-p", "8081:80")
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=1) is None
    host_mac = json.loads(lab.in_host("ip", "-j", "link", "show", "up0").stdout)[0]["address"]
    probe = textwrap.dedent(f"""
        import sys
        from scapy.all import Ether, IP, TCP, srp1, conf
        conf.verb = 0
        def syn(dst, port):
            pkt = Ether(dst="{host_mac}")/IP(src="{UP_ADDR}", dst=dst)/TCP(sport=40000 + port % 1000, dport=port, flags="S")
            answer = srp1(pkt, iface="eth0", timeout=2)
            return bool(answer is not None and answer.haslayer(TCP) and answer[TCP].flags & 0x12 == 0x12)
        # Positive control: the same crafted SYN to a port published on every address.
        print(syn("{HOST_ADDR}", 8081), syn("127.0.0.1", 8080), syn("127.0.0.1", 8081))
    """)
    # With route_localnet on everywhere (what kube-proxy once set), the CVE-2020-8558 setting.
    for setting in ("0", "1"):
        lab.in_host(
            "sysctl",
            "-qw",
            f"net.ipv4.conf.all.route_localnet={setting}",
            f"net.ipv4.conf.up0.route_localnet={setting}",
        )
        r = lab.in_up(sys.executable, "-c", probe, timeout=60)
        assert r.stdout.split() == ["True", "False", "False"], (setting, r.stdout, r.stderr)


def test_published_on_one_address_not_on_another(lab: Lab) -> None:
    lab.in_host("ip", "addr", "add", "198.51.100.3/24", "dev", "up0")
    lab.serve("--name", "one", "-p", "198.51.100.3:8080:80")
    assert lab.wait_answer(lab.up, "tcp", "198.51.100.3", 8080)
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=1) is None
    assert lab.ask(lab.host, "tcp", "127.0.0.1", 8080, timeout=1) is None


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
    s = socket.socket()
    assert (
        lab.in_host(
            sys.executable, "-c", "import socket; s=socket.socket(); s.bind(('0.0.0.0', 10100)); s.listen()"
        ).returncode
        == 0
    )
    s.close()


def test_a_thousand_ports_start_without_a_process_per_port(lab: Lab) -> None:
    lab.dy_ok("ps")
    daemon = int((lab.root / "dockyardd.pid").read_text())
    before = set(subprocess.run(["pgrep", "-P", str(daemon)], capture_output=True, text=True).stdout.split())
    lab.serve("--name", "wide", "-p", "20000-20999:20000-20999", port=20500)
    assert len(lab.map_elements("publish_any")) == 1000
    after = set(subprocess.run(["pgrep", "-P", str(daemon)], capture_output=True, text=True).stdout.split())
    assert after == before
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 20500).startswith(f"peer={UP_ADDR}:")
