"""digests.py: sha256 and random tokens without OpenSSL's libcrypto (3.4 MB of the daemon's
RSS), the same digests as hashlib's, and OpenSSL's sha256 for content once it is asked for.
test_daemon_imports.py checks that the daemon's start loads no OpenSSL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

from hypothesis import given
from hypothesis import strategies as st

from dockyard import digests

SCRIPT = textwrap.dedent("""
    import json, sys
    from dockyard import digests
    digests.sha256(b"dockyard0").hexdigest()
    digests.token_hex(4)
    out = {"named": "_hashlib" in sys.modules}
    digests.content_sha256().update(b"layer")
    out["content"] = "_hashlib" in sys.modules
    print(json.dumps(out))
""")


def test_names_are_hashed_without_openssl_and_content_with_it() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"named": False, "content": True}


@given(st.binary(max_size=300))
def test_the_same_digests_as_hashlib(data: bytes) -> None:
    assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digests.sha256(data).digest() == hashlib.sha256(data).digest()
    h = digests.content_sha256()
    h.update(data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_tokens_are_random_hex_of_the_length_asked() -> None:
    tokens = {digests.token_hex(16) for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in tokens)
