"""An etcd lab for tests of what several hosts share: three host namespaces on
one underlay, and a three-member etcd cluster with one member per host.

    switch (dyt-s-XXXX): bridge sw0, one port per host
      |            |            |
    und0         und0         und0
    192.0.2.11   192.0.2.12   192.0.2.13      (TEST-NET-1)
    host 1       host 2       host 3          (dyt-e1-XXXX, ...)
    etcd m1      etcd m2      etcd m3         client :2379, peer :2380

The underlay is a bridge in a namespace of its own rather than veths in a
triangle: every host has one interface and one address on one /24, as on
a real LAN, so VXLAN (the overlay driver's tests) needs no per-peer routes,
and a host is cut off by setting its switch port down, one command.

Each member is started with `nsenter --net=` (the mount namespace stays
the test's, unlike `ip netns exec`), its data directory on a tmpfs the lab
mounts under the test's directory (etcd preallocates 128 MB of WAL per
member: on disk that is slow and worn for nothing). Every process is
stopped by its PID; `teardown` returns what it had to clean up itself.

`OverlayHost` is a dockyard root on one of these hosts (its daemon.json
names the cluster store and the VTEP) and `overlay_hosts` makes one per
host: the overlay tests, the overlay benchmark (bench/overlay.py) and the
tour's multi-host part (demo/) stand on these same hosts, the scripts
through demo/netlab.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.kernel import netns
from lab import PREFIX, Lab, SeenProcesses, sh

UNDERLAY = "192.0.2.0/24"
CLIENT_PORT = 2379
PEER_PORT = 2380
ETCD = "/usr/bin/etcd"


@dataclass
class Member:
    name: str
    ns: str
    addr: str
    data: Path
    log: Path
    port: int = CLIENT_PORT
    peer_port: int = PEER_PORT
    scheme: str = "http"
    # Further etcd flags (a standalone member's TLS files, ...).
    args: tuple[str, ...] = ()
    # The member's cluster: None for the lab's three, else this member alone.
    alone: bool = False
    proc: subprocess.Popen[bytes] | None = None
    # Every process this member ever was (PID and start time), for the leak check.
    pids: SeenProcesses = field(default_factory=SeenProcesses)

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.addr}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.addr}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.addr}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdLab:
    """Three hosts, a switch, a three-member etcd cluster. `setup`, then `teardown`."""

    def __init__(self, tmp: Path, hosts: int = 3, prefix: str = PREFIX) -> None:
        tag = secrets.token_hex(3)
        self.tag = tag
        self.tmp = tmp
        self.switch = f"{prefix}s-{tag}"
        self.data_root = tmp / "etcd-data"
        self.members = [
            Member(
                name=f"m{i}",
                ns=f"{prefix}e{i}-{tag}",
                addr=f"192.0.2.{10 + i}",
                data=self.data_root / f"m{i}",
                log=tmp / f"etcd-m{i}.log",
            )
            for i in range(1, hosts + 1)
        ]
        # Standalone single-member clusters a test asked for (standalone()).
        self.extra: list[Member] = []
        self.mounted = False

    @property
    def namespaces(self) -> list[str]:
        return [self.switch, *(m.ns for m in self.members)]

    @property
    def endpoints(self) -> list[str]:
        """host:port of every member, the form `--cluster-store etcd://...` takes."""
        return [m.endpoint for m in self.members]

    # -- set-up and teardown ----------------------------------------------------

    def setup(self) -> None:
        Lab.made.update(self.namespaces)
        sh("ip", "netns", "add", self.switch)
        sh("ip", "-n", self.switch, "link", "add", "sw0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "sw0", "up")
        for i, m in enumerate(self.members, 1):
            sh("ip", "netns", "add", m.ns)
            sh("ip", "-n", m.ns, "link", "set", "lo", "up")
            port = f"p{i}"
            sh(
                "ip", "link", "add", "und0", "netns", m.ns, "type", "veth",
                "peer", "name", port, "netns", self.switch,
            )  # fmt: skip
            sh("ip", "-n", self.switch, "link", "set", port, "master", "sw0", "up")
            sh("ip", "-n", m.ns, "addr", "add", f"{m.addr}/24", "dev", "und0")
            sh("ip", "-n", m.ns, "link", "set", "und0", "up")
        self.data_root.mkdir()
        # 128 MB of preallocated WAL per member, and room to grow.
        sh(
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={256 * len(self.members)}m,mode=0700",
            "tmpfs",
            str(self.data_root),
        )
        self.mounted = True
        for m in self.members:
            self.start(m, initial=True)
        self.wait_healthy()

    def teardown(self) -> list[str]:
        """Stop every member by PID, unmount, remove the namespaces; return what was left."""
        leaks: list[str] = []
        # SIGKILL: the data goes with the tmpfs, and the last member left of a cluster takes
        # 7 s to end on SIGTERM (it waits for peers that are gone).
        everyone = self.members + self.extra
        for m in everyone:
            if m.running:
                assert m.proc is not None
                m.proc.kill()
        for m in everyone:
            if m.proc is not None:
                try:
                    m.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    leaks.append(f"etcd {m.name} (pid {m.proc.pid}) survived SIGKILL for 10 s")
        for m in everyone:
            for pid in m.pids.alive():
                leaks.append(f"process {pid} ({m.name}) still running")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.mounted:
            r = sh("umount", str(self.data_root), check=False)
            if r.returncode != 0:
                leaks.append(f"umount {self.data_root}: {r.stderr.strip()}")
                sh("umount", "-l", str(self.data_root), check=False)
            self.mounted = False
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mountpoint = line.split()[4]
            if mountpoint == str(self.data_root) or mountpoint.startswith(str(self.tmp) + "/"):
                leaks.append(f"mount {mountpoint}")
                sh("umount", "-l", mountpoint, check=False)
        for ns in self.namespaces:
            r = sh("ip", "netns", "del", ns, check=False)
            if r.returncode != 0 and Path("/run/netns", ns).exists():
                leaks.append(f"namespace {ns}: {r.stderr.strip()}")
        return leaks

    # -- members --------------------------------------------------------------------

    def start(self, m: Member, initial: bool = False) -> None:
        """Start (or restart, on its data directory) one member in its host's namespace."""
        assert not m.running, f"{m.name} is already running"
        peers = [m] if m.alone else self.members
        cluster = ",".join(f"{o.name}={o.peer_url}" for o in peers)
        m.data.mkdir(exist_ok=True)
        cmd = [
            "nsenter", f"--net=/run/netns/{m.ns}", ETCD,
            "--name", m.name,
            "--data-dir", str(m.data),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-token", f"dyt-{self.tag}-{m.name}" if m.alone else f"dyt-{self.tag}",
            "--initial-cluster-state", "new" if initial else "existing",
            "--logger", "zap", "--log-outputs", "stderr",
            # A member back from a partition does not force an election (etcd 3.5's default).
            "--pre-vote",
            *m.args,
        ]  # fmt: skip
        with open(m.log, "ab") as log:
            # nsenter execs etcd in place (no fork without --pid): the child's PID is etcd's.
            m.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        m.pids.add(m.proc.pid)

    def standalone(
        self, host: int, name: str, port: int, args: tuple[str, ...] = (), scheme: str = "http"
    ) -> Member:
        """A single-member cluster of its own on a host (its own ports), stopped at teardown."""
        base = self.members[host]
        m = Member(
            name=name,
            ns=base.ns,
            addr=base.addr,
            data=self.data_root / name,
            log=self.tmp / f"etcd-{name}.log",
            port=port,
            peer_port=port + 1,
            scheme=scheme,
            args=args,
            alone=True,
        )
        self.extra.append(m)
        self.start(m, initial=True)
        return m

    def kill(self, m: Member) -> None:
        """SIGKILL one member, as a crash would, and reap it."""
        assert m.proc is not None and m.running, f"{m.name} is not running"
        m.proc.kill()
        m.proc.wait(timeout=10)

    def restart(self, m: Member) -> None:
        self.start(m)
        self.wait_healthy([m])

    def ensure_all_running(self) -> None:
        """Bring back any member a test left down, and wait until the cluster is whole."""
        for m in self.members:
            if not m.running:
                self.start(m)
        self.wait_healthy()

    # -- asking the members ---------------------------------------------------------------

    def entered(self, m: Member) -> contextlib.AbstractContextManager[None]:
        """This thread in m's host namespace for the body (sockets made there stay there)."""
        return netns.entered(f"/run/netns/{m.ns}")

    def dialer(self, m: Member) -> Callable[[tuple[str, int], float | None], socket.socket]:
        """A connect function whose sockets live in m's host namespace: a client made with it
        talks as a process on that host would, from a test that itself stays in the root's."""

        def connect(address: tuple[str, int], timeout: float | None) -> socket.socket:
            with self.entered(m):
                return socket.create_connection(address, timeout=timeout)

        return connect

    def status(self, m: Member, timeout: float = 1.0) -> dict | None:
        """The member's /v3/maintenance/status answer, or None when it does not answer."""
        req = urllib.request.Request(
            f"{m.client_url}/v3/maintenance/status", data=b"{}", headers={"Content-Type": "application/json"}
        )
        try:
            with self.entered(m), urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def healthy(self, m: Member) -> bool:
        """The member answers and knows a leader."""
        try:
            with self.entered(m), urllib.request.urlopen(f"{m.client_url}/health", timeout=1.0) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, members: list[Member] | None = None, timeout: float = 20.0) -> None:
        members = members if members is not None else self.members
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(m.running and self.healthy(m) for m in members):
                return
            dead = [m.name for m in members if not m.running]
            if dead:
                tails = {m.name: m.log.read_text()[-2000:] for m in members if not m.running}
                raise AssertionError(f"etcd members exited: {dead}: {tails}")
            time.sleep(0.05)
        raise AssertionError(f"etcd members {[m.name for m in members]} not healthy within {timeout} s")

    def leader(self, timeout: float = 10.0) -> Member:
        """The member that is leader now, as the members themselves say."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ids: dict[str, Member] = {}
            leaders: set[str] = set()
            for m in self.members:
                if not m.running:
                    continue
                st = self.status(m)
                if st and st.get("leader") and st.get("header", {}).get("member_id"):
                    ids[st["header"]["member_id"]] = m
                    leaders.add(st["leader"])
            if len(leaders) == 1:
                (lead,) = leaders
                if lead in ids:
                    return ids[lead]
            time.sleep(0.05)
        raise AssertionError(f"no single leader within {timeout} s")

    def step_down(self, m: Member, timeout: float = 10.0) -> None:
        """Leave m a follower: a test that silences or cuts off one member means that member,
        not an election on top (which on a loaded machine can outlast a 2 s lease)."""
        end = time.monotonic() + timeout
        while self.leader(timeout) is m:
            if time.monotonic() > end:
                raise AssertionError(f"{m.name} still leads after {timeout} s")
            other = next(o for o in self.members if o is not m and o.running)
            target = (self.status(other) or {}).get("header", {}).get("member_id")
            if target:
                req = urllib.request.Request(
                    f"{m.client_url}/v3/maintenance/transfer-leadership",
                    data=json.dumps({"targetID": target}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with contextlib.suppress(OSError, ValueError), self.entered(m):
                    urllib.request.urlopen(req, timeout=timeout).close()
            time.sleep(0.05)

    def kill_leader(self) -> Member:
        m = self.leader()
        self.kill(m)
        return m

    @contextlib.contextmanager
    def underlay6(self) -> Iterator[list[str]]:
        """An IPv6 address (2001:db8:192::/64, documentation: `::11` for 192.0.2.11) on each
        host's underlay interface beside its IPv4 one, for traffic between the hosts over IPv6
        (the VXLAN underlay stays IPv4); removed on leaving. Yields them in the members' order."""
        addrs = [f"2001:db8:192::{m.addr.rsplit('.', 1)[1]}" for m in self.members]
        added: list[tuple[Member, str]] = []
        try:
            for m, addr in zip(self.members, addrs, strict=True):
                sh("ip", "-n", m.ns, "-6", "addr", "add", f"{addr}/64", "dev", "und0", "nodad")
                added.append((m, addr))
            yield addrs
        finally:
            for m, addr in added:
                sh("ip", "-n", m.ns, "-6", "addr", "del", f"{addr}/64", "dev", "und0", check=False)

    def set_link(self, m: Member, up: bool) -> None:
        """Cut a host off the underlay (its switch port down), or put it back."""
        port = f"p{self.members.index(m) + 1}"
        sh("ip", "-n", self.switch, "link", "set", port, "up" if up else "down")


