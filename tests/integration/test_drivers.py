"""The four drivers in real namespaces: what a container sees and what it can reach."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from lab import HOST_ADDR, PROBE, UP_ADDR, Lab, sh


def _links_in(lab: Lab, *run_args: str) -> list[dict]:
    out = lab.dy_ok("run", "--rm", *run_args, "ip", "-j", "addr", "show")
    return json.loads(out)


def _upstream_server(lab: Lab, port: int = 7000) -> None:
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", str(port), "--bind", UP_ADDR)
    lab.wait_answer(lab.up, "tcp", UP_ADDR, port)


def test_none_has_only_loopback_and_cannot_reach_out(lab: Lab) -> None:
    links = _links_in(lab, "--net", "none")
    assert [link["ifname"] for link in links] == ["lo"]
    assert "UP" in links[0]["flags"]
    _upstream_server(lab)
    r = lab.dy(
        "run", "--rm", "--net", "none", sys.executable, PROBE, "ask", "tcp", UP_ADDR, "7000", "--timeout", "1"
    )
    assert r.returncode == 1, r.stdout
    assert "unreachable" in r.stderr.lower()


def test_bridge_gives_eth0_an_address_a_route_and_a_veth_on_the_bridge(lab: Lab) -> None:
    cid = lab.run_d("--name", "b1", "sleep", "300")
    info = lab.inspect(cid)
    addr = ipaddress.IPv4Address(info["NetworkSettings"]["IPAddress"])
    assert addr in ipaddress.IPv4Network("172.17.0.0/16")
    assert info["NetworkSettings"]["Gateway"] == "172.17.0.1"
    assert info["NetworkSettings"]["Networks"]["bridge"]["IPPrefixLen"] == 16
    inside = json.loads(lab.dy_ok("exec", "b1", "ip", "-j", "addr", "show"))
    by_name = {link["ifname"]: link for link in inside}
    assert set(by_name) == {"lo", "eth0"}
    eth0 = by_name["eth0"]
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == [str(addr)]
    assert eth0["address"] == info["NetworkSettings"]["MacAddress"]
    routes = json.loads(lab.dy_ok("exec", "b1", "ip", "-j", "route", "show"))
    assert {"dst": "default", "gateway": "172.17.0.1"}.items() <= routes[0].items()
    # The host end: a veth<7 hex> on dockyard0, which holds the gateway.
    host_links = json.loads(lab.in_host("ip", "-j", "link", "show", "master", "dockyard0").stdout)
    assert len(host_links) == 1 and host_links[0]["ifname"].startswith("veth")
    assert len(host_links[0]["ifname"]) == 11
    gw = json.loads(lab.in_host("ip", "-j", "addr", "show", "dockyard0").stdout)[0]
    assert [a["local"] + "/" + str(a["prefixlen"]) for a in gw["addr_info"] if a["family"] == "inet"] == [
        "172.17.0.1/16"
    ]
    # /sys shows the container's own network.
    assert lab.dy_ok("exec", "b1", "ls", "/sys/class/net").split() == ["eth0", "lo"]


def test_bridge_outbound_is_masqueraded(lab: Lab) -> None:
    _upstream_server(lab)
    out = lab.dy_ok("run", "--rm", sys.executable, PROBE, "ask", "tcp", UP_ADDR, "7000")
    assert out.startswith(f"peer={HOST_ADDR}:"), out


def test_published_port_answers_upstream_with_the_client_address_kept(lab: Lab) -> None:
    lab.serve("--name", "web", "-p", "8080:80")
    answer = lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080)
    assert answer.startswith(f"peer={UP_ADDR}:"), answer
    ip = lab.ip_of("web")
    assert f"local={ip}:80" in answer


def test_published_udp_port(lab: Lab) -> None:
    lab.serve("--name", "dns", "-p", "5353:53/udp", proto="udp", port=53)
    answer = lab.wait_answer(lab.up, "udp", HOST_ADDR, 5353)
    assert answer.startswith(f"peer={UP_ADDR}:"), answer


def test_published_port_bound_to_one_address(lab: Lab) -> None:
    lab.in_host("ip", "addr", "add", "198.51.100.3/24", "dev", "up0")
    lab.serve("--name", "one", "-p", "198.51.100.3:8081:80")
    assert lab.wait_answer(lab.up, "tcp", "198.51.100.3", 8081)
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8081, timeout=1) is None


def test_containers_on_the_bridge_reach_each_other(lab: Lab) -> None:
    lab.serve("--name", "srv")
    ip = lab.ip_of("srv")
    out = lab.dy_ok("run", "--rm", sys.executable, PROBE, "ask", "tcp", ip, "80")
    peer = out.split()[0].split("=")[1].split(":")[0]
    assert ipaddress.IPv4Address(peer) in ipaddress.IPv4Network("172.17.0.0/16")
    assert peer != ip


def test_host_mode_sees_the_host_interfaces_and_ignores_publishing(lab: Lab) -> None:
    r = lab.dy("run", "--rm", "--net", "host", "-p", "80:80", "ip", "-j", "addr", "show")
    assert r.returncode == 0, r.stderr
    names = {link["ifname"] for link in json.loads(r.stdout)}
    assert "up0" in names
    assert "WARNING: Published ports are discarded when using host network mode" in r.stderr
    assert lab.map_elements("publish_any") == []
    # No NAT: the upstream sees the host's own address, from the host itself.
    _upstream_server(lab)
    out = lab.dy_ok("run", "--rm", "--net", "host", sys.executable, PROBE, "ask", "tcp", UP_ADDR, "7000")
    assert out.startswith(f"peer={HOST_ADDR}:")


def test_container_mode_shares_the_target_network_and_loopback(lab: Lab) -> None:
    lab.run_d("--name", "target", sys.executable, PROBE, "serve", "tcp", "9000", "--bind", "127.0.0.1")
    target = lab.inspect("target")
    out = lab.dy_ok("run", "--rm", "--net", "container:target", "ip", "-j", "addr", "show", "eth0")
    eth0 = json.loads(out)[0]
    assert eth0["address"] == target["NetworkSettings"]["MacAddress"]
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == [
        target["NetworkSettings"]["IPAddress"]
    ]
    end = 0
    for _ in range(100):
        r = lab.dy(
            "run",
            "--rm",
            "--net",
            "container:target",
            sys.executable,
            PROBE,
            "ask",
            "tcp",
            "127.0.0.1",
            "9000",
        )
        end = r.returncode
        if end == 0:
            break
    assert end == 0 and "peer=127.0.0.1" in r.stdout
    joined = lab.run_d("--net", "container:target", "sleep", "300")
    assert lab.inspect(joined)["NetworkSettings"]["SandboxKey"] == target["NetworkSettings"]["SandboxKey"]


def test_container_mode_target_must_be_running(lab: Lab) -> None:
    lab.dy_ok("run", "--name", "gone", "true")
    r = lab.dy("run", "--rm", "--net", "container:gone", "true")
    assert r.returncode == 125
    assert "non running container: gone" in r.stderr
    r = lab.dy("run", "--rm", "--net", "container:nosuch", "true")
    assert r.returncode == 125 and "no such container: nosuch" in r.stderr


def test_container_mode_refuses_publishing(lab: Lab) -> None:
    lab.run_d("--name", "t2", "sleep", "300")
    r = lab.dy("run", "--rm", "--net", "container:t2", "-p", "80:80", "true")
    assert r.returncode == 125
    assert "port publishing and the container type network mode" in r.stderr


def test_container_mode_when_the_target_is_removed(lab: Lab) -> None:
    """As Docker: the joiner keeps running, left with only lo once the target's endpoint goes."""
    lab.run_d("--name", "t3", "sleep", "300")
    lab.run_d("--name", "j3", "--net", "container:t3", "sleep", "300")
    lab.dy_ok("rm", "-f", "t3")
    assert lab.inspect("j3")["State"]["Running"]
    lab.eventually(
        lambda: lab.dy_ok("exec", "j3", "ls", "/sys/class/net").split() == ["lo"], what="only lo left"
    )


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _queue_keys(ipcs: str) -> set[str]:
    """The keys of the message queues `ipcs -q` lists (random ones, as ipcmk makes)."""
    return {line.split()[0] for line in ipcs.splitlines() if line.startswith("0x")}


