"""`docker import --change`: the Dockerfile instructions an imported image's config may take.

Pure. Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR here; dockyard takes all but ONBUILD
(a build-time trigger, and dockyard does not build), which is refused by
name. The result is the `config` object of the image's config JSON, with
Docker's field names.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from dockyard.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
_PORT_RE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/(tcp|udp|sctp))?\Z", re.IGNORECASE)


def _json_or_shell(args: str, shell: bool) -> list[str]:
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return value
    if not text:
        return []
    return ["/bin/sh", "-c", text] if shell else text.split()


def _pairs(args: str, what: str) -> list[tuple[str, str]]:
    """`K=V K2="V 2"` (or the old `K V` form of a single pair)."""
    import shlex

    try:
        words = shlex.split(args)
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} {args!r}: {e}") from None
    if not words:
        raise InvalidArgument(f"{what} needs at least one argument")
    if "=" not in words[0]:
        key, _, value = args.strip().partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{what} {args!r} must have two arguments (or KEY=VALUE)")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid {what} {word!r}: give KEY=VALUE")
        out.append((key, value))
    return out


def _ports(args: str) -> list[str]:
    out = []
    for word in args.split():
        m = _PORT_RE.match(word)
        if not m:
            raise InvalidArgument(f"invalid EXPOSE {word!r}: give PORT[/tcp|udp|sctp]")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 < first <= last <= 65535:
            raise InvalidArgument(f"invalid EXPOSE {word!r}: ports are 1-65535")
        proto = (m.group(3) or "tcp").lower()
        out += [f"{p}/{proto}" for p in range(first, last + 1)]
    return out


def apply(changes: list[str]) -> dict[str, Any]:
    """The config object that `changes` give an image made from nothing but a tarball."""
    config: dict[str, Any] = {}
    for change in changes:
        if "\0" in change:
            raise InvalidArgument("a --change may not contain NUL")
        text = change.strip()
        if not text:
            continue
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "ONBUILD":
            raise InvalidArgument("--change ONBUILD is not supported: dockyard does not build images")
        if keyword not in ALLOWED:
            raise InvalidArgument(f"{keyword} is not a valid change command (valid: {', '.join(ALLOWED)})")
        if keyword == "CMD":
            config["Cmd"] = _json_or_shell(args, shell=True)
        elif keyword == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(args, shell=True)
        elif keyword == "ENV":
            env = [e for e in config.get("Env", [])]
            for key, value in _pairs(args, "ENV"):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            config["Env"] = env
        elif keyword == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(args, "LABEL"))
            config["Labels"] = labels
        elif keyword == "EXPOSE":
            exposed = dict(config.get("ExposedPorts") or {})
            exposed.update({p: {} for p in _ports(args)})
            config["ExposedPorts"] = exposed
        elif keyword == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            for path in _json_or_shell(args, shell=False):
                if not path.strip():
                    raise InvalidArgument("VOLUME specified can not be an empty string")
                volumes[path] = {}
            config["Volumes"] = volumes
        elif keyword == "WORKDIR":
            path = args.strip()
            if not path:
                raise InvalidArgument("WORKDIR needs an argument")
            config["WorkingDir"] = posixpath.join(config.get("WorkingDir") or "/", path)
        elif keyword == "USER":
            if not args.strip():
                raise InvalidArgument("USER needs an argument")
            config["User"] = args.strip()
        elif keyword == "STOPSIGNAL":
            if not args.strip():
                raise InvalidArgument("STOPSIGNAL needs an argument")
            config["StopSignal"] = args.strip()
    return config
