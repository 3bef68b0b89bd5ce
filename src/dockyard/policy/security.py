"""What a container may do, as Docker spells it: capabilities, users, security options. Pure.

This module owns the capability names and numbers, Docker's default set
and how --cap-add, --cap-drop and --privileged change it (moby's
TweakCapabilities), the syntax of --user and --group-add (their lookup in
the container's /etc/passwd and /etc/group is kernel/users.py's), and which
--security-opt values dockyard implements. Applying them to a process is
kernel/caps.py's and kernel/spawn.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import InvalidArgument

# linux/capability.h, by number.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
ALL = "ALL"

# Docker's default set (moby's oci/caps/defaults.go), the same for every container.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

NO_NEW_PRIVILEGES = "no-new-privileges"


def normalize_capability(name: str) -> str:
    """`net_admin`, `CAP_NET_ADMIN` and `Net_Admin` are one name; `all` is ALL."""
    upper = name.strip().upper()
    if upper == ALL:
        return ALL
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in CAPABILITIES:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return full


def normalize_capabilities(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normalize_capability(n) for n in names))


def capabilities(cap_add: tuple[str, ...], cap_drop: tuple[str, ...], privileged: bool) -> tuple[str, ...]:
    """The container's capability set, by number order (moby's TweakCapabilities)."""
    adds, drops = normalize_capabilities(cap_add), normalize_capabilities(cap_drop)
    if privileged:
        chosen = set(CAPABILITIES)
    elif ALL in adds:
        chosen = {c for c in CAPABILITIES if c not in drops}
    elif ALL in drops:
        chosen = {c for c in adds if c != ALL}
    else:
        chosen = {c for c in DEFAULT_CAPABILITIES if c not in drops} | set(adds)
    return tuple(sorted(chosen, key=CAPABILITIES.__getitem__))


def capability_mask(names: tuple[str, ...]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


@dataclass(frozen=True)
class UserSpec:
    """--user as given: a name or a number, and optionally a group (name or number)."""

    user: str
    group: str = ""


def parse_user(text: str) -> UserSpec:
    """`name`, `uid`, `name:group`, `uid:gid` (Docker's --user); "" is root."""
    user, colon, group = text.partition(":")
    if colon and not group:
        raise InvalidArgument(f"invalid user {text!r}: the group after ':' is empty")
    if (colon or text) and not user:
        raise InvalidArgument(f"invalid user {text!r}: the user before ':' is empty")
    for part in (user, group):
        if any(ch.isspace() or ch in ":/\0" for ch in part):
            raise InvalidArgument(f"invalid user {text!r}: expected user[:group], names or numbers")
        if part.isdigit() and int(part) > 0xFFFFFFFE:
            raise InvalidArgument(f"invalid user {text!r}: {part} is not a valid id")
    return UserSpec(user, group)


def check_group_names(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    for group in groups:
        if not group or any(ch.isspace() or ch in ":/\0" for ch in group):
            raise InvalidArgument(f"invalid --group-add {group!r}: expected a group name or number")
        if group.isdigit() and int(group) > 0xFFFFFFFE:
            raise InvalidArgument(f"invalid --group-add {group!r}: not a valid id")
    return tuple(groups)


def no_new_privileges(options: tuple[str, ...] | list[str]) -> bool:
    """--security-opt values to the one dockyard implements; the others are refused, named."""
    value = False
    refused = []
    for option in options:
        key, sep, flag = option.replace("=", ":", 1).partition(":")
        if key != NO_NEW_PRIVILEGES:
            refused.append(option)
        elif not sep or flag == "true":
            value = True
        elif flag == "false":
            value = False
        else:
            raise InvalidArgument(
                f"invalid --security-opt {option!r}: expected no-new-privileges[:true|false]"
            )
    if refused:
        raise InvalidArgument(
            f"unsupported --security-opt: {', '.join(repr(o) for o in refused)} "
            f"(dockyard implements {NO_NEW_PRIVILEGES} only)"
        )
    return value
