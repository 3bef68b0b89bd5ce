"""--user and --group-add looked up as Docker (runc) does: in the container's /etc/passwd and /etc/group.

A name must be found there; a number need not be (uid 1000 without an entry
runs with gid 0 and HOME /, as in Docker). A user named without a group
gets the supplementary groups that list it; `user:group` gets none but
--group-add's. The files read are the container's own view (`root`): the
daemon checks a new container against the host's files, which are what its
fresh layer shows, and the container's first process checks again in its
own root, where the container may have changed them. Stdlib only: the
shim's child uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT_HOME = "/root"


class UnknownUser(Exception):
    """The user or a group is not in the container's files; the message says which."""


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve(root: str, user: str, group: str = "", group_add: tuple[str, ...] = ()) -> ExecUser:
    """uid, gid, supplementary groups and home of `user[:group]` in the files under root."""
    base = root.rstrip("/")
    passwd = [e for e in _entries(f"{base}/etc/passwd") if len(e) >= 7]
    groups = [e for e in _entries(f"{base}/etc/group") if len(e) >= 3]
    user = user or "0"
    numeric = _number(user)
    entry = next((e for e in passwd if (e[2] == user if numeric is not None else e[0] == user)), None)
    if entry is None and numeric is None:
        raise UnknownUser(f"unable to find user {user}: no matching entries in passwd file")
    if entry is not None and not (entry[2].isdigit() and entry[3].isdigit()):
        raise UnknownUser(f"unable to find user {user}: its passwd entry is malformed")
    uid = numeric if numeric is not None else int(entry[2])  # type: ignore[index]
    gid = int(entry[3]) if entry is not None else 0
    home = entry[5] if entry is not None and entry[5] else ("/" if uid else ROOT_HOME)
    supplementary: list[int] = []
    if group:
        gid = _group_id(groups, group)
    elif entry is not None:
        supplementary = [int(g[2]) for g in groups if g[2].isdigit() and entry[0] in g[3].split(",")]
    supplementary += [_group_id(groups, g) for g in group_add]
    return ExecUser(uid, gid, tuple(dict.fromkeys(supplementary)), home)


def _group_id(groups: list[list[str]], name: str) -> int:
    numeric = _number(name)
    if numeric is not None:
        return numeric
    for g in groups:
        if g[0] == name and g[2].isdigit():
            return int(g[2])
    raise UnknownUser(f"unable to find group {name}: no matching entries in group file")
