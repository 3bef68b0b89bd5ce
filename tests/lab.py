"""A throwaway lab for integration tests, in the spirit of pyroute2's nsname
fixture and CNI's NewNS: a fresh "host" network namespace where dockyard
runs (--host-netns), an "upstream" namespace that plays the outside world
on TEST-NET addresses, a fresh $ROOT, and a check at the end that nothing
was left behind.

    upstream (dyt-u-XXXX)                  host (dyt-h-XXXX)
      eth0 198.51.100.2/24  <-- veth -->     up0 198.51.100.1/24, default via .2
           2001:db8::2/64                        2001:db8::1/64, default via 2001:db8::2
      lo 203.0.113.1/24 (the world)          dockyard0 ... containers
         2001:db8:ffff::1/64

Nothing here touches the root namespace, and traffic only flows between
addresses of these namespaces. The tour (demo/) and the benchmark (bench/)
use this same lab, through demo/netlab.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.kernel.cgroups import Cgroups

REPO = Path(__file__).resolve().parent.parent
DOCKYARD = [sys.executable, "-m", "dockyard"]
PROBE = str(REPO / "tests" / "tools" / "probe.py")
# One DNS query, printed as "rcode:record,record": from a container (over IPv4 or IPv6) or the host.
DIG = (
    "import socket, sys\n"
    "from dnslib import DNSRecord\n"
    "server, name, qtype = sys.argv[1:4]\n"
    "s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(3)\n"
    "s.sendto(DNSRecord.question(name, qtype).pack(), (server, 53))\n"
    "reply = DNSRecord.parse(s.recv(4096))\n"
    "print(str(reply.header.rcode) + ':' + ','.join(str(rr.rdata) for rr in reply.rr))\n"
)
HOST_ADDR = "198.51.100.1"
UP_ADDR = "198.51.100.2"
WORLD_ADDR = "203.0.113.1"
# IPv6 (documentation addresses, 2001:db8::/32): the same roles.
HOST_ADDR6 = "2001:db8::1"
UP_ADDR6 = "2001:db8::2"
WORLD_ADDR6 = "2001:db8:ffff::1"
PREFIX = "dyt-"


# A dual-stack user network the IPv6 twins of the tests run on (made by Lab.family).
NET6 = "2001:db8:1::/64"
NET6_V4 = "10.1.0.0/24"


@dataclass(frozen=True)
class Family:
    """One address family as a test sees it: where the host and the upstream are,
    the host's loopback, and the `run` arguments that put a container on a network
    of that family (the default bridge for IPv4, a dual-stack network for IPv6)."""

    name: str
    host: str
    up: str
    loopback: str
    run_args: tuple[str, ...]
    network: str
    subnet: str
    gateway: str

    def addr(self, info: dict) -> str:
        """A container's address of this family, from its inspect."""
        net = info["NetworkSettings"]["Networks"][self.network]
        return net["IPAddress"] if self.name == "ipv4" else net["GlobalIPv6Address"]

    def hostport(self, host: str, port: int | str) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def sh(
    *cmd: str, check: bool = True, timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), check=check, capture_output=True, text=True, timeout=timeout, input=input
    )


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class SeenProcesses:
    """PIDs a test saw, each with its start time then. pid_max is 32,768 on these machines and
    a suite wraps it: a number seen early may be another test's process by teardown, and that
    one is never waited for nor killed."""

    def __init__(self) -> None:
        self._started: dict[int, int] = {}

    def add(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None:
            self._started.setdefault(pid, started)

    def __ior__(self, pids: set[int]) -> SeenProcesses:
        for pid in pids:
            self.add(pid)
        return self

    def alive(self) -> list[int]:
        return [pid for pid, started in self._started.items() if start_time(pid) == started]


def _unwrap(item: object) -> object:
    """An nft element without its comment wrapper ({"elem": {"val": ..., "comment": ...}})."""
    if isinstance(item, list):
        return [_unwrap(item[0]), item[1]]
    if isinstance(item, dict) and "elem" in item:
        return item["elem"]["val"]
    return item


class Lab:
    # Every namespace a lab of this test session made, for the session's final check.
    made: set[str] = set()

    def __init__(self, tmp: Path, prefix: str = PREFIX) -> None:
        tag = secrets.token_hex(3)
        self.host = f"{prefix}h-{tag}"
        self.up = f"{prefix}u-{tag}"
        self.dockyard = DOCKYARD  # the command; demo/netlab.py's labs run the venv's console script
        self.tmp = tmp
        self.root = tmp / "root"
        self.procs: list[subprocess.Popen[str]] = []
        self.pids_seen = SeenProcesses()
        # Removed at teardown: a lab on a host namespace another fixture made leaves it be.
        self.own_namespaces: tuple[str, ...] = (self.host, self.up)

    # -- set-up and teardown ----------------------------------------------------

    def setup(self) -> None:
        Lab.made |= {self.host, self.up}
        sh("ip", "netns", "add", self.host)
        sh("ip", "netns", "add", self.up)
        sh(
            "ip",
            "link",
            "add",
            "up0",
            "netns",
            self.host,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.up,
        )
        for ns in (self.host, self.up):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.host, "addr", "add", f"{HOST_ADDR}/24", "dev", "up0")
        sh("ip", "-n", self.host, "link", "set", "up0", "up")
        sh("ip", "-n", self.host, "route", "add", "default", "via", UP_ADDR)
        sh("ip", "-n", self.up, "addr", "add", f"{UP_ADDR}/24", "dev", "eth0")
        sh("ip", "-n", self.up, "link", "set", "eth0", "up")
        # The world beyond the upstream (this kernel has no dummy links).
        sh("ip", "-n", self.up, "addr", "add", f"{WORLD_ADDR}/24", "dev", "lo")
        # IPv6 beside it, without duplicate address detection (usable at once).
        sh("ip", "-n", self.host, "addr", "add", f"{HOST_ADDR6}/64", "dev", "up0", "nodad")
        sh("ip", "-n", self.host, "-6", "route", "add", "default", "via", UP_ADDR6)
        sh("ip", "-n", self.up, "addr", "add", f"{UP_ADDR6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", self.up, "addr", "add", f"{WORLD_ADDR6}/64", "dev", "lo")

    def teardown(self) -> list[str]:
        """Remove everything; return what was left behind (leaks)."""
        leaks: list[str] = []
        daemon_pid = self._remember_own()
        if daemon_pid or (self.root / "dockyard.db").exists():
            ids = self.dy("ps", "-aq", "--no-trunc").stdout.split()
            for cid in ids:
                with contextlib.suppress(Exception):
                    info = json.loads(self.dy("inspect", cid).stdout)[0]
                    if info["State"]["Pid"]:
                        self.pids_seen.add(info["State"]["Pid"])
            if ids:
                self.dy("rm", "-f", *ids)
            self._remember_own()  # what the ps above (or its auto-started daemon) made
            self.dy("daemon", "stop")
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.pids_seen.alive():
            time.sleep(0.02)
        for pid in self.pids_seen.alive():
            leaks.append(f"process {pid} still running")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mountpoint = line.split()[4]
            # Under the test's whole directory: a second root of the test's counts too.
            if mountpoint.startswith(str(self.tmp) + "/"):
                leaks.append(f"mount {mountpoint}")
                with contextlib.suppress(Exception):
                    sh("umount", "-l", mountpoint)
        links = self.links()
        leaks += [f"link {name} in host namespace" for name in links if name.startswith("veth")]
        leaks += self._cgroup_leaks()
        for ns in self.own_namespaces:
            sh("ip", "netns", "del", ns, check=False)
        return leaks

    def _cgroup_leaks(self) -> list[str]:
        """The cgroups this lab's root made (its parent, by the root's path), not by a prefix."""
        parent = Cgroups(self.root).parent
        if parent is None or not parent.exists():
            return []
        leaks = [f"cgroup {child}" for child in sorted(parent.iterdir()) if child.is_dir()]
        leaks.append(f"cgroup {parent}")
        for child in sorted(parent.iterdir()):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()
        return leaks

    def _remember_own(self) -> int | None:
        """The daemon, shim and resolver of this root's pid files, remembered as seen where the
        process is this root's (its command line names the root: a pid file outlives its
        process, and the number may be another's by now); the daemon's PID, if it is."""
        own = {}
        for name in ("dockyardd.pid", "shim.pid", "dns.pid"):
            pid = self._read_pid(name)
            if pid is None:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if os.fsencode(str(self.root)) in args:
                self.pids_seen.add(pid)
                own[name] = pid
        return own.get("dockyardd.pid")

    def _read_pid(self, name: str) -> int | None:
        try:
            text = (self.root / name).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    # -- running things -----------------------------------------------------------

    def dy_cmd(self, *args: str) -> list[str]:
        """The dockyard command line against this lab's root and host namespace."""
        return [*self.dockyard, "--root", str(self.root), "--host-netns", self.host, *args]

    def dy(
        self, *args: str, timeout: float = 60, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The dockyard CLI against this lab's root and host namespace."""
        return subprocess.run(
            self.dy_cmd(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, **(env or {})},
        )

    def dy_ok(self, *args: str, timeout: float = 60) -> str:
        r = self.dy(*args, timeout=timeout)
        assert r.returncode == 0, f"dockyard {' '.join(args)} failed ({r.returncode}): {r.stderr}"
        return r.stdout

    def run_d(self, *args: str) -> str:
        """dockyard run -d ...; returns the container id."""
        out = self.dy_ok("run", "-d", *args)
        return out.strip().splitlines()[-1]

    def inspect(self, ref: str) -> dict:
        return json.loads(self.dy_ok("inspect", ref))[0]

    def ip_of(self, ref: str) -> str:
        return self.inspect(ref)["NetworkSettings"]["IPAddress"]

    def family(self, name: str) -> Family:
        """The family a parametrized test runs on; for IPv6 its dual-stack network is made, for
        ipv6only an IPv6-only one (--ipv4=false)."""
        if name == "ipv4":
            return Family(
                "ipv4", HOST_ADDR, UP_ADDR, "127.0.0.1", (), "bridge", "172.17.0.0/16", "172.17.0.1"
            )
        if name == "ipv6only":
            self.dy_ok("network", "create", "--ipv4=false", "--ipv6", "--subnet", NET6, "d6only")
            return Family(
                "ipv6only", HOST_ADDR6, UP_ADDR6, "::1", ("--net", "d6only"), "d6only", NET6,
                NET6.replace("::/64", "::1"),
            )  # fmt: skip
        self.dy_ok("network", "create", "--ipv6", "--subnet", NET6, "--subnet", NET6_V4, "d6")
        return Family(
            "ipv6", HOST_ADDR6, UP_ADDR6, "::1", ("--net", "d6"), "d6", NET6, NET6.replace("::/64", "::1")
        )

    def in_ns(self, ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", *cmd], capture_output=True, text=True, timeout=timeout
        )

    def in_host(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.in_ns(self.host, *cmd, timeout=timeout)

    def in_up(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.in_ns(self.up, *cmd, timeout=timeout)

    def spawn_in(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns}", *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(p)
        return p

    def hold_port(self, port: int) -> subprocess.Popen[str]:
        """A host process in the lab's host namespace listening on 0.0.0.0:port (TCP), once it
        has bound it; it goes with the lab's other processes."""
        holder = self.spawn_in(
            self.host,
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
            "print('ok', flush=True); time.sleep(60)",
            str(port),
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        return holder

    def ask(self, ns: str, proto: str, host: str, port: int, timeout: float = 2.0) -> str | None:
        """Ask a probe server; the reply line, or None when unreachable."""
        r = self.in_ns(
            ns,
            sys.executable,
            PROBE,
            "ask",
            proto,
            host,
            str(port),
            "--timeout",
            str(timeout),
            timeout=timeout + 10,
        )
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_answer(self, ns: str, proto: str, host: str, port: int, deadline: float = 10.0) -> str:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            answer = self.ask(ns, proto, host, port, timeout=0.5)
            if answer:
                return answer
            time.sleep(0.05)
        raise AssertionError(f"nothing answered {proto} {host}:{port} from {ns} within {deadline} s")

    def serve(self, *run_args: str, proto: str = "tcp", port: int = 80) -> str:
        """A detached container running a probe server; returns its id once it answers."""
        cid = self.run_d(*run_args, sys.executable, PROBE, "serve", proto, str(port))
        info = self.inspect(cid)
        self.pids_seen.add(info["State"]["Pid"])
        # The default bridge's address, or on a network with IPv6 its IPv6 one.
        nets = info["NetworkSettings"]["Networks"]
        addr = info["NetworkSettings"]["IPAddress"] or next(
            (n["GlobalIPv6Address"] for n in nets.values() if n.get("GlobalIPv6Address")), ""
        )
        if addr:
            self.wait_answer(self.host, proto, addr, port)
        return cid

    def links(self, ns: str | None = None) -> list[str]:
        r = sh("ip", "-n", ns or self.host, "-j", "link", "show", check=False)
        if r.returncode != 0:
            return []
        return [link["ifname"] for link in json.loads(r.stdout or "[]")]

    def nft_table(self, family: str = "inet") -> dict | None:
        r = self.in_host("nft", "-j", "list", "table", family, "dockyard")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def map_elements(self, name: str, family: str = "inet") -> list:
        """The elements of one set or map of `inet dockyard` (or `bridge dockyard`).

        A missing table or set fails: read as "no elements", it would let a
        test of cleanup pass where nothing was ever made.
        """
        table = self.nft_table(family)
        assert table is not None, f"table {family} dockyard does not exist in the host namespace"
        for obj in table["nftables"]:
            body = obj.get("map") or obj.get("set")
            if body and body.get("name") == name:
                return [_unwrap(item) for item in body.get("elem", [])]
        raise AssertionError(f"table {family} dockyard has no set or map {name!r}")

    def releasing(self) -> int:
        """Endpoints the daemon still has to finish releasing (the reaper's work), from its store."""
        db = sqlite3.connect(self.root / "dockyard.db")
        try:
            return db.execute("SELECT COUNT(*) FROM endpoints WHERE state='releasing'").fetchone()[0]
        finally:
            db.close()

    def init_ready(self, ref: str) -> None:
        """Wait until a --init container's tini has started its child: before that,
        tini has not yet blocked the signals it forwards, and PID 1 ignores SIGTERM."""
        pid = self.inspect(ref)["State"]["Pid"]
        children = Path(f"/proc/{pid}/task/{pid}/children")
        self.eventually(lambda: children.read_text().split(), timeout=10, what=f"tini of {ref} started")

    def eventually(self, predicate, timeout: float = 5.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"{what} not reached within {timeout} s")
