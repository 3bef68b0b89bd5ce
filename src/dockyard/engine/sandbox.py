"""Sandboxes: a container's pinned network namespace and its network files.

A sandbox is made for `bridge`, `none` and user networks; `host` has none
(the container uses the host's namespace); `container:<id>` reuses the
target's sandbox and never tears it down on the joiner's behalf.

The network files Docker binds into a container live in the container's
directory: `hosts` (localhost and the container's own names), `hostname`,
and `resolv.conf` (the host's, without loopback resolvers, which cannot
answer from inside a network namespace; Docker's public fallbacks when none
is left).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from dockyard.errors import KernelError
from dockyard.kernel import files, netlink, netns
from dockyard.settings import Paths

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
NETWORK_FILE_MODE = 0o644
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


class Sandboxes:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._dir_mounted = False

    def pin(self, container_id: str) -> Path:
        return self.paths.sandbox_pin(container_id)

    def prepare(self) -> None:
        """Make the pin directory a mount of its own (pins made before move into it):
        a container's start then drops every pin in one unmount (kernel/spawn.py)."""
        netns.own_mount(self.paths.netns_dir)
        self._dir_mounted = True

    def release(self) -> bool:
        """The pin directory's own mount goes once no pin is left (daemon stop,
        system reset), so that a root with nothing running holds no mount."""
        self._dir_mounted = False
        return netns.release_own_mount(self.paths.netns_dir)

    def create(self, container_id: str) -> Path:
        if not self._dir_mounted:
            self.prepare()
        path = self.pin(container_id)
        netns.create_pinned(path)
        try:
            netlink.loopback_up(path)
        except KernelError:
            netns.remove_pin(path)
            raise
        return path

    def remove(self, container_id: str) -> bool:
        return netns.remove_pin(self.pin(container_id))

    def exists(self, container_id: str) -> bool:
        return netns.is_pinned(self.pin(container_id))

    def pinned(self) -> list[str]:
        """Pin names found on disk or in the mount table (crash leftovers included)."""
        names = set()
        if self.paths.netns_dir.is_dir():
            names |= {p.name for p in self.paths.netns_dir.iterdir()}
        names |= {p.name for p in netns.mounted_under(self.paths.netns_dir)}
        return sorted(names)

    def remove_by_name(self, name: str) -> bool:
        return netns.remove_pin(self.paths.netns_dir / name)


def resolv_conf(
    host_text: str,
    dns: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    search: Iterable[str] = (),
    options: Iterable[str] = (),
) -> str:
    """The container's resolv.conf, as Docker writes it for the default bridge."""
    servers = [str(s) for s in dns]
    searches = list(search)
    opts = list(options)
    kept: list[str] = []
    for line in host_text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            if servers:
                continue
            try:
                addr = ipaddress.ip_address(words[1].split("%")[0])
            except ValueError:
                continue
            if addr.is_loopback or addr.version == 6:
                continue
            kept.append(f"nameserver {addr}")
        elif words[0] in ("search", "domain") and not searches:
            kept.append("search " + " ".join(words[1:]))
        elif words[0] == "options" and not opts:
            kept.append(line.strip())
    lines = [f"nameserver {s}" for s in servers] or kept
    if not any(x.startswith("nameserver") for x in lines):
        lines += [f"nameserver {s}" for s in FALLBACK_NAMESERVERS]
    if searches:
        lines.append("search " + " ".join(searches))
    if opts:
        lines.append("options " + " ".join(opts))
    if servers:
        lines += [x for x in kept if not x.startswith("nameserver")]
    return "\n".join(lines) + "\n"


def hosts_file(
    address: ipaddress.IPv4Address | None,
    names: Iterable[str],
    extra: Iterable[tuple[str, str]] = (),
    address6: ipaddress.IPv6Address | None = None,
) -> str:
    """extra: --add-host's (address, name), after the container's own line(s), as Docker
    writes them; address6: its IPv6 address on a network with IPv6, a line of its own."""
    text = HOSTS_HEADER
    unique = list(dict.fromkeys(n for n in names if n))
    for extra_address, name in extra:
        text += f"{extra_address}\t{name}\n"
    for own in (address, address6):
        if own is not None and unique:
            text += f"{own}\t{' '.join(unique)}\n"
    return text


def write_network_files(
    root: Path,
    directory: Path,
    hostname: str,
    address: ipaddress.IPv4Address | None,
    names: Iterable[str],
    resolv_text: str,
    extra_hosts: Iterable[tuple[str, str]] = (),
    address6: ipaddress.IPv6Address | None = None,
) -> dict[str, Path]:
    """Write hosts, hostname and resolv.conf under root; return {container path: file}.

    Each is written whole and replaced atomically, never through a link
    (kernel/files.py); readable by all, as a container's /etc files are.
    """
    wanted = {
        "/etc/hosts": (directory / "hosts", hosts_file(address, [hostname, *names], extra_hosts, address6)),
        "/etc/hostname": (directory / "hostname", hostname + "\n"),
        "/etc/resolv.conf": (directory / "resolv.conf", resolv_text),
    }
    out = {}
    for target, (path, text) in wanted.items():
        files.write(root, path, text, NETWORK_FILE_MODE, make_dirs=True)
        out[target] = path
    return out


def host_resolv_conf() -> str:
    try:
        return HOST_RESOLV_CONF.read_text()
    except OSError:
        return ""
