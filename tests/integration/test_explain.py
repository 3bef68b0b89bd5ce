"""`dockyard explain` against reality: every answer it gives about a port, a real packet confirms.

A lab with the shapes explain has to tell apart: a port published on every
address and one on 127.0.0.1 only, a user network and the default bridge
(isolated from each other), an --internal network, a network with icc off.
For each target, explain answers for every source it knows (the outside,
the host, its loopback, every container) and every way in (the published
ports, the container's own address); for each answer the test sends a real
TCP connection from that source to that destination and checks that it is
answered exactly when explain said so. The outside routes the containers'
subnets through the host, so that "dropped" is the firewall's doing, not a
missing route.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab import HOST_ADDR, HOST_ADDR6, UP_ADDR, UP_ADDR6, Lab, pid_alive

# Connect from a given source address (bound), print the answer; exit 1 when none comes.
ASK = r"""
import socket, sys
src, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    data = s.recv(4096)
    s.close()
except OSError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
sys.stdout.write(data.decode())
sys.exit(0 if data else 1)
"""


def _explain(lab: Lab, *args: str) -> dict:
    return json.loads(lab.dy_ok("explain", *args, "--format", "json"))


def _answered(lab: Lab, containers: dict[str, str], verdict: dict) -> bool:
    """Send a real connection from the verdict's source to its destination."""
    host, _, rest = verdict["dst"].rpartition(":")
    port = rest.split("/")[0]
    src = verdict["src"]
    timeout = "1.5"
    if verdict["source_kind"] == "outside":
        r = lab.in_up(sys.executable, "-c", ASK, src, host, port, timeout)
    elif verdict["source_kind"] in ("host", "loopback"):
        r = lab.in_host(sys.executable, "-c", ASK, src, host, port, timeout)
    else:
        r = lab.dy("exec", containers[src], sys.executable, "-c", ASK, src, host, port, timeout)
    return r.returncode == 0 and "peer=" in r.stdout


def _lab_of_shapes(lab: Lab) -> dict[str, str]:
    """Containers by address: web and quiet on front, other on the default bridge, lonely on an
    internal network, a1 and a2 on a network with icc off; each serves TCP 80."""
    lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
    lab.dy_ok("network", "create", "--subnet", "10.32.0.0/24", "--internal", "back")
    lab.dy_ok(
        "network",
        "create",
        "--subnet",
        "10.33.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "noicc",
    )
    lab.serve("--name", "web", "--net", "front", "-p", "8080:80")
    lab.serve("--name", "quiet", "--net", "front", "-p", "127.0.0.1:8081:80")
    lab.serve("--name", "other")
    lab.serve("--name", "lonely", "--net", "back")
    lab.serve("--name", "a1", "--net", "noicc", "-p", "8090:80")
    lab.serve("--name", "a2", "--net", "noicc", "-p", "8091:80")
    # The outside sends the containers' subnets to the host: "dropped" must be the firewall's.
    for subnet in ("172.17.0.0/16", "10.31.0.0/24", "10.32.0.0/24", "10.33.0.0/24"):
        lab.in_up("ip", "route", "add", subnet, "via", HOST_ADDR)
    names = ("web", "quiet", "other", "lonely", "a1", "a2")
    by_addr = {}
    for name in names:
        info = lab.inspect(name)
        for net in info["NetworkSettings"]["Networks"].values():
            by_addr[net["IPAddress"]] = name
    return by_addr


def _addr(by_addr: dict[str, str], name: str) -> str:
    return next(a for a, n in by_addr.items() if n == name)


def test_every_answer_about_a_port_is_what_a_real_packet_does(lab: Lab) -> None:
    by_addr = _lab_of_shapes(lab)
    checked = {True: 0, False: 0}
    kinds = set()
    wrong = []
    for target in ("web", "quiet", "a2", "lonely"):
        report = _explain(lab, target, "--port", "80/tcp")
        assert report["mismatches"] == [], report["mismatches"]
        verdicts = report["verdicts"]
        assert verdicts, f"explain {target} --port 80 gave no verdict"
        for v in verdicts:
            real = _answered(lab, by_addr, v)
            checked[real] += 1
            kinds.add(v["source_kind"])
            if real != v["answered"]:
                wrong.append(
                    f"{target}: from {v['source']} to {v['dst']}: explain said "
                    f"{'answered' if v['answered'] else 'not: ' + v['decided_by']}, a real packet was "
                    f"{'answered' if real else 'not answered'}"
                )
    assert not wrong, "\n".join(wrong)
    # Both kinds of answer were put to the test, from every kind of source.
    assert checked[True] >= 10 and checked[False] >= 10, checked
    assert kinds == {"outside", "host", "loopback", "container"}, kinds


