"""The kernel-only baseline: dockyard's shape with no dockyard, for the throughput scripts.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). In a lab of its own (a host namespace and an upstream one, as
every tool gets), a bridge with a gateway address of each family, a client
and a server namespace on it through veth pairs, an iperf3 server, and
hand-written nft rules doing only what a published port needs: DNAT to the
server from the host's addresses and from loopback, the loopback source
masqueraded into the bridge (with route_localnet for 127.0.0.1 and a local
::1 route through the bridge for ::1, as dockyard's bridges have), and the
hairpin masqueraded. No port guard, no forward chain, no maps: whatever a
published flow loses here beside its direct flow is the kernel's path
(conntrack, NAT, routing, the bridge crossed twice); what dockyard's flow
loses beyond it is dockyard's own rules. The scripts measure these flows in
the same rounds as dockyard's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from _common import run_cmd
from _report import Table
from _script import HOST_ADDR, Run, ScriptLab
from lab import HOST_ADDR6

BRIDGE = "kb0"
NET4 = "198.19.0"  # RFC 2544's benchmarking range (Docker's lab has 198.18.0.0/16): .1 the bridge
NET6 = "2001:db8:19:"  # a /64 of the documentation prefix no lab uses: ::1 the bridge
CLIENT, SERVER = 2, 3  # the last group of each namespace's address, of each family
TOOL = "kernel"  # the baseline's flows carry this as their tool


@dataclass
class KernelLab:
    """The baseline's lab: where to run a client from, and the server's addresses."""

    lab: ScriptLab
    host: list[str]  # `ip netns exec` into the host namespace
    up: list[str]  # ... the upstream one (the outside)
    client: list[str]  # ... the client's namespace on the bridge
    server4: str
    server6: str


def rules(port: int, loopback_port: int) -> str:
    """The rules: `port` published on the host's addresses and `loopback_port` on loopback,
    each to the server's `port`, on both families."""
    s4, s6 = f"{NET4}.{SERVER}", f"{NET6}:{SERVER}"
    return f"""
        table inet kernel {{
            chain prerouting {{
                type nat hook prerouting priority -100; policy accept;
                ip daddr {HOST_ADDR} tcp dport {port} dnat ip to {s4}:{port}
                ip6 daddr {HOST_ADDR6} tcp dport {port} dnat ip6 to [{s6}]:{port}
            }}
            chain output {{
                type nat hook output priority -100; policy accept;
                ip daddr 127.0.0.1 tcp dport {loopback_port} dnat ip to {s4}:{port}
                ip6 daddr ::1 tcp dport {loopback_port} dnat ip6 to [{s6}]:{port}
            }}
            chain postrouting {{
                type nat hook postrouting priority 100; policy accept;
                ip saddr 127.0.0.0/8 oifname "{BRIDGE}" masquerade
                ip6 saddr ::1 oifname "{BRIDGE}" masquerade
                ct status dnat ip saddr {NET4}.0/24 oifname "{BRIDGE}" masquerade
                ct status dnat ip6 saddr {NET6}:/64 oifname "{BRIDGE}" masquerade
            }}
        }}
    """


def kernel_lab(run: Run, port: int, loopback_port: int, bridge_nf6: bool = True) -> KernelLab:
    """A new lab with the baseline's bridge, namespaces, rules and iperf3 server on `port`.

    bridge_nf6=False sets net.bridge.bridge-nf-call-ip6tables=0 in its host
    namespace (its own sysctl), as ::1 publishing needs and bench/ipv6.py's
    dockyard lab has.
    """
    lab = run.lab()

    def sh(*argv: str) -> None:
        run_cmd(argv, "kernel baseline")

    host = ["ip", "netns", "exec", lab.host]
    # A new namespace inherits the root's forwarding, which may be off: the hairpin is routed.
    sh(*host, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    if not bridge_nf6:
        sh(*host, "sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0")
    sh(*host, "ip", "link", "add", BRIDGE, "type", "bridge")
    sh(*host, "ip", "addr", "add", f"{NET4}.1/24", "dev", BRIDGE)
    sh(*host, "ip", "addr", "add", f"{NET6}:1/64", "dev", BRIDGE, "nodad")
    sh(*host, "sysctl", "-qw", f"net.ipv4.conf.{BRIDGE}.route_localnet=1")
    sh(*host, "ip", "link", "set", BRIDGE, "up")
    # What route_localnet is to 127.0.0.1: the reply DNATed back to ::1 arrives by the bridge.
    sh(
        *host,
        "ip",
        "-6",
        "route",
        "add",
        "local",
        "::1/128",
        "dev",
        BRIDGE,
        "table",
        "local",
        "metric",
        "1024",
    )
    inside: dict[int, list[str]] = {}
    for last in (CLIENT, SERVER):
        ns, veth = f"{lab.host}-{last}", f"kv{last}"
        lab.add_netns(ns)
        inside[last] = ["ip", "netns", "exec", ns]
        sh(*host, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh(*host, "ip", "link", "set", veth, "master", BRIDGE, "up")
        sh(*inside[last], "ip", "addr", "add", f"{NET4}.{last}/24", "dev", "eth0")
        sh(*inside[last], "ip", "addr", "add", f"{NET6}:{last}/64", "dev", "eth0", "nodad")
        sh(*inside[last], "ip", "link", "set", "eth0", "up")
        sh(*inside[last], "ip", "link", "set", "lo", "up")
        sh(*inside[last], "ip", "route", "add", "default", "via", f"{NET4}.1")
        sh(*inside[last], "ip", "-6", "route", "add", "default", "via", f"{NET6}:1")
    (lab.tmp / "kernel.nft").write_text(rules(port, loopback_port))
    sh(*host, "nft", "-f", str(lab.tmp / "kernel.nft"))
    # The server and the clients in the client namespace run in sessions of their own, as a
    # container's processes do (dockyard's and Docker's): with the scheduler's autogroups a
    # session is one share of the CPUs, so on a loaded machine both ends in the script's own
    # session would get one share where a container's two ends get two.
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{lab.host}-{SERVER}", "iperf3", "-s", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    lab.procs.append(proc)  # the lab's teardown stops it, by its PID
    lab.remember_pid(proc.pid)
    return KernelLab(
        lab=lab,
        host=host,
        up=["ip", "netns", "exec", lab.up],
        client=["setsid", "--wait", *inside[CLIENT]],
        server4=f"{NET4}.{SERVER}",
        server6=f"{NET6}:{SERVER}",
    )


def beside_baseline(label: str, rows: list[list[str]]) -> Table:
    """The table both throughput benches print: each flow through dockyard beside the baseline."""
    return Table(
        f"{label} against a kernel-only baseline: the same flows through a bridge and hand-written rules "
        "doing only DNAT and masquerade (bench/_kernel.py), in the same rounds (Gbit/s, median "
        "(min-max); ratios paired: the median of the per-round ratios)",
        [
            "flow",
            "dockyard Gbit/s",
            "kernel-only Gbit/s",
            "dockyard / b",
            "kernel-only / b",
            "dockyard / kernel-only",
        ],
        rows,
    )