# -- dockyard on the hosts ---------------------------------------------------------------


class OverlayHost(Lab):
    """A dockyard root on one of the etcd lab's hosts (the namespace is the etcd lab's: its
    teardown leaves the namespace be)."""

    def __init__(self, tmp: Path, ns: str, addr: str) -> None:
        super().__init__(tmp)
        self.host = ns
        self.addr = addr
        self.own_namespaces = ()
        self.prefix = ""

    def configure(self, store: str, advertise: str, prefix: str) -> None:
        self.prefix = prefix
        self.root.mkdir(parents=True, mode=0o700)
        (self.root / "daemon.json").write_text(
            json.dumps(
                {
                    "cluster-store": store,
                    "cluster-advertise": advertise,
                    "cluster-store-opts": {"kv.prefix": prefix},
                }
            )
        )

    def fdb(self, dev: str) -> dict[str, str]:
        """MAC -> VTEP of the device's own entries."""
        r = self.in_host("bridge", "-j", "fdb", "show", "dev", dev)
        if r.returncode != 0:
            return {}
        return {e["mac"]: e["dst"] for e in json.loads(r.stdout or "[]") if e.get("dst")}

    def neighbours(self, dev: str) -> dict[str, str]:
        r = sh("ip", "-n", self.host, "-j", "neigh", "show", "dev", dev, check=False)
        if r.returncode != 0:
            return {}
        return {e["dst"]: e.get("lladdr", "") for e in json.loads(r.stdout or "[]")}

    def address_on(self, ref: str, network: str) -> str:
        return self.inspect(ref)["NetworkSettings"]["Networks"][network]["IPAddress"]

    def mac_on(self, ref: str, network: str) -> str:
        return self.inspect(ref)["NetworkSettings"]["Networks"][network]["MacAddress"]

    def empty(self) -> list[str]:
        """Every container removed, the root reset, the daemon stopped; what was left behind in
        the host's namespace (dockyard's links and tables) and of the lab."""
        if (self.root / "dockyard.db").exists():
            ids = self.dy("ps", "-aq", "--no-trunc").stdout.split()
            if ids:
                self.dy("rm", "-f", *ids)
            self.dy("system", "reset", "-f")
        leaks = [f"{self.host}: {leak}" for leak in self.teardown()]
        leaks += [f"{self.host}: link {name}" for name in self.links() if name not in ("lo", "und0")]
        tables = sh("ip", "netns", "exec", self.host, "nft", "list", "tables").stdout.split("\n")
        leaks += [f"{self.host}: {t}" for t in tables if t.strip()]
        return leaks


