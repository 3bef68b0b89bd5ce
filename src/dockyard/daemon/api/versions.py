"""The Engine API versions dockyard answers: [1.24, 1.41], checked on every versioned path.

A path without /vX.Y is served at the newest version, as Docker does; one
outside the range gets Docker's own 400 words, which its clients show as is.
"""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
VERSIONED = re.compile(r"^/v([0-9]+(?:\.[0-9]+)*)/")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_version(path: str) -> None:
    m = VERSIONED.match(path)
    if m is None:
        return
    asked = m.group(1)
    if _key(asked) > _key(API_VERSION):
        raise InvalidArgument(
            f"client version {asked} is too new. Maximum supported API version is {API_VERSION}"
        )
    if _key(asked) < _key(MIN_API_VERSION):
        raise InvalidArgument(
            f"client version {asked} is too old. Minimum supported API version is {MIN_API_VERSION}, "
            "please upgrade your client to a newer version"
        )
