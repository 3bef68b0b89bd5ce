"""A kernel-only overlay for bench/overlay.py: dockyard's VXLAN path made by hand, no dockyard.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). The same underlay as the etcd lab's (tests/etcd_lab.py: a
bridge in a switch namespace, a veth `und0` per host, 192.0.2.11 and
192.0.2.13 on one /24, MTU 1500), two hosts of it, and on each host what
the overlay driver makes, with `ip` and `bridge` only:

    container 1 (eth0 10.92.0.2, MTU 1450)        container 3 (eth0 10.92.0.3)
      | veth                                          | veth
    br0 + vx0 (VXLAN id 4242, port 4789, local = the host's address,
    nolearning, proxy, MTU 1450; a static FDB entry and a permanent
    neighbour entry for the other container)   ... the same on host 3
      |                                               |
    und0 192.0.2.11 ----- switch (sw0) ----- und0 192.0.2.13

and beside it, on the same hosts and underlay, the path of the figure the
issue measured by hand: a VXLAN device (id 4243) with an address of its
own (10.93.0.11 and .13), no bridge, no container: "VXLAN between two
namespaces over veths".

No nftables table in any of these namespaces, so no conntrack; br_netfilter's
sysctls as a new namespace has them. The flows, all one iperf3 TCP stream
from host 1's side to host 3's:

    kernel underlay:        host 1 -> host 3 (192.0.2.13)
    kernel VXLAN:           host 1 -> host 3 over the bare VXLAN device (10.93.0.13)
    kernel overlay:         container 1 -> container 3 (bridge, VXLAN, bridge)

Every namespace and process is written into the ledger before it is made,
and `stop` (a Run's daemon) removes them by name and PID.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from pathlib import Path

from _common import run_cmd, start_time
from netlab import NETNS_DIR, add_netns, record

VNI = 4242
BARE_VNI = 4243
PORT = 4789
UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - 50  # as the overlay driver sets it: outer IPv4 + UDP + VXLAN + Ethernet
HOSTS = {1: "192.0.2.11", 3: "192.0.2.13"}
CONTAINERS = {1: "10.92.0.2", 3: "10.92.0.3"}
CONTAINER_MACS = {1: "02:42:0a:5c:00:02", 3: "02:42:0a:5c:00:03"}
BARE = {1: "10.93.0.11", 3: "10.93.0.13"}


class KernelOverlay:
    """The namespaces above, `setup` then `stop`; `flows` are the iperf3 client commands."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.switch = f"dybk-s-{tag}"
        self.hosts = {i: f"dybk-h{i}-{tag}" for i in HOSTS}
        self.containers = {i: f"dybk-c{i}-{tag}" for i in HOSTS}
        self.made: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def sh(self, ns: str, *argv: str) -> None:
        run_cmd(["ip", "netns", "exec", ns, *argv], "kernel-only overlay")

    def add(self, name: str) -> None:
        add_netns(name)  # recorded in the ledger first
        self.made.append(name)

    def setup(self) -> None:
        self.add(self.switch)
        self.sh(self.switch, "ip", "link", "add", "sw0", "type", "bridge")
        self.sh(self.switch, "ip", "link", "set", "sw0", "up")
        for i, addr in HOSTS.items():
            host, box = self.hosts[i], self.containers[i]
            self.add(host)
            self.add(box)
            self.sh(host, "ip", "link", "set", "lo", "up")
            self.sh(box, "ip", "link", "set", "lo", "up")
            # The underlay, as the etcd lab makes it.
            self.sh(
                host, "ip", "link", "add", "und0", "type", "veth",
                "peer", "name", f"p{i}", "netns", self.switch,
            )  # fmt: skip
            self.sh(self.switch, "ip", "link", "set", f"p{i}", "master", "sw0", "up")
            self.sh(host, "ip", "addr", "add", f"{addr}/24", "dev", "und0")
            self.sh(host, "ip", "link", "set", "und0", "up")
            # The overlay driver's bridge, VXLAN device and veth, by hand.
            self.sh(host, "ip", "link", "add", "br0", "mtu", str(OVERLAY_MTU), "type", "bridge")
            self.sh(host, "ip", "link", "set", "br0", "up")
            self.sh(
                host, "ip", "link", "add", "vx0", "mtu", str(OVERLAY_MTU), "type", "vxlan",
                "id", str(VNI), "local", addr, "dstport", str(PORT), "nolearning", "proxy",
            )  # fmt: skip
            self.sh(host, "ip", "link", "set", "vx0", "master", "br0", "up")
            self.sh(
                host, "ip", "link", "add", "veth0", "mtu", str(OVERLAY_MTU), "type", "veth",
                "peer", "name", "eth0", "netns", box, "mtu", str(OVERLAY_MTU),
                "address", CONTAINER_MACS[i],
            )  # fmt: skip
            self.sh(host, "ip", "link", "set", "veth0", "master", "br0", "up")
            self.sh(box, "ip", "addr", "add", f"{CONTAINERS[i]}/24", "dev", "eth0")
            self.sh(box, "ip", "link", "set", "eth0", "up")
            # The by-hand figure's path: a VXLAN device of its own, addressed, no bridge.
            (other,) = (a for j, a in HOSTS.items() if j != i)
            self.sh(
                host, "ip", "link", "add", "vxb0", "mtu", str(OVERLAY_MTU), "type", "vxlan",
                "id", str(BARE_VNI), "local", addr, "remote", other, "dstport", str(PORT),
            )  # fmt: skip
            self.sh(host, "ip", "addr", "add", f"{BARE[i]}/24", "dev", "vxb0")
            self.sh(host, "ip", "link", "set", "vxb0", "up")
        # What the cluster's watch programs: the other container's MAC -> its VTEP, its address ->
        # its MAC (answered by the device's proxy ARP).
        for i, j in ((1, 3), (3, 1)):
            host = self.hosts[i]
            self.sh(
                host, "bridge", "fdb", "replace", CONTAINER_MACS[j], "dev", "vx0",
                "dst", HOSTS[j], "self", "permanent",
            )  # fmt: skip
            self.sh(
                host, "ip", "neigh", "replace", CONTAINERS[j], "lladdr", CONTAINER_MACS[j],
                "dev", "vx0", "nud", "permanent",
            )  # fmt: skip
        # One server on host 3 (the underlay and the bare VXLAN), one in container 3.
        for ns in (self.hosts[3], self.containers[3]):
            self.serve(ns)

    def serve(self, ns: str) -> None:
        proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR / ns}", "iperf3", "-s"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)  # stopped by `stop`, by this PID
        started = start_time(proc.pid)
        if started is not None:
            record("process", f"{proc.pid} {started}")

    @property
    def flows(self) -> dict[str, list[str]]:
        """name -> the iperf3 client up to its target (-t and -J are the caller's)."""

        def at(ns: str) -> list[str]:
            return ["nsenter", f"--net={NETNS_DIR / ns}", "iperf3", "-c"]

        return {
            "kernel underlay": [*at(self.hosts[1]), HOSTS[3]],
            "kernel VXLAN": [*at(self.hosts[1]), BARE[3]],
            "kernel overlay": [*at(self.containers[1]), CONTAINERS[3]],
        }

    def stop(self) -> list[str]:
        """Servers stopped by PID, namespaces deleted; what was left."""
        problems: list[str] = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append(f"kernel-only overlay: iperf3 server {proc.pid} needed SIGKILL")
        for ns in reversed(self.made):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            if Path(NETNS_DIR / ns).exists():
                problems.append(f"left behind: namespace {ns}")
        self.made.clear()
        return problems