def test_each_container_has_its_own_ipc_and_mount_namespaces(lab: Lab) -> None:
    """In every mode, host and container: included, IPC and mount namespaces are the
    container's own, as with Docker; only the network namespace is the driver's business."""
    lab.run_d("--name", "nb", "sleep", "300")
    lab.run_d("--name", "nh", "--net", "host", "sleep", "300")
    lab.run_d("--name", "nc", "--net", "container:nb", "sleep", "300")
    pids = {name: lab.inspect(name)["State"]["Pid"] for name in ("nb", "nh", "nc")}
    daemon = int((lab.root / "dockyardd.pid").read_text())
    for kind in ("ipc", "mnt"):
        seen = {_ns(pid, kind) for pid in pids.values()}
        assert len(seen) == 3, (kind, seen)
        assert _ns(os.getpid(), kind) not in seen and _ns(daemon, kind) not in seen, kind
    host_net = os.stat(f"/run/netns/{lab.host}").st_ino
    assert _ns(pids["nh"], "net") == f"net:[{host_net}]"
    assert _ns(pids["nc"], "net") == _ns(pids["nb"], "net") != f"net:[{host_net}]"
    # What a separate IPC namespace means: a message queue made in one container is
    # seen there only, not by the host nor by the container sharing its network.
    lab.dy_ok("exec", "nb", "ipcmk", "-Q")
    keys = _queue_keys(lab.dy_ok("exec", "nb", "ipcs", "-q"))
    assert len(keys) == 1, keys
    assert not keys & _queue_keys(lab.dy_ok("exec", "nc", "ipcs", "-q"))
    assert not keys & _queue_keys(sh("ipcs", "-q").stdout)