def overlay_hosts(etcd: EtcdLab, tmp: Path, prefix: str | None = None) -> list[OverlayHost]:
    """A dockyard root per host of the lab, its daemon.json naming every member and a key
    prefix of its own (`prefix`, or a fresh one); the daemons start with their first command."""
    prefix = prefix or f"dyt-{secrets.token_hex(4)}"
    store = "etcd://" + ",".join(etcd.endpoints)
    made = []
    for i, m in enumerate(etcd.members):
        h = OverlayHost(tmp / f"host{i + 1}", m.ns, m.addr)
        # One host names its underlay interface, the others their address: both forms.
        h.configure(store, "und0" if i == 0 else m.addr, prefix)
        made.append(h)
    return made


def run_at_once(hosts: list[OverlayHost], network: str, per_host: int) -> dict[str, list[str]]:
    """`run -d` on a network from two threads per host at the same moment, per_host runs per
    thread; host -> the ids of its containers. Every run must succeed."""
    ids: dict[str, list[str]] = {h.host: [] for h in hosts}
    errors: list[str] = []

    def runs(h: OverlayHost) -> None:
        for _ in range(per_host):
            r = h.dy("run", "-d", "--net", network, "sleep", "300")
            if r.returncode != 0:
                errors.append(r.stderr)
            else:
                ids[h.host].append(r.stdout.strip().splitlines()[-1])

    threads = [threading.Thread(target=runs, args=(h,)) for h in hosts for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return ids
