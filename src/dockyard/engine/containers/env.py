"""What a container's process is given to see: ContainerFiles.

This module owns a container's environment (PATH, HOSTNAME, HOME and its
-e values, for its command and its execs) and the network files bound over
its /etc: hosts, hostname and resolv.conf (shared with the target in
container: mode), with the resolver a container names on its networks, and
resolv.conf rewritten after connect or disconnect.

Writing the files' text is sandbox.py's; when they are written is the
callers': containers/run.py, networks/attach.py and the exec verbs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dockyard.engine import sandbox
from dockyard.engine.containers import requests
from dockyard.errors import DockyardError
from dockyard.kernel import files
from dockyard.model import Container, Endpoint, ModeKind, Network
from dockyard.settings import DaemonSettings, Paths
from dockyard.store import Store

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NETWORK_FILES = (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf"))


class ContainerFiles:
    """A container's environment and network files."""

    def __init__(self, settings: DaemonSettings, paths: Paths, store: Store) -> None:
        self.settings = settings
        self.paths = paths
        self.store = store

    def network_files(
        self, c: Container, hostname: str, endpoint: Endpoint | None, target: Container | None
    ) -> dict[str, Path]:
        if c.config.network_mode.kind is ModeKind.HOST:
            return {}
        if target is not None:
            # container: mode shares the target's files, as Docker does.
            directory = self.paths.container_dir(target.id)
            found = {t: directory / f for t, f in NETWORK_FILES}
            # Bound in by path, and a bind mount follows links: only files, no link on the way.
            if all(files.is_regular(self.paths.root, p) for p in found.values()):
                return found
        address = endpoint.address.ip if endpoint and endpoint.address else None
        network = self.store.find_network(endpoint.network_id) if endpoint else None
        resolv = self.resolv_conf(c, [(network, endpoint)] if network and endpoint else [])
        address6 = endpoint.address6.ip if endpoint and endpoint.address6 else None
        extra = [c.name] if address is not None or address6 is not None else []
        directory = self.paths.container_dir(c.id)
        return sandbox.write_network_files(
            self.paths.root,
            directory,
            hostname,
            address,
            extra,
            resolv,
            requests.extra_host_lines(self, c),
            address6,
        )

    def resolv_conf(self, c: Container, endpoints: list[tuple[Network, Endpoint]]) -> str:
        """resolv.conf for a container with these endpoints (in the order it joined their networks).

        On a user network: dockyard's resolver on the gateway of the first one
        (its endpoint's: the gateway of its own subnet, on a network of several),
        which answers for every network of the container; --dns there names the
        servers it forwards to. Otherwise (the default bridge, none): the
        host's resolvers, or --dns, or daemon.json's dns, written in.
        """
        cfg = c.config
        for network, endpoint in endpoints:
            # An IPv6-only network's resolver is on its IPv6 gateway.
            server = endpoint.gateway or endpoint.gateway6
            if network.bridged and network.name != "bridge" and server:
                return sandbox.resolv_conf("", (server,), cfg.dns_search, cfg.dns_options)
        return sandbox.resolv_conf(
            sandbox.host_resolv_conf(), cfg.dns or self.settings.dns, cfg.dns_search, cfg.dns_options
        )

    def refresh_resolv_conf(self, c: Container) -> None:
        """After connect or disconnect: name a resolver the container still reaches.

        As Docker, which rewrites it when a container first joins a network
        with DNS by name; here also when the network it named is left. The
        file is rewritten in place: it is bind-mounted into the container
        (and into those sharing its namespace, container: mode).

        Never through a link: when the name is not the file dockyard wrote (a
        symbolic link, a hard link to a file elsewhere, a FIFO...), it is
        replaced by a regular file and the link's target is left alone. The
        connect or disconnect asked for still happens: it is about the
        network, and a disconnect refused over a file would leave the
        container on a network it should leave. The running container keeps
        the copy it started with, which the planted name had already cut off
        from this directory; the daemon's log says so.
        """
        path = self.paths.container_dir(c.id) / "resolv.conf"
        endpoints = [
            (n, ep)
            for ep in self.store.endpoints(container_id=c.id)
            if (n := self.store.find_network(ep.network_id)) is not None
        ]
        text = self.resolv_conf(c, endpoints)
        try:
            done = files.rewrite(self.paths.root, path, text, sandbox.NETWORK_FILE_MODE)
        except DockyardError as e:  # the container may be going away meanwhile
            log.warning("container %s: resolv.conf not rewritten: %s", c.name, e)
            return
        if done is files.Rewrite.REPLACED:
            log.warning(
                "container %s: %s was not the file dockyard wrote (a link or not a regular file): "
                "replaced by a regular file, its target left alone; the running container keeps "
                "the resolv.conf it started with",
                c.name,
                path,
            )

    def environment(self, c: Container, hostname: str) -> list[str]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
        if not c.config.user:
            env["HOME"] = "/root"  # else the user's, from the container's passwd (kernel/spawn.py)
        for item in c.config.env:
            key, _, value = item.partition("=")
            env[key] = value
        return [f"{k}={v}" for k, v in env.items()]