def test_explain_names_the_deciding_element(lab: Lab) -> None:
    by_addr = _lab_of_shapes(lab)
    web = _addr(by_addr, "web")
    # From outside, the published port: DNATed by the exact element.
    report = _explain(lab, "web", "--port", "80", "--from", UP_ADDR)
    published = next(v for v in report["verdicts"] if v["dst"] == f"{HOST_ADDR}:8080/tcp")
    assert published["answered"]
    assert published["decided_by"] == f"inet dockyard map publish_any {{ tcp . 8080 : {web} . 80 }}"
    direct = next(v for v in report["verdicts"] if v["dst"] == f"{web}:80/tcp")
    assert not direct["reaches"]
    assert "oifname @bridges drop" in direct["decided_by"]
    # 127.0.0.1 publishing from outside: no DNAT on the host's address.
    report = _explain(lab, "quiet", "--port", "80", "--from", UP_ADDR)
    dsts = {v["dst"]: v for v in report["verdicts"]}
    assert "127.0.0.1:8081/tcp" in dsts, dsts  # a port on 127.0.0.1 is named with its own address
    # From another network, by container name: isolation decides.
    report = _explain(lab, "web", "--port", "80", "--from", "other")
    direct = next(v for v in report["verdicts"] if v["dst"] == f"{web}:80/tcp")
    assert not direct["reaches"] and "oifname @bridges drop" in direct["decided_by"]
    # icc off: the bridge table's element decides.
    report = _explain(lab, "a2", "--port", "80", "--from", "a1")
    a2 = _addr(by_addr, "a2")
    direct = next(v for v in report["verdicts"] if v["dst"] == f"{a2}:80/tcp")
    assert not direct["reaches"]
    assert "no_icc_ports" in direct["decided_by"] or "icc_pairs" in direct["decided_by"], direct
    # An internal network's member has no way to the host's address.
    report = _explain(lab, "web", "--port", "80", "--from", "lonely")
    for v in report["verdicts"]:
        assert not v["reaches"], v


def test_explain_a_container_reads_the_kernel(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
    cid = lab.serve("--name", "web", "--net", "front", "-p", "8080:80")
    report = _explain(lab, "web")
    assert report["mismatches"] == []
    claims = {c["topic"]: c for s in report["sections"] for c in s["claims"]}
    info = lab.inspect(cid)
    net = info["NetworkSettings"]["Networks"]["front"]
    links = {link["ifname"]: link for link in json.loads(lab.in_host("ip", "-j", "link").stdout)}
    # The namespace's inode is the pin's.
    pid = info["State"]["Pid"]
    inode = lab.in_host("stat", "-L", "-c", "%i", f"/proc/{pid}/ns/net").stdout.strip()
    assert f"net:[{inode}]" in claims["namespace"]["text"]
    # The peer named is the host link whose peer is the container's eth0, on the network's bridge.
    peer = next(name for name in links if name.startswith("veth") and name in claims["peer"]["text"])
    bridge = next(name for name in links if name.startswith("dy-"))
    assert links[peer]["master"] == bridge
    assert f"bridge {bridge}" in claims["bridge"]["text"]
    assert net["MacAddress"] in claims["interface"]["text"]
    # Every element named is in the table the kernel lists.
    dnat = claims["dnat"]["objects"][0]
    assert dnat == f"inet dockyard map publish_any {{ tcp . 8080 : {net['IPAddress']} . 80 }}"
    assert ["tcp", 8080] in [item[0]["concat"] for item in lab.map_elements("publish_any")]
    # A resolver on the network's gateway.
    assert f"{net['Gateway']}:53" in claims["dns"]["text"]


def test_a_mismatch_between_records_and_kernel_is_reported(lab: Lab) -> None:
    lab.serve("--name", "web", "-p", "8080:80")
    # Someone removes the published port's element behind dockyard's back.
    elem = "{ tcp . 8080 }"
    r = lab.in_host("nft", "delete", "element", "inet", "dockyard", "publish_any", elem)
    assert r.returncode == 0, r.stderr
    report = _explain(lab, "web", "--port", "80", "--from", UP_ADDR)
    assert any("8080" in m for m in report["mismatches"]), report["mismatches"]
    published = [v for v in report["verdicts"] if v["dst"].endswith(":8080/tcp")]
    assert published == [], "with the element gone, explain offers no published way in"
    text = lab.dy_ok("explain", "web")
    assert "records and kernel differ" in text
    # And a real packet agrees: the port no longer answers from outside.
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=1.0) is None


