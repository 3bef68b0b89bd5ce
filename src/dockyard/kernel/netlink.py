"""Typed verbs over netlink (pyroute2): bridges, veth pairs, addresses, routes.

pyroute2's verb strings and keyword arguments stay in this file. Callers
pass ipaddress values and names; failures come back as KernelError naming
the object. Work inside a sandbox goes through a netlink socket opened in
that namespace (`netns.entered`), never by moving the whole process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import socket
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard import digests
from dockyard.errors import Conflict, KernelError
from dockyard.kernel import netns, rtnl, sysctl

RT_TABLE_MAIN = 254
AF_INET6 = 10
# An IPv6 address given by the engine is its alone (the lease says so): no duplicate
# address detection, which would keep it "tentative", unusable, for a second or more.
IFA_F_NODAD = 0x02
# pyroute2 dumps can be interrupted by concurrent changes; retry a few times.
_DUMP_RETRIES = 5


def _fail(e: NetlinkError | OSError, what: str) -> KernelError:
    return KernelError(f"cannot {what}: {e.args[1] if len(e.args) > 1 else e}")


def mac_for(address: ipaddress.IPv4Address) -> str:
    """Docker's MAC scheme: 02:42 followed by the IPv4 address."""
    raw = address.packed
    return "02:42:" + ":".join(f"{b:02x}" for b in raw)


