"""What keeps a container in its box (Confinement): the checks at create, the spawn's fields.

This module owns the checks of a container's confinement before anything
is made (capability names and that the daemon holds those added, the user
and groups in the files the container will see, --init's binary, a pids
controller for --pids-limit), and what start and exec ask of the shim: a
new PID namespace, the overlay root with $ROOT and /run/netns masked,
the capability set, the user, no-new-privileges, the pids cgroup and the
descriptor limit. The mechanism is kernel/'s (spawn, rootfs, caps, users,
cgroups); the rules as Docker spells them are policy/security.py's.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from dockyard.engine.containers.env import DEFAULT_PATH
from dockyard.engine.images import Images
from dockyard.errors import InvalidArgument
from dockyard.kernel import caps, users
from dockyard.kernel.cgroups import Cgroups
from dockyard.model import Container, ContainerConfig
from dockyard.policy import security
from dockyard.settings import Paths

# Docker 25+'s RLIMIT_NOFILE for containers (soft, hard), not the daemon's own.
NOFILE = (1024, 524288)
# What --init runs as PID 1 (Docker ships tini as docker-init).
INIT_BINARIES = ("docker-init", "tini-static", "tini")
# Masked in every container beside $ROOT: the host's named network namespaces.
HIDDEN_PATHS = ("/run/netns",)
# Where --init's binary is bound in a container whose root is an image's.
IMAGE_INIT = "/dev/init"


def init_binary() -> str | None:
    for name in INIT_BINARIES:
        found = shutil.which(name, path=DEFAULT_PATH)
        if found:
            return os.path.realpath(found)
    return None


class Confinement:
    """Checks and spawn fields of confinement."""

    def __init__(self, paths: Paths, cgroups: Cgroups, images: Images) -> None:
        self.paths = paths
        self.cgroups = cgroups
        self.images = images

    def check(self, cfg: ContainerConfig) -> None:
        """Every refusal before anything is made (bad input changes nothing)."""
        chosen = security.capabilities(cfg.cap_add, cfg.cap_drop, cfg.privileged)
        if not cfg.privileged:
            held = caps.bounding_set()
            added = [c for c in security.normalize_capabilities(cfg.cap_add) if c != security.ALL]
            missing = [c for c in added if c in chosen and not held >> security.CAPABILITIES[c] & 1]
            if missing:
                raise InvalidArgument(
                    f"cannot add {', '.join(missing)}: dockyardd does not hold it (the host's bounding set)"
                )
        spec = security.parse_user(cfg.user)
        security.check_group_names(cfg.group_add)
        try:
            users.resolve(self._user_files(cfg), spec.user, spec.group, cfg.group_add)
        except users.UnknownUser as e:
            raise InvalidArgument(str(e)) from None
        if cfg.init and init_binary() is None:
            raise InvalidArgument("--init: no init binary found (install Debian's tini package: tini-static)")
        if cfg.pids_limit > 0 and not self.cgroups.available:
            raise InvalidArgument("--pids-limit: this host has no pids cgroup controller mounted")

    def _user_files(self, cfg: ContainerConfig) -> str:
        """Where the container's /etc/passwd is: the host's, or the top layer of its image that has one."""
        if not cfg.image_id:
            return "/"
        for layer in self.images.layer_dirs(self.images.get(cfg.image_id)):
            if (layer / "etc" / "passwd").is_file():
                return str(layer)
        return "/nonexistent"  # no passwd: numeric users only, as in Docker

    def command_line(self, c: Container) -> list[str]:
        if not c.config.init:
            return list(c.config.cmd)
        init = init_binary()
        if init is None:
            raise InvalidArgument("--init: no init binary found (install Debian's tini package: tini-static)")
        # An image's root has no tini of the host's: it is bound in at /dev/init (Podman's place).
        return [IMAGE_INIT if c.config.image_id else init, "--", *c.config.cmd]

    def process_fields(self, c: Container) -> dict[str, Any]:
        """What every process of the container gets: its own and its execs'."""
        cfg = c.config
        spec = security.parse_user(cfg.user)
        cgroup = self.cgroups.path(c.id)
        return {
            "caps": security.capability_mask(
                security.capabilities(cfg.cap_add, cfg.cap_drop, cfg.privileged)
            ),
            "user": spec.user,
            "group": spec.group,
            "group_add": list(cfg.group_add),
            "no_new_privs": cfg.no_new_privileges,
            "cgroups": [str(cgroup)] if cgroup is not None and cgroup.is_dir() else [],
            "nofile": list(NOFILE),
        }

    def start_fields(self, c: Container) -> dict[str, Any]:
        """A container's first process: the above, in a new PID namespace and its own root."""
        if c.config.pids_limit > 0:
            # Only a limit needs the cgroup: joining one costs a start 8-16 ms (kernel/cgroups.py).
            self.cgroups.create(c.id, c.config.pids_limit)
        lowers: list[str] = []
        init = ""
        if c.config.image_id:
            lowers = [str(p) for p in self.images.layer_dirs(self.images.get(c.config.image_id))]
            init = (init_binary() or "") if c.config.init else ""
        return {
            **self.process_fields(c),
            "new_pidns": True,
            "rootfs": str(self.paths.container_dir(c.id)),
            "hidden": [str(self.paths.root), *HIDDEN_PATHS],
            "privileged": c.config.privileged,
            "lowers": lowers,
            "init_binary": init,
        }