# A dual-stack network, and an IPv6-only one (Docker 28's --ipv4=false): the same IPv6 half.
D6 = {
    "dual": ("--ipv6", "--subnet", "2001:db8:31::/64", "--subnet", "10.31.0.0/24"),
    "ipv6only": ("--ipv4=false", "--ipv6", "--subnet", "2001:db8:31::/64"),
}


@pytest.mark.parametrize("family", D6)
def test_explain_a_dual_stack_container_names_its_ipv6_elements(lab: Lab, family: str) -> None:
    lab.dy_ok("network", "create", *D6[family], "d6")
    lab.serve("--name", "web", "--net", "d6", "-p", "8080:80", "-p", f"[{HOST_ADDR6}]:8081:80")
    net = lab.inspect("web")["NetworkSettings"]["Networks"]["d6"]
    addr6 = net["GlobalIPv6Address"]
    report = _explain(lab, "web")
    assert report["mismatches"] == [], report["mismatches"]
    claims = [c for s in report["sections"] for c in s["claims"]]
    by_topic = {c["topic"]: c for c in claims}
    assert f"{addr6}/64" in by_topic["interface"]["text"]
    assert f"the IPv6 gateway {net['IPv6Gateway']}" in by_topic["bridge"]["text"]
    dnat = [o for c in claims if c["topic"] == "dnat" for o in c["objects"]]
    any6 = f"inet dockyard map publish_any6 {{ tcp . 8080 : {addr6} . 80 }}"
    addr6_el = f"inet dockyard map publish_addr6 {{ {HOST_ADDR6} . tcp . 8081 : {addr6} . 80 }}"
    assert any6 in dnat and addr6_el in dnat, dnat
    if family == "dual":
        assert f"inet dockyard map publish_any {{ tcp . 8080 : {net['IPAddress']} . 80 }}" in dnat
    else:
        # No IPv4 anywhere: no IPv4 element is named, nor found in the kernel, and the claims
        # say so; its routes are IPv6's, the default via the IPv6 gateway; its resolver is IPv6's.
        assert net["IPAddress"] == "" and lab.map_elements("publish_any") == []
        named = [o for c in claims for o in c["objects"]]
        ipv4_sets = (
            "publish_any ",
            "publish_addr ",
            "masq_nets ",
            "bridge_nets ",
            "dns_gateways ",
            "port_addrs ",
        )
        assert not [o for o in named if any(f" {s}" in o for s in ipv4_sets)], named
        assert "no IPv4 (IPv6-only)" in by_topic["bridge"]["text"]
        assert f"default via {net['IPv6Gateway']}" in by_topic["routes"]["text"], by_topic["routes"]
        assert "default route goes to the gateway" in by_topic["routes"]["text"]
        assert "it has none (IPv6-only)" in by_topic["anti-spoofing"]["text"]
        dns = next(c for c in claims if c["topic"] == "dns")
        gw6 = net["IPv6Gateway"]
        assert f"[{gw6}]:53 (tcp/udp)" in dns["text"] and f"resolv.conf names {gw6}" in dns["text"], dns
    # The dual-stack [::] hold of 8080 is seen.
    held = next(c for c in claims if c["topic"] == "dnat" and any6 in c["objects"])
    assert "held by the daemon" in held["text"], held["text"]
    guard = by_topic["anti-spoofing"]["objects"]
    assert any(o.startswith("bridge dockyard set port_addrs6") and addr6 in o for o in guard), guard
    # The way out, hairpin and DNS: each family's element.
    named = {o for c in claims for o in c["objects"]}
    for obj in (
        "inet dockyard set masq_nets6 { 2001:db8:31::/64 }",
        "inet dockyard set dns_gateways6 { " + net["IPv6Gateway"] + " }",
    ):
        assert obj in named, (obj, named)
    assert any(o.startswith("inet dockyard set bridge_nets6 { 2001:db8:31::/64 . ") for o in named), named
    assert f"[{net['IPv6Gateway']}]:53 (tcp/udp)" in " ".join(
        c["text"] for c in claims if c["topic"] == "dns"
    )
    assert _explain(lab, "d6")["mismatches"] == []
    # Every element named is in the table the kernel lists, and a real packet goes its way.
    assert [["tcp", 8080], {"concat": [addr6, 80]}] in [
        [item[0]["concat"], item[1]] for item in lab.map_elements("publish_any6")
    ]
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8081).startswith("peer=")
    # Someone removes the IPv6 element behind dockyard's back: explain says so.
    r = lab.in_host("nft", "delete", "element", "inet", "dockyard", "publish_any6", "{ tcp . 8080 }")
    assert r.returncode == 0, r.stderr
    mismatches = _explain(lab, "web")["mismatches"]
    assert any("8080" in m and "no DNAT element" in m for m in mismatches), mismatches