def random_mac(seed_hex: str) -> str:
    """A locally administered unicast MAC from 40 random bits (hex), for an endpoint without IPv4."""
    return "02:" + ":".join(seed_hex[i : i + 2] for i in range(0, 10, 2))


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC per bridge name.

    Left alone, a bridge takes the lowest MAC of its ports and changes it
    as containers come and go, which leaves stale gateway entries in the
    containers' ARP caches; Docker pins it too.
    """
    digest = digests.sha256(name.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class _OwnThread:
    """An IPRoute whose every call runs on one thread of its own.

    pyroute2 (0.9) gives each thread that uses an IPRoute a netlink socket,
    an event loop and a message queue of its own, and keeps them until the
    IPRoute is closed. The daemon serves each connection on a new thread:
    used from those, the host's handle kept a socket and some 10 kB per
    request that touched netlink, forever. Here one thread, made with the
    handle (in the namespace the daemon entered), makes every call; the
    callers wait for the answer, as they waited for the lock. Dumps come
    back as lists, read on that thread.
    """

    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._thread = self._worker.submit(threading.current_thread).result()
        self._ipr = self.call(IPRoute)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not self._thread:
            return self._worker.submit(self.call, fn, *args, **kwargs).result()
        try:
            result = fn(*args, **kwargs)
            return list(result) if isinstance(result, types.GeneratorType) else result
        finally:
            self._drop_strays()

    def _drop_strays(self) -> None:
        # An answer that comes after its conversation ended (the kernel's ACK
        # of a GET such as link_lookup) lands in pyroute2's catch-all queue
        # and stays there. Between two calls nothing is in flight: they go.
        # Any error: this reaches into pyroute2's internals, whose layout may change;
        # then only this cleanup is lost, never the call's own result or error.
        with contextlib.suppress(Exception):
            root = self._ipr.asyncore.msg_queue.root
            while not root.empty():
                root.get_nowait()
                root.task_done()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ipr, name)
        return functools.partial(self.call, attr) if callable(attr) else attr

    def close(self) -> None:
        try:
            self.call(self._ipr.close)
        finally:
            self._worker.shutdown(wait=True)


class Netlink:
    """The host's netlink handle. One socket, used under a lock, from one thread."""

    def __init__(self) -> None:
        self._ipr = _OwnThread()
        self._lock = threading.RLock()
        # A start's host side goes over this one (kernel/rtnl.py): made here, in the host's
        # namespace, like the handle's own thread.
        self._rt = rtnl.Socket()

    def close(self) -> None:
        with self._lock:
            try:
                self._ipr.close()
            finally:
                self._rt.close()

    # -- lookups ---------------------------------------------------------

    def index(self, name: str) -> int | None:
        with self._lock:
            try:
                return self._rt.index(name)
            except OSError as e:
                raise _fail(e, f"look up link {name}") from e

    def link_exists(self, name: str) -> bool:
        return self.index(name) is not None

    def bridge_ports(self, bridge: str) -> list[str]:
        idx = self.index(bridge)
        if idx is None:
            return []
        with self._lock:
            links = self._dump(self._ipr.get_links)
        return [str(_attr(m, "IFLA_IFNAME")) for m in links if _attr(m, "IFLA_MASTER") == idx]

    def is_port_of(self, port: str, bridge: str) -> bool:
        """Whether link `port` is a port of `bridge`: two lookups, not a dump of every link."""
        with self._lock:
            idx, bridge_idx = self.index(port), self.index(bridge)
            if idx is None or bridge_idx is None:
                return False
            (msg,) = self._ipr.get_links(idx)
        return bool(_attr(msg, "IFLA_MASTER") == bridge_idx)

    def _dump(self, fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
        for attempt in range(_DUMP_RETRIES):
            try:
                return list(fn(*args, **kwargs))
            except NetlinkError as e:
                if e.code != errno.EINTR or attempt == _DUMP_RETRIES - 1:
                    raise
        return []

    def routes(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        """IPv4 routes of the main table as (device, destination), default route excluded."""
        with self._lock:
            msgs = self._dump(self._ipr.get_routes, family=2, table=RT_TABLE_MAIN)
            names = {m["index"]: str(_attr(m, "IFLA_IFNAME")) for m in self._dump(self._ipr.get_links)}
        out = []
        for m in msgs:
            if m["dst_len"] == 0:
                continue
            dst = _attr(m, "RTA_DST")
            dev = names.get(_attr(m, "RTA_OIF"), "")
            out.append((dev, ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False)))
        return out

    def routes6(self) -> list[tuple[str, ipaddress.IPv6Network]]:
        """IPv6 routes of the main table as (device, destination): default, link-local
        and multicast routes excluded (every link has those)."""
        with self._lock:
            msgs = self._dump(self._ipr.get_routes, family=AF_INET6, table=RT_TABLE_MAIN)
            names = {m["index"]: str(_attr(m, "IFLA_IFNAME")) for m in self._dump(self._ipr.get_links)}
        out = []
        for m in msgs:
            if m["dst_len"] == 0:
                continue
            dst = ipaddress.IPv6Network(f"{_attr(m, 'RTA_DST')}/{m['dst_len']}", strict=False)
            if dst.is_link_local or dst.is_multicast or dst.is_loopback:
                continue
            out.append((names.get(_attr(m, "RTA_OIF"), ""), dst))
        return out

    def addresses(self) -> list[tuple[str, ipaddress.IPv4Interface]]:
        with self._lock:
            msgs = self._dump(self._ipr.get_addr, family=2)
            names = {m["index"]: str(_attr(m, "IFLA_IFNAME")) for m in self._dump(self._ipr.get_links)}
        return [
            (
                names.get(m["index"], ""),
                ipaddress.IPv4Interface(f"{_attr(m, 'IFA_ADDRESS')}/{m['prefixlen']}"),
            )
            for m in msgs
        ]

    # -- bridges ---------------------------------------------------------

    def _alias(self, idx: int) -> str:
        (msg,) = self._ipr.get_links(idx)
        return str(_attr(msg, "IFLA_IFALIAS") or "")

    def ensure_bridge(
        self,
        name: str,
        gateway: ipaddress.IPv4Interface | None,
        mtu: int,
        owner: str,
        gateway6: ipaddress.IPv6Interface | None = None,
        more: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = (),
    ) -> bool:
        """Create the bridge if missing, give it its gateway address(es), bring it up.

        more: the gateways of the network's later subnets, given as the first ones.

        With gateway6 the bridge has IPv6 on (no router advertisement taken)
        and the IPv6 gateway address, without duplicate address detection;
        without it, no IPv6 at all (the caller turns it off).

        The bridge carries its owner's mark as its alias: a bridge of the
        same name that is not this owner's (another dockyard root's, or
        another tool's) is refused, never taken over. Returns True when the
        bridge was created here.
        """
        created = False
        with self._lock:
            idx = self.index(name)
            if idx is None:
                try:
                    self._ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=bridge_mac(name))
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise _fail(e, f"create bridge {name}") from e
                else:
                    created = True
                idx = self.index(name)
                if idx is None:
                    raise KernelError(f"bridge {name} vanished while being created")
                if created:
                    try:
                        self._ipr.link("set", index=idx, ifalias=owner)
                    except NetlinkError as e:
                        raise _fail(e, f"mark bridge {name}") from e
            alias = self._alias(idx)
            if alias != owner:
                whose = "another dockyard root" if alias.startswith("dy:") else "another tool"
                raise Conflict(
                    f"a link named {name} already exists and belongs to {whose}: "
                    "give this root another bridge name (--bridge, or com.docker.network.bridge.name)"
                )
            for address in (gateway, gateway6, *more):
                if isinstance(address, ipaddress.IPv6Interface):
                    self._add_address6(idx, address, f"bridge {name}")
                elif address is not None:
                    try:
                        self._ipr.addr(
                            "add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen
                        )
                    except NetlinkError as e:
                        if e.code != errno.EEXIST:
                            raise _fail(e, f"add {address} to bridge {name}") from e
            try:
                self._ipr.link("set", index=idx, state="up")
            except NetlinkError as e:
                raise _fail(e, f"bring bridge {name} up") from e
        return created

    def _add_address6(self, idx: int, address: ipaddress.IPv6Interface, where: str) -> None:
        """An IPv6 address on a host link (its IPv6 turned on first), without DAD."""
        name = str(_attr(self._ipr.get_links(idx)[0], "IFLA_IFNAME"))
        sysctl.ipv6_on(name)
        try:
            self._ipr.addr(
                "add",
                index=idx,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                flags=IFA_F_NODAD,
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _fail(e, f"add {address} to {where}") from e

    def delete_bridge(self, name: str, owner: str) -> bool:
        """Delete the bridge if it is this owner's; True when it was deleted."""
        with self._lock:
            idx = self.index(name)
            if idx is None or self._alias(idx) != owner:
                return False
        return self.delete_link(name)

    def link_alias(self, name: str) -> str | None:
        """A link's alias (a dockyard bridge carries its owner's mark there); None when absent."""
        with self._lock:
            idx = self.index(name)
            return None if idx is None else self._alias(idx)

    def is_bridge(self, name: str) -> bool:
        with self._lock:
            idx = self.index(name)
            if idx is None:
                return False
            (msg,) = self._ipr.get_links(idx)
        info = _attr(msg, "IFLA_LINKINFO")
        return bool(info) and info.get_attr("IFLA_INFO_KIND") == "bridge"

    def delete_link(self, name: str) -> bool:
        """Delete a link if present; True when it was there."""
        return self._to_link(name, rtnl.del_link, f"delete link {name}")  # by name: no lookup first

    def set_link_down(self, name: str) -> bool:
        """Set a link down, by name; False when there is no such link."""
        return self._to_link(name, rtnl.set_down, f"set link {name} down")

    def _to_link(self, name: str, message: Callable[[str], rtnl.Message], what: str) -> bool:
        """Send the message made for the link named name; False when there is no such link."""
        if len(name.encode()) >= rtnl.IFNAMSIZ:
            return False  # no link's name
        with self._lock:
            try:
                (code,) = self._rt.send(message(name))
            except OSError as e:
                raise _fail(e, what) from e
        if code in (errno.ENODEV, errno.ENOENT):
            return False
        if code:
            raise _fail(rtnl.RtnlError(code, os.strerror(code)), what)
        return True

    # -- endpoints -------------------------------------------------------

    def create_endpoint(
        self,
        host_ifname: str,
        bridge: str,
        sandbox: Path | None,
        ifname: str,
        address: ipaddress.IPv4Interface | None,
        gateway: ipaddress.IPv4Address | None,
        mac: str,
        mtu: int,
        default_route: bool = True,
        address6: ipaddress.IPv6Interface | None = None,
        gateway6: ipaddress.IPv6Address | None = None,
    ) -> None:
        """A veth pair: host end on the bridge, the other end `ifname` in the sandbox.

        Without address (an IPv6-only network) it has no IPv4 address nor route.
        Without address6 the sandbox's end has no IPv6; with it, IPv6 on, the
        address without DAD and a default IPv6 route via gateway6. Either way
        it takes no router advertisement: only the engine configures it. With
        no sandbox, the other end stays in this namespace as it was made, for
        the caller to move and configure."""
        with self._lock, contextlib.ExitStack() as stack:
            ns_fd = None if sandbox is None else stack.enter_context(open(sandbox, "rb")).fileno()
            self._plug_host_side(host_ifname, bridge, ifname, ns_fd, mac, mtu)
        if sandbox is None:
            return
        # Before the interface is up: it never takes a router advertisement.
        with netns.entered(sandbox):
            if address6 is None:
                sysctl.ipv6_off(ifname)
            else:
                sysctl.ipv6_on(ifname)
            rt = _socket_here(f"configure {ifname} in {sandbox}")
        with rt:
            try:
                idx = rt.index(ifname)
                if idx is None:
                    raise rtnl.RtnlError(errno.ENODEV, f"no interface {ifname}")
                # In one write, handled in this order: the route's gateway is on-link once
                # the address is there and the link up.
                messages = []
                if address is not None:
                    messages.append(rtnl.new_address(idx, address))
                if address6 is not None:
                    messages.append(rtnl.new_address(idx, address6, IFA_F_NODAD))
                messages.append(rtnl.set_up(idx))
                if default_route and gateway is not None and address is not None:
                    messages.append(rtnl.default_route(idx, gateway))
                if default_route and gateway6 is not None and address6 is not None:
                    messages.append(rtnl.default_route(idx, gateway6))
                rt.check(*messages)
            except OSError as e:
                raise _fail(e, f"configure {ifname} ({address or address6}) in {sandbox}") from e

    def _plug_host_side(
        self, host_ifname: str, bridge: str, ifname: str, ns_fd: int | None, mac: str, mtu: int
    ) -> None:
        """create_endpoint's host side, over the host's rtnetlink socket (under the lock)."""
        rt = self._rt
        try:
            master = rt.index(bridge)
        except OSError as e:
            raise _fail(e, f"find bridge {bridge}") from e
        if master is None:
            raise KernelError(f"bridge {bridge} does not exist")
        try:
            rt.check(rtnl.new_veth(host_ifname, mtu, ifname, mac, ns_fd))
        except OSError as e:
            raise _fail(e, f"create veth pair {host_ifname}/{ifname}") from e
        try:
            idx = rt.index(host_ifname)
            if idx is None:
                raise rtnl.RtnlError(errno.ENODEV, f"{host_ifname} vanished")
            # Where br_netfilter is on, a container reaching its own published port
            # gets the DNATed frame back through the port it came in on; the bridge
            # sends it only in hairpin mode. In one write, in this order: the port's
            # hairpin mode exists once it is the bridge's port, and it is set before
            # the port is up.
            rt.check(rtnl.set_master(idx, master), rtnl.set_hairpin(idx, True), rtnl.set_up(idx))
        except OSError as e:
            raise _fail(e, f"attach {host_ifname} to {bridge}") from e

    def set_hairpin(self, port: str, on: bool) -> None:
        """Hairpin mode of a bridge port: whether frames may leave by the port they came in."""
        with self._lock:
            idx = self.index(port)
            if idx is None:
                raise KernelError(f"cannot set hairpin mode of {port}: no such link")
            try:
                self._ipr.brport("set", index=idx, mode=int(on))
            except NetlinkError as e:
                raise _fail(e, f"set hairpin mode of {port}") from e

    def ensure_loopback6_route(self, bridge: str) -> None:
        """A local route for ::1 through the bridge (in table local, behind lo's).

        What route_localnet is to 127.0.0.1 publishing: the reply to a host
        connection to ::1 that was DNATed into the bridge comes back DNATed to
        ::1, and without a local ::1 route on the interface it arrived by the
        kernel finds no route for it (IPv6 looks loopback up on that interface
        only). Nothing from the wire is addressed to ::1 past the kernel's
        own check (RFC 4291, before any hook); the route goes with the bridge.
        """
        with self._lock:
            idx = self.index(bridge)
            if idx is None:
                raise KernelError(f"cannot route ::1 through {bridge}: no such link")
            try:
                self._ipr.route(
                    "replace",
                    family=socket.AF_INET6,
                    dst="::1/128",
                    oif=idx,
                    table=255,
                    type="local",
                    priority=1024,
                )
            except NetlinkError as e:
                raise _fail(e, f"route ::1 through {bridge}") from e


@contextlib.contextmanager
def sandbox_netlink(sandbox: Path) -> Iterator[IPRoute]:
    """A netlink socket inside the sandbox, closed on exit."""
    with netns.entered(sandbox):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _socket_here(what: str) -> rtnl.Socket:
    """An rtnetlink socket in this thread's namespace; a KernelError saying what it was for."""
    try:
        return rtnl.Socket()
    except OSError as e:
        raise _fail(e, f"{what}: no netlink socket") from e


def loopback_up(sandbox: Path) -> None:
    with netns.entered(sandbox):
        rt = _socket_here(f"bring lo up in {sandbox}")
    with rt:
        try:
            rt.check(rtnl.set_up(name="lo"))  # by name: no lookup first
        except OSError as e:
            raise _fail(e, f"bring lo up in {sandbox}") from e


def sandbox_links(sandbox: Path) -> list[str]:
    with sandbox_netlink(sandbox) as ipr:
        return [str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()]


def add_sandbox_routes(
    sandbox: Path,
    ifname: str,
    routes: list[
        tuple[
            ipaddress.IPv4Network | ipaddress.IPv6Network,
            ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        ]
    ],
) -> None:
    """Routes (either family) through ifname in the sandbox: via a gateway, or on-link when it is None."""
    with sandbox_netlink(sandbox) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise KernelError(f"cannot add routes in {sandbox}: no interface {ifname}")
        for dst, gw in routes:
            try:
                family = AF_INET6 if dst.version == 6 else 2
                if gw is None:
                    ipr.route("add", dst=str(dst), oif=found[0], scope=253, family=family)  # RT_SCOPE_LINK
                else:
                    ipr.route("add", dst=str(dst), gateway=str(gw), oif=found[0], family=family)
            except NetlinkError as e:
                raise _fail(e, f"add route to {dst} via {gw or ifname} in {sandbox}") from e
