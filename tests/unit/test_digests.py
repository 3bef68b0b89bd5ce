"""digests.py: the daemon's sha256 and random tokens without OpenSSL's libcrypto (3.4 MB of
its RSS), the same digests as hashlib's, and OpenSSL's sha256 for content once it is asked for."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

from hypothesis import given
from hypothesis import strategies as st

from dockyard import digests

# What the daemon imports before it serves (daemon/main.py: main, then Daemon.run).
SCRIPT = textwrap.dedent("""
    import json, sys
    import dockyard.daemon.main
    from dockyard.kernel import pyroute2_lean
    pyroute2_lean.install()
    from dockyard.daemon.api.routes import Api
    from dockyard.daemon.api.server import UnixHTTPServer
    from dockyard.daemon.metrics import Metrics
    from dockyard.engine import Engine
    from dockyard.engine.explain import Explainer
    from dockyard.kernel import Kernel
    from dockyard.kernel.dns_process import DnsProcess
    from dockyard.kernel.holds import PortHolds
    from dockyard.kernel.netlink import Netlink
    from dockyard.kernel.nft import Nft
    from dockyard.kernel.xtables import LegacyForward
    from dockyard.store import Store
    from dockyard import digests
    out = {"started": sorted(m for m in ("_hashlib", "hashlib", "hmac", "secrets") if m in sys.modules)}
    digests.sha256(b"dockyard0").hexdigest()
    digests.token_hex(4)
    out["named"] = "_hashlib" in sys.modules
    digests.content_sha256().update(b"layer")
    out["content"] = "_hashlib" in sys.modules
    print(json.dumps(out))
""")


def test_the_daemon_starts_without_openssl_and_loads_it_for_content() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"started": [], "named": False, "content": True}


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
