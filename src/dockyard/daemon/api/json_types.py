"""A request body's values checked for Docker's JSON types, before anything uses them.

A body may come from any client: each value is checked for the type Docker's
API gives it, and a wrong one is an InvalidArgument naming the field, never
a TypeError in the daemon. null counts as absent. What the values mean is
the caller's (create_fields.py, docker.py, attach.py).
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidArgument

Json = dict[str, Any]


def json_object(raw: Any, what: str) -> Json:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return raw


def text(raw: Any, what: str) -> str:
    """A string; NUL is refused, as no argv, file name or kernel name can hold it."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidArgument(f"{what} must be a string")
    if "\0" in raw:
        raise InvalidArgument(f"invalid {what} {raw!r}: it may not contain NUL")
    return raw


def strings(raw: Any, what: str, one_string: bool = False) -> list[str]:
    """A list of strings; Docker's Cmd and Entrypoint (one_string) also take a single string."""
    if raw is None:
        return []
    if one_string and isinstance(raw, str):
        raw = [raw] if raw else []
    if not isinstance(raw, list):
        raise InvalidArgument(f"{what} must be a list of strings")
    return [text(item, what) for item in raw]


def flag(raw: Any, what: str, default: bool = False) -> bool:
    if raw is None:
        return default
    if not isinstance(raw, bool):
        raise InvalidArgument(f"{what} must be true or false")
    return raw
