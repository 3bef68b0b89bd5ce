"""Watching one flow: `nft monitor`, `conntrack -E`, a probe, and the hooks of chains.

The mechanism of `dockyard trace` (what to trace and what the lines mean
are policy/rules/trace.py's and policy/explain's):

- `Watch` runs `nft monitor` and, where the `conntrack` tool is installed,
  `conntrack -E` filtered to the flow's original tuple, as children of the
  daemon in the calling thread's namespace (the host's), and collects their
  lines on threads of their own. `ready()` waits until both have joined
  their netlink groups (read from /proc/thread-self/net/netlink by the
  inodes of their sockets), so no packet sent afterwards goes unseen.
  `close()` ends them by their handles.
- `chain_hooks()` lists every chain of the namespace with its type, hook and
  priority: the monitor names a table and a chain, a person wants the hook.
- `probe()` sends one packet of the flow from a namespace: a TCP connect, a
  UDP datagram or an SCTP connect, bound to the source address.

libnftables could run `monitor trace` in process, but its call blocks until
the process ends and cannot be interrupted from another thread; a child
process can be ended.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from dockyard.errors import KernelError
from dockyard.kernel import netns
from dockyard.model import Protocol

try:
    import nftables
except ImportError:  # pragma: no cover - reported when used
    nftables = None

READY_TIMEOUT = 5.0
_PROTO_NUMBERS = {Protocol.TCP: socket.IPPROTO_TCP, Protocol.UDP: socket.IPPROTO_UDP, Protocol.SCTP: 132}


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    out.add(int(target[8:-1]))
    return out


def _subscribed(pid: int) -> bool:
    """Whether a process has a netlink socket that joined a group (it receives events)."""
    inodes = _socket_inodes(pid)
    try:
        lines = Path("/proc/thread-self/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) >= 10 and int(fields[9]) in inodes and int(fields[3], 16) != 0:
            return True
    return False


class _Reader:
    """A child process whose output lines are collected on a thread of their own.

    It is started under `setpriv --pdeathsig KILL` (util-linux) where that is
    installed: should the daemon die mid-trace, the kernel ends its watchers
    too, rather than leaving an `nft monitor` running for ever (the next
    start's gc deletes the trace's tables)."""

    def __init__(self, argv: list[str]) -> None:
        self.name = os.path.basename(argv[0])
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig", "KILL", *argv]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except OSError as e:
            raise KernelError(f"cannot run {self.name}: {e.strerror}") from e
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name=f"trace-{self.name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def taken(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=2)
        self._thread.join(timeout=2)


class Watch:
    """`nft monitor` and `conntrack -E` for one flow, until closed."""

    def __init__(
        self,
        src: ipaddress.IPv4Address | ipaddress.IPv6Address,
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
        port: int,
        proto: Protocol,
    ) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise KernelError("cannot trace: the nft command is not installed (apt-get install nftables)")
        self.monitor = _Reader([nft, "monitor"])
        self.conntrack: _Reader | None = None
        tool = shutil.which("conntrack")
        if tool is not None:
            try:
                self.conntrack = _Reader(
                    [
                        tool,
                        "-E",
                        "-f",
                        "ipv6" if dst.version == 6 else "ipv4",
                        "-p",
                        str(proto),
                        "--orig-src",
                        str(src),
                        "--orig-dst",
                        str(dst),
                        "--orig-port-dst",
                        str(port),
                    ]
                )
            except KernelError:
                self.monitor.close()
                raise

    @property
    def has_conntrack(self) -> bool:
        return self.conntrack is not None

    def ready(self) -> None:
        """Wait until both listen; KernelError when one ended or does not in time."""
        deadline = time.monotonic() + READY_TIMEOUT
        readers = [r for r in (self.monitor, self.conntrack) if r is not None]
        while True:
            waiting = []
            for r in readers:
                if r.proc.poll() is not None:
                    said = " ".join(r.taken())[:200]
                    raise KernelError(f"{r.name} ended at once: {said or 'it said nothing'}")
                if not _subscribed(r.proc.pid):
                    waiting.append(r)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise KernelError(f"{waiting[0].name} did not start listening within {READY_TIMEOUT} s")
            time.sleep(0.01)

    def monitor_lines(self) -> list[str]:
        return self.monitor.taken()

    def conntrack_lines(self) -> list[str]:
        return self.conntrack.taken() if self.conntrack else []

    def close(self) -> None:
        self.monitor.close()
        if self.conntrack is not None:
            self.conntrack.close()


def chain_hooks() -> dict[tuple[str, str, str], tuple[str, str, int]]:
    """Every base chain of the namespace: (family, table, chain) -> (type, hook, priority)."""
    if nftables is None:
        raise KernelError("libnftables is not available: install the nftables package")
    ctx = nftables.Nftables()
    ctx.set_json_output(True)
    rc, out, err = ctx.cmd("list chains")
    if rc != 0:
        raise KernelError(f"cannot list nftables chains: {err.strip() or 'unknown error'}")
    found: dict[tuple[str, str, str], tuple[str, str, int]] = {}
    for obj in json.loads(out or '{"nftables": []}')["nftables"]:
        chain = obj.get("chain")
        if chain and "hook" in chain:
            key = (chain["family"], chain["table"], chain["name"])
            found[key] = (str(chain.get("type", "")), str(chain["hook"]), int(chain.get("prio", 0)))
    return found


def list_tables() -> list[tuple[str, str]]:
    """Every (family, name) table of the namespace."""
    if nftables is None:
        raise KernelError("libnftables is not available: install the nftables package")
    ctx = nftables.Nftables()
    ctx.set_json_output(True)
    rc, out, err = ctx.cmd("list tables")
    if rc != 0:
        raise KernelError(f"cannot list nftables tables: {err.strip() or 'unknown error'}")
    data = json.loads(out or '{"nftables": []}')
    return [(o["table"]["family"], o["table"]["name"]) for o in data["nftables"] if "table" in o]


def probe(
    where: Path | None,
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    proto: Protocol,
    timeout: float = 2.0,
) -> str:
    """Send one packet of the flow from the namespace at `where` (None: this thread's);
    what came back, in a few words."""
    kind = socket.SOCK_DGRAM if proto is Protocol.UDP else socket.SOCK_STREAM
    ctx = netns.entered(where) if where is not None else contextlib.nullcontext()
    with ctx:
        try:
            family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
            sock = socket.socket(family, kind, _PROTO_NUMBERS[proto])
        except OSError as e:
            raise KernelError(f"cannot make a {proto} probe: {e.strerror}") from e
    with sock:
        try:
            sock.bind((str(src), 0))
        except OSError as e:
            raise KernelError(f"cannot send a probe from {src}: {e.strerror}") from e
        sock.setblocking(False)
        if proto is Protocol.UDP:
            try:
                sock.connect((str(dst), port))
                sock.send(b"dockyard trace probe\n")
            except OSError as e:
                return f"not sent: {e.strerror}"
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                return "sent; no answer"
            try:
                sock.recv(2048)
            except OSError as e:
                return f"sent; {e.strerror.lower() if e.strerror else e}"
            return "sent; answered"
        err = sock.connect_ex((str(dst), port))
        if err not in (0, errno.EINPROGRESS):
            return f"not sent: {os.strerror(err)}"
        _, ready, _ = select.select([], [sock], [], timeout)
        if not ready:
            return f"no answer within {timeout:g} s"
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return "connected" if err == 0 else os.strerror(err).lower()
