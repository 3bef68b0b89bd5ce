"""sha256 and random tokens without OpenSSL in the daemon, unless it hashes content.

`import hashlib` (and `secrets`, through hmac) loads OpenSSL's libcrypto:
3.4 MB of the daemon's RSS, some 8 % of it idle, for digests of a few bytes
(a bridge's MAC, a cgroup's or a mount's name, an endpoint's key). CPython's
own sha256 gives the same digest of a short string as fast; `sha256` is that
one. `content_sha256` is hashlib's (OpenSSL), six times faster in bulk, for
image layers and blobs: libcrypto loads with the first image hashed.
`token_hex` is secrets.token_hex (os.urandom in hex) without hmac.

A leaf: the standard library only.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol


class Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _builtin_sha256() -> Any:
    for name in ("_sha256", "_sha2"):  # CPython 3.11; 3.12 and later
        try:
            return importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
    import hashlib  # another interpreter: whatever it has

    return hashlib.sha256


_sha256 = _builtin_sha256()


def sha256(data: bytes = b"") -> Hash:
    """sha256 of a short input (a name, a key), without loading OpenSSL."""
    h: Hash = _sha256(data)
    return h


def content_sha256() -> Hash:
    """An empty sha256 for content (image layers, blobs): OpenSSL's, loaded by the first call."""
    import hashlib

    return hashlib.sha256()


def token_hex(nbytes: int) -> str:
    """nbytes random bytes in hex, as secrets.token_hex (which imports hmac, hence OpenSSL)."""
    return os.urandom(nbytes).hex()