def test_etc_hostname_holds_the_containers_hostname(lab: Lab) -> None:
    host_file = Path("/etc/hostname").read_text()
    cid = lab.run_d("--name", "hn", "sleep", "300")
    assert lab.dy_ok("exec", "hn", "cat", "/etc/hostname") == f"{cid[:12]}\n"
    assert lab.dy_ok("run", "--rm", "--hostname", "box", "cat", "/etc/hostname") == "box\n"
    # Bound in for the container only: the host's file is untouched.
    assert Path("/etc/hostname").read_text() == host_file


def test_loopback_is_up_on_a_bridge_container(lab: Lab) -> None:
    lo = json.loads(lab.dy_ok("run", "--rm", "ip", "-j", "addr", "show", "lo"))[0]
    assert "UP" in lo["flags"]
    assert [a["local"] for a in lo["addr_info"] if a["family"] == "inet"] == ["127.0.0.1"]
    # And it carries traffic: a server and its client on 127.0.0.1, inside one container.
    script = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "c = socket.create_connection(s.getsockname(), timeout=5); a, _ = s.accept()\n"
        "c.sendall(b'over lo'); print(a.recv(16).decode())\n"
    )
    assert lab.dy_ok("run", "--rm", sys.executable, "-c", script).strip() == "over lo"


def test_two_containers_get_distinct_macs(lab: Lab) -> None:
    lab.run_d("--name", "m1", "sleep", "300")
    lab.run_d("--name", "m2", "sleep", "300")
    macs = []
    for name in ("m1", "m2"):
        mac = lab.inspect(name)["NetworkSettings"]["MacAddress"]
        eth0 = json.loads(lab.dy_ok("exec", name, "ip", "-j", "link", "show", "eth0"))[0]
        assert eth0["address"] == mac
        macs.append(mac)
    assert macs[0] != macs[1]


# The bridge driver's leave against the lab's kernel, in-process: a step the kernel
# refuses is reported with what it kept, and a port already gone leaves nothing.
LEAVE_SCRIPT = textwrap.dedent("""
    import ipaddress, sys
    from pathlib import Path
    from dockyard.drivers.bridge import BridgeDriver
    from dockyard.errors import KernelError
    from dockyard.kernel import Kernel
    from dockyard.kernel.holds import PortHolds
    from dockyard.kernel.netlink import Netlink
    from dockyard.kernel.nft import Nft
    from dockyard.model import DriverName, Endpoint, Network
    from dockyard.policy import rules

    k = Kernel(Netlink(), Nft(), PortHolds())
    for text in (rules.TABLE_TEXT, rules.BRIDGE_TABLE_TEXT):
        k.nft.apply_text(text, "make the tables")
    net = Network("n" * 64, "leave", DriverName.BRIDGE, ipaddress.IPv4Network("10.47.0.0/24"),
                  ipaddress.IPv4Address("10.47.0.1"), bridge="dy-leave", icc=False)
    driver = BridgeDriver(k, "lab")

    def endpoint(port, n):
        return Endpoint(f"{n:064x}", "c" * 64, net.id, "eth0", ipaddress.IPv4Interface(f"10.47.0.{n}/24"),
                        net.gateway, f"02:42:0a:2f:00:{n:02x}", port)

    def guarded():
        listing = k.nft.list_table(rules.BRIDGE_FAMILY, rules.TABLE) or []
        el = rules.parse_listed_elements(listing, "lab")
        # Each port once per set that names it: its guard, MAC, address and isolation.
        return sorted([*el.guarded_ports, *(p for p, _ in el.port_macs), *(p for p, _ in el.port_addrs),
                       *el.no_icc_ports])

    def leave(ep):
        try:
            driver.leave(net, ep)
            return "ok"
        except KernelError as e:
            return f"error: {e}"

    driver.create_network(net)
    # A port the kernel will not delete (lo: EOPNOTSUPP), guarded as join guards a port.
    stuck = endpoint("lo", 2)
    k.nft.apply(rules.element_commands("add", rules.endpoint_elements(stuck, net.icc), "lab"), "guard lo")
    joined = endpoint("veth00leave", 3)
    driver.join(net, joined, Path(sys.argv[1]))
    print(guarded())
    print(leave(stuck))
    print(guarded())
    # A crash between steps: the veth already gone, its guard still there.
    k.netlink.delete_link(joined.host_ifname)
    print(leave(joined))
    print(guarded())
    print(leave(joined))
    k.nft.apply(rules.element_commands("delete", rules.endpoint_elements(stuck, net.icc)), "unguard lo")
    driver.delete_network(net)
""")


