"""The tour's multi-host part: one overlay network across three hosts, its state in etcd.

It builds the overlay tests' lab (tests/etcd_lab.py, through
demo/netlab.py's ClusterLab): three host namespaces on one underlay
(192.0.2.11-13 through a bridge in a switch namespace), a three-member etcd
cluster with one member per host, and a dockyardd per host whose daemon.json
names every member as its --cluster-store. Then an overlay network made on
host 1 is seen on every host, a container on host 1 and one on host 2 ping
each other by name, and host 2's kernel is shown holding host 1's container
at host 1's VTEP. Each claim is checked, as in the first part.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from narrate import StepFailed, echo_output, heading, note, section, shown
from netlab import ClusterLab, LabError, OverlayHost

NETWORK = "tour-ov"
SUBNET = "10.70.0.0/24"
UNDERLAY = "192.0.2.0/24"


class MultiHostTour:
    def __init__(self, pictures: Path | None = None) -> None:
        self.cluster = ClusterLab("dytour")
        self.pictures = pictures
        self.failures: list[str] = []
        self.began = False  # its namespaces may exist

    @property
    def hosts(self) -> list[OverlayHost]:
        return self.cluster.hosts

    # Commands, printed as they run, with their output.

    def dy(self, n: int, *args: str) -> str:
        """`dockyard ARGS` on host n (1-based), shown; a non-zero exit is a failed step."""
        print(f"(host {n}) $ dockyard {shown(list(args))}")
        r = self.hosts[n - 1].dy(*args)
        echo_output(r.stdout + r.stderr)
        if r.returncode != 0:
            raise StepFailed(f"`dockyard {shown(list(args))}` on host {n} exited {r.returncode}")
        return r.stdout

    def on_host(self, n: int, *cmd: str) -> str:
        print(f"(host {n}) $ {shown(list(cmd))}")
        r = self.hosts[n - 1].in_host(*cmd)
        echo_output(r.stdout + r.stderr)
        if r.returncode != 0:
            raise StepFailed(f"`{shown(list(cmd))}` on host {n} exited {r.returncode}")
        return r.stdout

    def check(self, ok: bool, claim: str) -> None:
        if not ok:
            raise StepFailed(claim)

    def eventually(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            self.hosts[0].eventually(predicate, timeout, what)
        except AssertionError as e:
            raise StepFailed(str(e)) from e

    def start(self, n: int, name: str) -> None:
        self.dy(n, "run", "-d", "--name", name, "--net", NETWORK, "sleep", "infinity")
        self.cluster.remember_container(self.hosts[n - 1], name)

    def picture(self, n: int, name: str) -> None:
        if self.pictures is None:
            return
        path = self.pictures / f"{name}.svg"
        self.dy(n, "graph", "-o", str(path))
        self.check(path.read_bytes().lstrip().startswith(b"<?xml"), f"{path} should be an SVG picture")
        note(f"host {n}'s topology, drawn by Graphviz, the other hosts as remote VTEPs: {path}")

    # The part.

    def tour(self) -> None:
        heading("dockyard tour, part 2: one network across three hosts")
        cluster = self.cluster
        etcd = cluster.etcd
        print(f"A second throwaway lab (state in {cluster.tmp}):")
        print(
            f"  switch namespace   {etcd.switch}: the bridge sw0, the underlay {UNDERLAY}, one port per host"
        )
        for i, m in enumerate(etcd.members, 1):
            print(f"  host {i} namespace   {m.ns}: und0 {m.addr}/24, etcd member {m.name}, a dockyardd")
        print("Each dockyardd's daemon.json names every etcd member as its cluster store:")
        print(f'  {{"cluster-store": "etcd://{",".join(etcd.endpoints)}", "cluster-advertise": "und0"}}')
        print("(host 1 names its underlay interface as its VTEP; hosts 2 and 3 name their address)")
        print()
        print("$ etcd --name m1 ... & etcd --name m2 ... & etcd --name m3 ... &     # one per host, on tmpfs")
        self.began = True
        try:
            cluster.setup()
            print("(host 1, 2, 3) $ dockyard daemon start")
            cluster.start_daemons()
        except AssertionError as e:  # the etcd lab's checks
            raise StepFailed(f"the three hosts did not come up: {e}") from e
        self.run_section(
            "5. An overlay network across hosts",
            "a network made once on host 1 is every host's (SCOPE global), and containers on two hosts "
            "reach each other over VXLAN, by name, with no gossip: each daemon watches etcd.",
            self.overlay,
        )

    def run_section(self, title: str, shows: str, body: Callable[[], None]) -> None:
        section(title, shows)
        try:
            body()
        except (StepFailed, LabError) as e:
            print(f"  !! FAILED: {e}")
            self.failures.append(f"{title}: {e}")

    def overlay(self) -> None:
        net_id = self.dy(1, "network", "create", "-d", "overlay", "--subnet", SUBNET, NETWORK).strip()
        for n in (2, 3):
            self.eventually(
                lambda n=n: NETWORK in self.hosts[n - 1].dy("network", "ls").stdout,
                10,
                f"{NETWORK} on host {n}",
            )
        listed = self.dy(3, "network", "ls")
        row = next((line.split() for line in listed.splitlines() if NETWORK in line.split()), [])
        self.check(
            row[-2:] == ["overlay", "global"], f"host 3 should list {NETWORK} as overlay, global: {row}"
        )
        note(f"made on host 1, listed on host 3 with the same id {net_id[:12]}, driver overlay, SCOPE global")

        self.start(1, "tour-a")
        self.start(2, "tour-b")
        a, b = self.hosts[0], self.hosts[1]
        a_ip, a_mac = a.address_on("tour-a", NETWORK), a.mac_on("tour-a", NETWORK)
        b_ip = b.address_on("tour-b", NETWORK)
        self.check(a_ip != b_ip, "two hosts must never give out the same address")
        note(
            f"tour-a on host 1 has {a_ip}, tour-b on host 2 has {b_ip}: each claimed in etcd by a transaction"
        )

        out = self.dy(2, "exec", "tour-b", "ping", "-c", "1", "-W", "2", "tour-a")
        self.check(
            f"({a_ip})" in out or f"from {a_ip}" in out, f"tour-b's ping should reach tour-a at {a_ip}"
        )
        note(
            f"host 2's resolver answered tour-a with {a_ip} from its copy of the watch; "
            "the ping went over VXLAN"
        )
        out = self.dy(1, "exec", "tour-a", "ping", "-c", "1", "-W", "2", "tour-b")
        self.check(
            f"({b_ip})" in out or f"from {b_ip}" in out, f"tour-a's ping should reach tour-b at {b_ip}"
        )
        note("and back, from host 1")

        vx = f"vx-{net_id[:12]}"
        shown_fdb = self.on_host(2, "bridge", "fdb", "show", "dev", vx)
        self.check(
            b.fdb(vx).get(a_mac) == a.addr and f"{a_mac} dst {a.addr}" in shown_fdb,
            f"host 2's {vx} should hold tour-a's MAC {a_mac} at {a.addr}",
        )
        note(
            f"host 2's VXLAN device sends tour-a's MAC {a_mac} to host 1's VTEP {a.addr}: "
            "a static entry, no flooding"
        )
        self.picture(2, "5-overlay")

        self.dy(1, "rm", "-f", "tour-a")
        self.dy(2, "rm", "-f", "tour-b")
        self.eventually(lambda: a_mac not in b.fdb(vx), 5, "tour-a's entry gone from host 2")
        note("tour-a removed on host 1: its entry left host 2's kernel with it")
        self.dy(3, "network", "rm", NETWORK)
        for n in (1, 2):
            self.eventually(
                lambda n=n: NETWORK not in self.hosts[n - 1].dy("network", "ls").stdout, 10, f"{NETWORK} gone"
            )
        note("removed from host 3, gone from every host")

    def teardown(self) -> list[str]:
        if not self.began:
            return self.cluster.teardown()  # its directory only
        print("$ dockyard rm -f <every container>;  dockyard daemon stop     # on each host")
        print(f"$ kill <etcd m1, m2, m3>;  umount {self.cluster.etcd.data_root}")
        names = ";  ".join(f"ip netns del {ns}" for ns in self.cluster.etcd.namespaces)
        print(f"$ {names};  rm -r {self.cluster.tmp}")
        return self.cluster.teardown()
