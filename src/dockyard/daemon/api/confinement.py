"""The Engine API's fields of what a container may do: Config.User and HostConfig's security fields.

Docker's names and types: User, CapAdd, CapDrop, Privileged, GroupAdd,
SecurityOpt, Init, PidsLimit. What each means is policy/security.py's;
fields dockyard does not implement are refused when set (a container would
otherwise run differently from what was asked), left alone at their zero
value, which the docker CLI sends for every field.
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.model import ContainerConfig
from dockyard.policy import security

Json = dict[str, Any]

# HostConfig fields with no effect in dockyard: refused unless empty or zero.
NOT_IMPLEMENTED = (
    "PidMode",
    "UsernsMode",
    "ReadonlyRootfs",
    "Devices",
    "DeviceCgroupRules",
    "Ulimits",
)  # IpcMode, CgroupnsMode and Sysctls: create_fields.py


def _strings(raw: Any, what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) and "\0" not in x for x in raw):
        raise InvalidArgument(f"{what} must be a list of strings")
    return raw


def _flag(raw: Any, what: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise InvalidArgument(f"{what} must be true or false")
    return raw


def _user(raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidArgument("User must be a string")
    security.parse_user(raw)
    return raw


def _pids_limit(raw: Any) -> int:
    """Docker: null, 0 and -1 mean unlimited; other negatives too."""
    if raw is None:
        return 0
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidArgument("HostConfig.PidsLimit must be an integer")
    return max(raw, 0)


def _refuse_unimplemented(host: Json) -> None:
    for name in NOT_IMPLEMENTED:
        if host.get(name) not in (None, "", 0, False, [], {}):
            raise InvalidArgument(f"HostConfig.{name} is not supported by dockyard")


def fields(body: Json, host: Json) -> Json:
    """The ContainerConfig fields of confinement, checked."""
    _refuse_unimplemented(host)
    return {
        "user": _user(body.get("User")),
        "group_add": security.check_group_names(_strings(host.get("GroupAdd"), "HostConfig.GroupAdd")),
        "cap_add": security.normalize_capabilities(_strings(host.get("CapAdd"), "HostConfig.CapAdd")),
        "cap_drop": security.normalize_capabilities(_strings(host.get("CapDrop"), "HostConfig.CapDrop")),
        "privileged": _flag(host.get("Privileged"), "HostConfig.Privileged"),
        "no_new_privileges": security.no_new_privileges(
            _strings(host.get("SecurityOpt"), "HostConfig.SecurityOpt")
        ),
        "init": _flag(host.get("Init"), "HostConfig.Init"),
        "pids_limit": _pids_limit(host.get("PidsLimit")),
    }


def inspect(cfg: ContainerConfig) -> tuple[Json, Json]:
    """(Config, HostConfig) entries of containers/{id}/json."""
    config = {"User": cfg.user}
    host = {
        "CapAdd": list(cfg.cap_add) or None,
        "CapDrop": list(cfg.cap_drop) or None,
        "Privileged": cfg.privileged,
        "GroupAdd": list(cfg.group_add) or None,
        "SecurityOpt": [security.NO_NEW_PRIVILEGES] if cfg.no_new_privileges else None,
        "Init": cfg.init,
        "PidsLimit": cfg.pids_limit or None,
    }
    return config, host