@contextlib.contextmanager
def _script_beside_a_sandbox(lab: Lab, script: str) -> Iterator[tuple[str, list[str]]]:
    """A sandbox namespace of the test's own; script run in the lab's host with its path, which
    must succeed: (the sandbox, the lines it printed). The sandbox goes afterwards."""
    sandbox = f"dyt-s-{lab.host[-6:]}"
    Lab.made.add(sandbox)
    sh("ip", "netns", "add", sandbox)
    try:
        r = lab.in_host(sys.executable, "-c", script, f"/run/netns/{sandbox}")
        assert r.returncode == 0, r.stderr
        yield sandbox, r.stdout.strip().splitlines()
    finally:
        sh("ip", "netns", "del", sandbox, check=False)


def test_bridge_leave_reports_a_refused_step_and_keeps_a_live_ports_guard(lab: Lab) -> None:
    with _script_beside_a_sandbox(lab, LEAVE_SCRIPT) as (sandbox, lines):
        both = "['lo', 'lo', 'lo', 'lo', 'veth00leave', 'veth00leave', 'veth00leave', 'veth00leave']"
        assert lines[0] == both, lines[0]
        # lo cannot go: the failure is reported, and so is the guard kept for the port the kernel kept.
        assert lines[1].startswith("error: removing endpoint lo: cannot delete link lo: "), lines[1]
        assert lines[1].endswith("; its guard stays while lo exists"), lines[1]
        assert "lo" in lab.links() and lines[2] == both, lines[2]
        # A port already gone: its guard goes, and a second leave finds nothing left to do.
        assert lines[3] == "ok" and lines[5] == "ok", lines
        assert lines[4] == "['lo', 'lo', 'lo', 'lo']", lines[4]
        assert "veth00leave" not in lab.links() and lab.links(sandbox) == ["lo"]


# The endpoint's netlink messages (kernel/rtnl.py) against the lab's kernel, in-process:
# what the kernel refuses comes back as one line naming the object, and leaves nothing.
RTNL_SCRIPT = textwrap.dedent("""
    import ipaddress, json, subprocess, sys
    from pathlib import Path
    from dockyard.errors import KernelError
    from dockyard.kernel.netlink import Netlink

    nl = Netlink()
    sandbox = Path(sys.argv[1])
    nl.ensure_bridge("dy-rtnl", ipaddress.IPv4Interface("10.48.0.1/24"), 1500, "lab")

    def plug(host, bridge):
        try:
            nl.create_endpoint(host, bridge, sandbox, "eth0", ipaddress.IPv4Interface("10.48.0.2/24"),
                               ipaddress.IPv4Address("10.48.0.1"), "02:42:0a:30:00:02", 1500)
            return "ok"
        except KernelError as e:
            return f"error: {e}"

    print(plug("vethrt1", "dy-nosuch"))
    print(plug("vethrt1", "dy-rtnl"))
    ip = ["ip", "-n", sandbox.name, "-j"]
    eth0 = json.loads(subprocess.run([*ip, "addr", "show", "eth0"], capture_output=True).stdout)[0]
    routes = json.loads(subprocess.run([*ip, "route", "show", "default"], capture_output=True).stdout)
    print("UP" in eth0["flags"], [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"],
          [r.get("gateway") for r in routes])
    print(plug("vethrt1", "dy-rtnl"))
    print(plug("vethrt2", "dy-rtnl"))
    print(nl.bridge_ports("dy-rtnl"), nl.index("x" * 16), nl.delete_link("x" * 20))
    print(nl.delete_link("vethrt1"), nl.delete_link("vethrt1"), nl.delete_link("dy-rtnl"))
""")


def test_an_endpoints_netlink_refusals_name_the_object_and_leave_nothing(lab: Lab) -> None:
    with _script_beside_a_sandbox(lab, RTNL_SCRIPT) as (sandbox, lines):
        assert lines[0] == "error: bridge dy-nosuch does not exist", lines
        assert lines[1] == "ok", lines
        # Configured whole: up, its address, the default route through the gateway.
        assert lines[2] == "True ['10.48.0.2'] ['10.48.0.1']", lines
        assert lines[3] == "error: cannot create veth pair vethrt1/eth0: File exists", lines
        # The sandbox has its eth0 already: the pair is refused whole, no host end is left.
        assert lines[4] == "error: cannot create veth pair vethrt2/eth0: File exists", lines
        assert lines[5] == "['vethrt1'] None False", lines
        assert lines[6] == "True False True", lines
        assert "vethrt2" not in lab.links() and "dy-rtnl" not in lab.links()
        assert lab.links(sandbox) == ["lo"]