def test_explain_a_routed_ipv6_container_names_its_routed6_element(lab: Lab) -> None:
    mode = "com.docker.network.bridge.gateway_mode_ipv6=routed"
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:5::/64", "-o", mode, "routed")
    lab.serve("--name", "r1", "--net", "routed", "-p", "8080:80")
    addr6 = lab.inspect("r1")["NetworkSettings"]["Networks"]["routed"]["GlobalIPv6Address"]
    report = _explain(lab, "r1")
    assert report["mismatches"] == [], report["mismatches"]
    dnat = [c for s in report["sections"] for c in s["claims"] if c["topic"] == "dnat"]
    obj = f"inet dockyard set routed6 {{ {addr6} . tcp . 80 }}"
    routed = next(c for c in dnat if obj in c["objects"])
    assert "no NAT66" in routed["text"]
    assert not any("publish_any6" in o for c in dnat for o in c["objects"])
    out = [c["text"] for s in report["sections"] for c in s["claims"] if c["topic"] == "out"]
    assert any("no NAT66" in text for text in out), out
    assert lab.map_elements("routed6") == [{"concat": [addr6, "tcp", 80]}]


def test_explain_a_network_and_errors(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
    lab.serve("--name", "web", "--net", "front")
    report = _explain(lab, "front")
    text = json.dumps(report)
    assert "web's eth0" in text and "10.31.0.1/24" in text
    assert report["mismatches"] == []
    r = lab.dy("explain", "nosuch")
    assert r.returncode == 125 and r.stderr.startswith("dockyard: no such container or network: nosuch")
    r = lab.dy("explain", "web", "--port", "70000")
    assert r.returncode == 125 and "invalid" in r.stderr
    r = lab.dy("explain", "front", "--port", "80")
    assert r.returncode == 125 and "name a container" in r.stderr
    r = lab.dy("explain", "web", "--port", "80", "--from", "not-an-address")
    assert r.returncode == 125 and "--from" in r.stderr


# -- trace ---------------------------------------------------------------------------


def _ruleset(lab: Lab) -> dict:
    r = lab.in_host("nft", "-j", "list", "ruleset")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _trace_while(lab: Lab, to: str, send, src: str = UP_ADDR) -> tuple[dict, list[str]]:  # type: ignore[no-untyped-def]
    """Run `dockyard trace` from the outside to `to`; once it says it traces, list the tables
    and call send(); return its report and the tables seen meanwhile."""
    p = subprocess.Popen(
        lab.dy_cmd("trace", "--from", src, "--to", to, "--timeout", "20", "--format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(p)
    assert p.stderr is not None
    said = p.stderr.readline()
    assert said.startswith("dockyard: tracing"), said
    tables = lab.in_host("nft", "list", "tables").stdout.splitlines()
    send()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out), tables


def _steps(report: dict) -> list[dict]:
    return [s for pkt in report["packets"] for s in pkt["steps"]]


@pytest.mark.parametrize("family", ["ipv4", "ipv6only"])
def test_trace_shows_the_dnat_of_a_published_port_and_the_drop_of_a_direct_one(lab: Lab, family: str) -> None:
    """The same flows over IPv4, and over IPv6 on an IPv6-only network (ip6 matches, the IPv6 map)."""
    v6 = family == "ipv6only"
    if v6:
        lab.dy_ok("network", "create", "--ipv4=false", "--ipv6", "--subnet", "2001:db8:31::/64", "front")
        lab.in_up("ip", "-6", "route", "add", "2001:db8:31::/64", "via", HOST_ADDR6)
    else:
        lab.dy_ok("network", "create", "--subnet", "10.31.0.0/24", "front")
        lab.in_up("ip", "route", "add", "10.31.0.0/24", "via", HOST_ADDR)
    lab.serve("--name", "web", "--net", "front", "-p", "8080:80")
    net = lab.inspect("web")["NetworkSettings"]["Networks"]["front"]
    web = net["GlobalIPv6Address"] if v6 else net["IPAddress"]
    host, up, ip = (HOST_ADDR6, UP_ADDR6, "ip6") if v6 else (HOST_ADDR, UP_ADDR, "ip")

    def at(address: str, port: int) -> str:
        return f"[{address}]:{port}" if v6 else f"{address}:{port}"

    before = _ruleset(lab)

    answers: list[str | None] = []
    report, tables = _trace_while(
        lab, f"{at(host, 8080)}/tcp", lambda: answers.append(lab.ask(lab.up, "tcp", host, 8080)), up
    )
    peer = f"peer=[{up}]:" if v6 else f"peer={up}:"
    assert answers[0] and answers[0].startswith(peer), answers  # the packet was sent
    # While it traced, the tables of its own were there; afterwards the ruleset is as it was.
    assert any("dockyard-trace-" in t for t in tables), tables
    assert _ruleset(lab) == before
    first = report["packets"][0]
    assert f"{ip} daddr {host}" in first["packet"] and "tcp dport 8080" in first["packet"]
    hooks = [(s["hook"], s["chain"], s["rule"]) for s in first["steps"]]
    nat = next(h for h in hooks if h[1] == "prerouting" and h[0].startswith("prerouting (nat"))
    assert "jump publish" in nat[2], hooks
    dnat = next(h for h in hooks if h[1] == "publish" and "dnat" in h[2])
    assert ("@publish_any6" if v6 else "@publish_any") in dnat[2], hooks
    # After the DNAT the packet is forwarded into the bridge as a DNATed packet.
    assert any(h[0].startswith("forward") and "ct status dnat accept" in h[2] for h in hooks), hooks
    assert not any(s["verdict"].startswith("drop") for s in _steps(report))
    assert report["nat"].startswith(f"DNAT: {at(host, 8080)} -> {at(web, 80)}"), report["nat"]

    # Straight at the container's address from outside: dropped by isolation, no NAT.
    answers.clear()
    report, tables = _trace_while(
        lab, f"{at(web, 80)}/tcp", lambda: answers.append(lab.ask(lab.up, "tcp", web, 80, timeout=1.0)), up
    )
    assert answers == [None]
    assert any("dockyard-trace-" in t for t in tables), tables
    assert _ruleset(lab) == before
    drops = [s for s in _steps(report) if s["verdict"] == "drop"]
    assert drops and all(s["chain"] == "forward" and s["rule"] == "oifname @bridges drop" for s in drops)
    assert report["packets"][0]["fate"] == "dropped in inet dockyard forward by `oifname @bridges drop`"
    assert report["nat"].startswith("conntrack recorded no connection"), report["nat"]


def test_trace_with_a_probe_from_a_container(lab: Lab) -> None:
    lab.serve("--name", "web", "-p", "8080:80")
    lab.serve("--name", "client")
    client = lab.ip_of("client")
    web = lab.ip_of("web")
    before = _ruleset(lab)
    out = lab.dy_ok("trace", "--from", client, "--to", f"{HOST_ADDR}:8080/tcp", "--probe")
    assert _ruleset(lab) == before
    assert out.startswith(f"trace of {client} -> {HOST_ADDR}:8080/tcp\nprobe: connected\n"), out
    # The frame first meets the bridge table's guard of the container's port, then the DNAT
    # (the report wraps a long rule: compared with its lines joined).
    assert (
        "bridge dockyard ports [prerouting (filter, -300)]: "
        "iifname . ip saddr @port_addrs iifname . ether saddr @port_macs accept"
    ) in " ".join(out.split())
    assert "inet dockyard publish [jumped to]: dnat ip to meta l4proto . th dport map @publish_any" in out
    assert f"conntrack: DNAT: {HOST_ADDR}:8080 -> {web}:80" in out
    assert "nothing of it is left" in out
    # Bad input: one line, exit 125, nothing made.
    r = lab.dy("trace", "--from", client, "--to", "nowhere")
    assert r.returncode == 125 and r.stderr.startswith("dockyard: invalid --to 'nowhere'"), r.stderr
    r = lab.dy("trace", "--from", "203.0.113.9", "--to", f"{web}:80/tcp", "--probe")
    assert r.returncode == 125 and "cannot send a probe from 203.0.113.9" in r.stderr, r.stderr
    assert _ruleset(lab) == before


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def test_a_trace_cut_short_by_a_daemon_crash_leaves_nothing_running_and_gc_removes_its_tables(
    lab: Lab,
) -> None:
    lab.serve("--name", "web", "-p", "8080:80")
    # A trace table of another root, which must be left alone.
    foreign = "dockyard-trace-000000000000-abcdef"
    assert lab.in_host("nft", "add", "table", "inet", foreign).returncode == 0
    try:
        p = subprocess.Popen(
            lab.dy_cmd("trace", "--from", UP_ADDR, "--to", f"{HOST_ADDR}:8080/tcp", "--timeout", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lab.procs.append(p)
        assert p.stderr is not None
        said = p.stderr.readline()
        ours = said.split("(tables ")[1].split(")")[0]
        tables = lab.in_host("nft", "list", "tables").stdout
        assert f"table inet {ours}" in tables and f"table bridge {ours}" in tables
        daemon = int((lab.root / "dockyardd.pid").read_text())
        # The trace's watchers, among the daemon's children: `nft monitor` and `conntrack -E`.
        argv = {c: Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0") for c in _children(daemon)}
        watchers = {c: a for c, a in argv.items() if Path(a[0].decode()).name in ("nft", "conntrack")}
        assert sorted(Path(a[0].decode()).name for a in watchers.values()) == ["conntrack", "nft"], argv
        os.kill(daemon, signal.SIGKILL)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 125 and err.startswith("dockyard:"), err
        # The watchers died with the daemon; its tables stayed until the next start's gc.
        lab.eventually(lambda: not any(pid_alive(w) for w in watchers), timeout=5, what="the watchers ended")
        assert f"table inet {ours}" in lab.in_host("nft", "list", "tables").stdout
        lab.dy_ok("ps")  # starts the daemon again
        tables = lab.in_host("nft", "list", "tables").stdout
        assert ours not in tables
        assert f"table inet {foreign}" in tables
        # And the container it adopted still answers through its published port.
        assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080)
    finally:
        lab.in_host("nft", "delete", "table", "inet", foreign)


# Either family: connect from a bound source (an IPv6 one in brackets-free form), print the answer.
ASK_ANY = ASK.replace("socket.AF_INET,", "socket.AF_INET6 if ':' in host else socket.AF_INET,")


def _answered_any(lab: Lab, containers: dict[str, str], verdict: dict) -> bool:
    """_answered for either family: dst is `[address]:port/proto` for IPv6."""
    where, _, _proto = verdict["dst"].rpartition("/")
    host, _, port = where.rpartition(":")
    host, src = host.strip("[]"), verdict["src"]
    if verdict["source_kind"] == "outside":
        r = lab.in_up(sys.executable, "-c", ASK_ANY, src, host, port, "1.5")
    elif verdict["source_kind"] in ("host", "loopback"):
        r = lab.in_host(sys.executable, "-c", ASK_ANY, src, host, port, "1.5")
    else:
        r = lab.dy("exec", containers[src], sys.executable, "-c", ASK_ANY, src, host, port, "1.5")
    return r.returncode == 0 and "peer=" in r.stdout


@pytest.mark.parametrize("family", D6)
def test_every_answer_about_an_ipv6_published_port_is_what_a_real_packet_does(lab: Lab, family: str) -> None:
    """-p 8080:80 on a dual-stack network (both families) and -p [::]:8082:80 (IPv6 only):
    explain --port answers for the IPv6 outside, the host's IPv6 address, ::1 and each
    container's IPv6 address as for IPv4, and a real connection agrees with every answer.
    On an IPv6-only network alike, and no IPv4 source is offered a way in at all."""
    lab.dy_ok("network", "create", *D6[family], "d6")
    lab.serve("--name", "web", "--net", "d6", "-p", "8080:80")
    lab.serve("--name", "only6", "--net", "d6", "-p", "[::]:8082:80")
    lab.serve("--name", "peer", "--net", "d6")
    # The outside sends the subnets to the host: "dropped" must be the firewall's.
    lab.in_up("ip", "route", "add", "10.31.0.0/24", "via", HOST_ADDR)
    lab.in_up("ip", "-6", "route", "add", "2001:db8:31::/64", "via", HOST_ADDR6)
    by_addr = {}
    for name in ("web", "only6", "peer"):
        net = lab.inspect(name)["NetworkSettings"]["Networks"]["d6"]
        by_addr[net["IPAddress"] or name] = by_addr[net["GlobalIPv6Address"]] = name
    web6 = next(a for a, n in by_addr.items() if n == "web" and ":" in a)
    only6 = next(a for a, n in by_addr.items() if n == "only6" and ":" in a)
    checked = {True: 0, False: 0}
    kinds, wrong, v6_dsts = set(), [], set()
    verdicts = {}
    for target in ("web", "only6"):
        report = _explain(lab, target, "--port", "80/tcp")
        assert report["mismatches"] == [], report["mismatches"]
        verdicts[target] = report["verdicts"]
        for v in report["verdicts"]:
            real = _answered_any(lab, by_addr, v)
            if ":" in v["src"]:
                checked[real] += 1
                kinds.add(v["source_kind"])
                v6_dsts.add(v["dst"])
            if real != v["answered"]:
                wrong.append(
                    f"{target}: from {v['source']} to {v['dst']}: explain said "
                    f"{'answered' if v['answered'] else 'not: ' + v['decided_by']}, a real packet was "
                    f"{'answered' if real else 'not answered'}"
                )
    assert not wrong, "\n".join(wrong)
    assert checked[True] >= 5 and checked[False] >= 2, checked
    assert kinds == {"outside", "host", "loopback", "container"}, kinds
    # Each IPv6 way in was asked about: both published ports on the host's IPv6 address and on
    # ::1, and each container's own IPv6 address.
    for dst in (f"[{HOST_ADDR6}]:8080/tcp", f"[{HOST_ADDR6}]:8082/tcp", "[::1]:8080/tcp", f"[{web6}]:80/tcp"):
        assert dst in v6_dsts, (dst, v6_dsts)
    # The deciding element, by name, from the IPv6 outside (--from takes an IPv6 address; the
    # host port given is explained as its container port).
    report = _explain(lab, "only6", "--port", "8082", "--from", UP_ADDR6)
    published = next(v for v in report["verdicts"] if v["dst"] == f"[{HOST_ADDR6}]:8082/tcp")
    assert published["answered"], published
    assert published["decided_by"] == f"inet dockyard map publish_any6 {{ tcp . 8082 : {only6} . 80 }}"
    direct = next(v for v in report["verdicts"] if v["dst"] == f"[{only6}]:80/tcp")
    assert not direct["reaches"] and "oifname @bridges drop" in direct["decided_by"], direct
    # [::]:8082 publishes on IPv6 only: no IPv4 source is offered a way in by 8082.
    assert not any(v["dst"].endswith(":8082/tcp") and ":" not in v["src"] for v in verdicts["only6"])
    if family == "ipv6only":  # nor by anything: the containers have no IPv4
        assert not any(":" not in v["src"] for vs in verdicts.values() for v in vs), verdicts
        # --from another container names it by its IPv6 address (it has no other).
        peer6 = next(a for a, n in by_addr.items() if n == "peer" and ":" in a)
        report = _explain(lab, "web", "--port", "80", "--from", "peer")
        assert {v["src"] for v in report["verdicts"]} == {peer6}, report["verdicts"]
        for v in report["verdicts"]:
            assert _answered_any(lab, by_addr, v) == v["answered"], v
    # ::1 is lost to br_netfilter above (the reply's NAT undone at the bridge); without it,
    # explain says [::1]:8080 answers, and so it does.
    assert any(
        v["dst"] == "[::1]:8080/tcp" and not v["answered"] and "bridge-nf-call-ip6tables" in v["decided_by"]
        for v in verdicts["web"]
    ), verdicts["web"]
    r = lab.in_host("sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0")
    assert r.returncode == 0, r.stderr
    report = _explain(lab, "web", "--port", "80", "--from", "::1")
    loop = next(v for v in report["verdicts"] if v["dst"] == "[::1]:8080/tcp")
    assert loop["answered"] and "publish_any6" in loop["decided_by"], loop
    assert _answered_any(lab, by_addr, loop)
